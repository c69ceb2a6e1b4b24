// RepMLP's locality injection (REPARAM_MATH rule 8): `Reshape(Gemm(Flatten(x))) + Conv(x)` on a
// fixed spatial size becomes one Gemm — the conv (already merged from its branches by
// collapse-linear-regions) is a matrix on the flattened input, added to the FC's weight.
import { convToMatrix } from "../src/algebra/fc.js";
import { Node, attr } from "../src/ir/graph.js";
import { Tensor } from "../src/ir/tensor.js";
import type { PassContext } from "../src/pipeline/context.js";
import type { Pass } from "../src/pipeline/pass.js";
import { readLinearOp } from "./linear-nodes.js";

interface Match {
  add: Node;
  conv: Node;
  reshape: Node;
  gemm: Node;
  flatten: Node;
  input: string;
}

const single = (ctx: PassContext, t: string) => ctx.consumers(t).length === 1 && !ctx.isGraphOutput(t);

function match(ctx: PassContext, add: Node): Match | { refused: string } | undefined {
  if (add.opType !== "Add" || add.domain || add.inputs.length !== 2) return undefined;
  const producers = ctx.producers();
  const [p, q] = add.inputs.map((t) => producers.get(t));
  const reshape = [p, q].find((n) => n?.opType === "Reshape");
  const conv = [p, q].find((n) => n?.opType === "Conv");
  if (!reshape || !conv || reshape === conv) return undefined;
  const gemm = producers.get(reshape.inputs[0]!);
  if (gemm?.opType !== "Gemm") return undefined;
  const flatten = producers.get(gemm.inputs[0]!);
  if (flatten?.opType !== "Flatten" && flatten?.opType !== "Reshape") return undefined;
  const x = flatten.inputs[0]!;
  if (conv.inputs[0] !== x) return { refused: "the FC and the conv read different tensors" };
  for (const t of [conv.outputs[0]!, reshape.outputs[0]!, gemm.outputs[0]!, flatten.outputs[0]!])
    if (!single(ctx, t)) return { refused: `'${t}' has another reader` };
  return { add, conv, reshape, gemm, flatten, input: x };
}

export const convIntoFc: Pass = {
  name: "conv-into-fc",
  description: "fold conv branches summed with a fully connected layer over the same flattened input into the FC matrix (RepMLP)",
  run(ctx) {
    for (const add of ctx.graph.nodes) {
      const m = match(ctx, add);
      if (!m) continue;
      if ("refused" in m) {
        ctx.refuse(add, m.refused);
        continue;
      }
      const shapes = ctx.shapes();
      const xd = shapes.get(m.input)?.dims, yd = shapes.get(m.add.outputs[0]!)?.dims, fd = shapes.get(m.flatten.outputs[0]!)?.dims;
      if (!xd || xd.length !== 4 || xd.slice(1).some((d) => d === undefined) || !yd || yd.length !== 4 || yd.slice(1).some((d) => d === undefined)) {
        ctx.refuse(add, "spatial size must be static for a conv to become a matrix");
        continue;
      }
      const [, C, H, W] = xd as number[];
      // The flatten must be the plain C-order [N, C·H·W] view of x.
      if (!fd || fd.length !== 2 || fd[1] !== C! * H! * W! || (m.flatten.opType === "Flatten" && m.flatten.int("axis", 1) !== 1)) {
        ctx.refuse(add, "the FC input is not x flattened as [N, C·H·W]");
        continue;
      }
      const conv = readLinearOp(ctx, m.conv);
      const fc = readLinearOp(ctx, m.gemm);
      if ("refused" in conv || conv.kind !== "conv" || "refused" in fc || fc.kind !== "conv") {
        ctx.refuse(add, "conv or FC weights are not usable constants");
        continue;
      }
      const M = convToMatrix(conv.map, H!, W!);
      const [, O, Ho, Wo] = yd as number[];
      if (M.rows !== O! * Ho! * Wo! || fc.map.outChannels !== M.rows || fc.map.inChannels !== M.cols) {
        ctx.refuse(add, "the FC output does not reshape to the conv output");
        continue;
      }
      // The Reshape must be the plain C-order view [N, O, Ho, Wo] of the FC output (same element order).
      const gd = shapes.get(m.gemm.outputs[0]!)?.dims;
      if (!gd || gd[1] !== M.rows) {
        ctx.refuse(add, "the FC output is not [N, O·Ho·Wo]");
        continue;
      }
      const weight = new Float64Array(M.rows * M.cols), bias = new Float64Array(M.rows);
      for (let i = 0; i < weight.length; i++) weight[i] = fc.map.kernel[i]! + M.data[i]!;
      for (let r = 0; r < M.rows; r++) bias[r] = fc.map.bias[r]! + M.bias[r]!;
      const dtype = ctx.constant(m.gemm.inputs[1]!)!.dtype;
      const base = (m.gemm.name || "fc").replace(/\/[^/]*$/, "");
      const w = ctx.rewriter.addInitializer(`${base}/reparam_fc.weight`, (name) => Tensor.fromFloat64(name, dtype, [M.rows, M.cols], weight));
      const b = ctx.rewriter.addInitializer(`${base}/reparam_fc.bias`, (name) => Tensor.fromFloat64(name, dtype, [M.rows], bias));
      const gemmOut = ctx.rewriter.uniqueName(`${m.gemm.outputs[0]}_reparam`);
      const gemm = new Node(ctx.rewriter.uniqueName(`${base}/reparam_fc`), "Gemm", [m.flatten.outputs[0]!, w, b], [gemmOut], [attr.int("transB", 1)]);
      const reshape = new Node(ctx.rewriter.uniqueName(`${base}/reparam_reshape`), "Reshape", [gemmOut, m.reshape.inputs[1]!], [m.add.outputs[0]!], m.reshape.attributes);
      const applied = ctx.rewriter.replace({
        pass: convIntoFc.name, anchor: m.add, remove: [m.add, m.conv, m.gemm, m.reshape], add: [gemm, reshape],
        summary: `Conv ${conv.map.kh}x${conv.map.kw} (${conv.map.inChannels}→${conv.map.outChannels}) folded into the FC matrix [${M.rows}, ${M.cols}]`,
      });
      if (applied) return true;
    }
    return false;
  },
};
