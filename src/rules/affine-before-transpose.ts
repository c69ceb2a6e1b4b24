// Layer scales written after a permute (torchvision's ConvNeXt: `γ[C,1,1] · permute(Linear(x))` back
// to NCHW): Op(Transpose(y, perm), c) = Transpose(Op(y, c'), perm), where c' is c permuted back — a
// constant only moves, so this is exact. Done only when y comes from a fully connected layer the
// constant can then fold into (a MatMul/Gemm, possibly through its bias Add or other constant
// affines); collapse-linear-regions folds it there. Anything else is left as it is.
import { evaluateNode, valueFromTensor, type Value } from "../eval/index.js";
import { DataType } from "../ir/dtype.js";
import { Node, attr } from "../ir/graph.js";
import { Tensor } from "../ir/tensor.js";
import type { RuleContext } from "../pipeline/context.js";
import { isRefusal, notCandidate, refuse, type Match, type Rule } from "../pipeline/rule.js";
import { constantOperand } from "./linear/read.js";
import { AFFINE_BINARY_OPS, DENSE_OPS } from "./op-traits.js";

/** Does `tensor` come from a MatMul/Gemm with a constant weight, through single-reader constant affines? */
function fromDenseLayer(ctx: RuleContext, tensor: string): boolean {
  const producers = ctx.producers();
  for (let t = tensor, depth = 0; depth < 8; depth++) {
    const p = producers.get(t);
    if (!p || !p.isDefaultDomain) return false;
    if (DENSE_OPS.has(p.opType) && ctx.constant(p.inputs[1]!)) return true;
    const c = constantOperand(ctx, p);
    if (c === undefined) return false;
    t = p.inputs[1 - c]!;
    if (ctx.consumers(t).length !== 1 || ctx.isGraphOutput(t)) return false;
  }
  return false;
}

interface MoveMatch extends Match {
  transpose: Node;
  /** Which operand of the affine node is the constant. */
  ci: 0 | 1;
  /** The constant permuted back (float64), in the constant's dtype when written. */
  moved: Value;
  dtype: number;
}

export const affineBeforeTranspose: Rule<MoveMatch> = {
  name: "affine-before-transpose",
  description: "move a constant Mul/Add/Sub/Div after a Transpose to before it, next to the MatMul/Gemm it then folds into (layer scale after a permute)",
  rootOps: [...AFFINE_BINARY_OPS],
  benefit: 40,
  match(node, ctx) {
    const ci = constantOperand(ctx, node);
    if (ci === undefined) return notCandidate("not affine in one operand");
    const t = node.inputs[1 - ci]!;
    const transpose = ctx.producers().get(t);
    if (transpose?.opType !== "Transpose" || !transpose.isDefaultDomain || ctx.consumers(t).length !== 1 || ctx.isGraphOutput(t)) return notCandidate("not after a Transpose it alone reads");
    const y = transpose.inputs[0]!;
    if (!fromDenseLayer(ctx, y)) return notCandidate("no dense layer before the Transpose");
    const dims = ctx.shapes().get(t)?.dims, outDims = ctx.shapes().get(node.outputs[0]!)?.dims;
    const c = ctx.constant(node.inputs[ci]!)!;
    if (!dims || !outDims || c.dims.length > dims.length) return notCandidate("shapes unknown");
    const rank = dims.length;
    const perm = transpose.ints("perm", Array.from({ length: rank }, (_, i) => rank - 1 - i))!;
    const padded = [...new Array(rank - c.dims.length).fill(1), ...c.dims];
    // The constant must not broadcast the tensor up (then the Transpose would move more values).
    if (padded.some((d, i) => d !== 1 && d !== dims[i]) || outDims.some((d, i) => d !== dims[i]))
      return refuse("its constant would broadcast the transposed tensor to another shape");
    const inverse = new Array<number>(rank);
    perm.forEach((p, j) => (inverse[p] = j));
    const value = valueFromTensor(c);
    const moved = evaluateNode(new Node("move", "Transpose", ["c"], ["moved"], [attr.ints("perm", inverse)]), [{ ...value, dtype: DataType.DOUBLE, dims: padded }], ctx.opset());
    if (isRefusal(moved)) return refuse(`its constant could not be permuted: ${moved.refused}`);
    return { anchor: node, remove: [node, transpose], transpose, ci, moved: moved[0]!, dtype: c.dtype };
  },
  rewrite({ anchor: node, transpose, ci, moved, dtype }, ctx) {
    const c = node.inputs[ci]!;
    const constant = Tensor.fromFloat64(ctx.uniqueName(`${c}_before_transpose`), dtype, moved.dims, moved.data);
    const mid = ctx.uniqueName(`${node.outputs[0]}_before_transpose`);
    const y = transpose.inputs[0]!;
    const inputs = ci === 1 ? [y, constant.name] : [constant.name, y];
    const op = new Node(ctx.uniqueName(node.name || node.opType), node.opType, inputs, [mid], node.attributes);
    const back = new Node(transpose.name, "Transpose", [mid], [node.outputs[0]!], transpose.attributes);
    return {
      add: [op, back], initializers: [constant],
      summary: `${node.opType} by '${c}' [${ctx.constant(c)!.dims}] moved before Transpose '${transpose.name}' (as [${moved.dims}]) to fold into the layer there`,
    };
  },
};
