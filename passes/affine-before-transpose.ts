// Layer scales written after a permute (torchvision's ConvNeXt: `γ[C,1,1] · permute(Linear(x))` back
// to NCHW): Op(Transpose(y, perm), c) = Transpose(Op(y, c'), perm), where c' is c permuted back — a
// constant only moves, so this is exact. Done only when y comes from a fully connected layer the
// constant can then fold into (a MatMul/Gemm, possibly through its bias Add or other constant
// affines); collapse-linear-regions folds it there. Anything else is left as it is.
import { evaluateNode, valueFromTensor } from "../src/eval/index.js";
import { DataType } from "../src/ir/dtype.js";
import { Node, attr } from "../src/ir/graph.js";
import { Tensor } from "../src/ir/tensor.js";
import type { PassContext } from "../src/pipeline/context.js";
import type { Pass } from "../src/pipeline/pass.js";
import { constantOperand } from "./linear-nodes.js";


/** Does `tensor` come from a MatMul/Gemm with a constant weight, through single-reader constant affines? */
function fromDenseLayer(ctx: PassContext, tensor: string): boolean {
  const producers = ctx.producers();
  for (let t = tensor, depth = 0; depth < 8; depth++) {
    const p = producers.get(t);
    if (!p || !p.isDefaultDomain) return false;
    if ((p.opType === "MatMul" || p.opType === "Gemm") && ctx.constant(p.inputs[1]!)) return true;
    const c = constantOperand(ctx, p);
    if (c === undefined) return false;
    t = p.inputs[1 - c]!;
    if (ctx.consumers(t).length !== 1 || ctx.isGraphOutput(t)) return false;
  }
  return false;
}

export const affineBeforeTranspose: Pass = {
  name: "affine-before-transpose",
  description: "move a constant Mul/Add/Sub/Div after a Transpose to before it, next to the MatMul/Gemm it then folds into (layer scale after a permute)",
  run(ctx) {
    // Every candidate in one sweep (removed nodes skipped): the driver reruns the pass to a fixpoint.
    let changed = false;
    const removed = new Set<Node>();
    for (const node of [...ctx.graph.nodes]) {
      if (removed.has(node)) continue;
      const producers = ctx.producers();
      const ci = constantOperand(ctx, node);
      if (ci === undefined) continue;
      const t = node.inputs[1 - ci]!;
      const transpose = producers.get(t);
      if (transpose?.opType !== "Transpose" || !transpose.isDefaultDomain || ctx.consumers(t).length !== 1 || ctx.isGraphOutput(t)) continue;
      const y = transpose.inputs[0]!;
      if (!fromDenseLayer(ctx, y)) continue;
      const dims = ctx.shapes().get(t)?.dims, outDims = ctx.shapes().get(node.outputs[0]!)?.dims;
      const c = ctx.constant(node.inputs[ci]!)!;
      if (!dims || !outDims || c.dims.length > dims.length) continue;
      const rank = dims.length;
      const perm = transpose.ints("perm", Array.from({ length: rank }, (_, i) => rank - 1 - i));
      const padded = [...new Array(rank - c.dims.length).fill(1), ...c.dims];
      // The constant must not broadcast the tensor up (then the Transpose would move more values).
      if (padded.some((d, i) => d !== 1 && d !== dims[i]) || outDims.some((d, i) => d !== dims[i])) {
        ctx.refuse(node, "its constant would broadcast the transposed tensor to another shape");
        continue;
      }
      const inverse = new Array<number>(rank);
      perm.forEach((p, j) => (inverse[p] = j));
      const value = valueFromTensor(c);
      const moved = evaluateNode(new Node("move", "Transpose", ["c"], ["moved"], [attr.ints("perm", inverse)]), [{ ...value, dtype: DataType.DOUBLE, dims: padded }], ctx.model.opset());
      if ("unsupported" in moved) {
        ctx.refuse(node, `its constant could not be permuted: ${moved.unsupported}`);
        continue;
      }
      const name = ctx.rewriter.addInitializer(`${node.inputs[ci]}_before_transpose`, (n) => Tensor.fromFloat64(n, c.dtype, moved[0]!.dims, moved[0]!.data));
      const mid = ctx.rewriter.uniqueName(`${node.outputs[0]}_before_transpose`);
      const inputs = ci === 1 ? [y, name] : [name, y];
      const op = new Node(ctx.rewriter.uniqueName(node.name || node.opType), node.opType, inputs, [mid], node.attributes);
      const back = new Node(transpose.name, "Transpose", [mid], [node.outputs[0]!], transpose.attributes);
      const applied = ctx.rewriter.replace({
        pass: affineBeforeTranspose.name, anchor: node, remove: [node, transpose], add: [op, back],
        summary: `${node.opType} by '${node.inputs[ci]}' [${c.dims}] moved before Transpose '${transpose.name}' (as [${moved[0]!.dims}]) to fold into the layer there`,
      });
      if (applied) {
        removed.add(node).add(transpose);
        changed = true;
      }
    }
    return changed;
  },
};
