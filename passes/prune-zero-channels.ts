// ResRep pruning (REPARAM_MATH rule 7): an output channel of a Conv whose kernel slice and bias are
// exactly zero is identically zero; after activations with f(0) = 0 it is still zero, so every
// Conv reading it can drop the matching input channel and the producer can drop the channel.
import type { Node } from "../src/ir/graph.js";
import { onnx } from "../src/ir/proto.js";
import { Tensor, type TensorData } from "../src/ir/tensor.js";
import type { PassContext } from "../src/pipeline/context.js";
import type { Pass } from "../src/pipeline/pass.js";

/** Elementwise ops that map 0 to 0 (so a zero channel stays zero through them). */
function keepsZero(ctx: PassContext, n: Node): boolean {
  switch (n.opType) {
    case "Relu": case "LeakyRelu": case "Tanh": case "HardSwish": case "Identity": case "Gelu": case "Elu": case "Selu": case "Celu": case "Softsign": case "Mish": case "PRelu":
      return n.inputs.slice(1).every((i) => !i || ctx.constant(i));
    case "Dropout":
      return n.outputs.slice(1).every((o) => !o || ctx.consumers(o).length === 0);
    case "Clip": {
      const lo = n.inputs[1] ? ctx.constant(n.inputs[1])?.toFloat64()[0] : n.float("min", -Infinity);
      const hi = n.inputs[2] ? ctx.constant(n.inputs[2])?.toFloat64()[0] : n.float("max", Infinity);
      return lo !== undefined && hi !== undefined && lo <= 0 && hi >= 0;
    }
    default:
      return false;
  }
}

interface Plan {
  producer: Node;
  chain: Node[];
  readers: Node[];
  zero: number[];
}

function plan(ctx: PassContext, producer: Node): Plan | { refused: string } | undefined {
  const w = ctx.constant(producer.inputs[1] ?? "");
  if (!w || w.dims.length !== 4) return undefined;
  const bias = producer.inputs[2] ? ctx.constant(producer.inputs[2]) : undefined;
  if (producer.inputs[2] && !bias) return undefined;
  const O = w.dims[0]!;
  const per = w.size / O;
  const data = w.data() as ArrayLike<number>;
  const b = bias?.data() as ArrayLike<number> | undefined;
  const zero: number[] = [];
  for (let o = 0; o < O; o++) {
    if (b && Number(b[o]) !== 0) continue;
    let allZero = true;
    for (let i = o * per; i < (o + 1) * per && allZero; i++) if (Number(data[i]) !== 0) allZero = false;
    if (allZero) zero.push(o);
  }
  if (zero.length === 0) return undefined;
  if (zero.length === O) return { refused: "every output channel is zero (the layer would vanish)" };
  if (producer.int("group", 1) !== 1) return { refused: "grouped conv: dropping channels would change its groups" };
  const shared = [producer.inputs[1]!, producer.inputs[2]].filter((n): n is string => !!n).find((n) => ctx.otherUsers(n, producer).length > 0);
  if (shared) return { refused: `weight '${shared}' is shared with another node` };
  // Follow zero-preserving activations to the Convs that read the zero channels.
  const chain: Node[] = [];
  let tensor = producer.outputs[0]!;
  for (;;) {
    if (ctx.isGraphOutput(tensor)) return { refused: `'${tensor}' is a graph output (its channel count is part of the interface)` };
    const readers = ctx.consumers(tensor);
    if (readers.length === 1 && keepsZero(ctx, readers[0]!) && readers[0]!.inputs[0] === tensor) {
      chain.push(readers[0]!);
      tensor = readers[0]!.outputs[0]!;
      continue;
    }
    const bad = readers.find((r) => r.opType !== "Conv" || r.inputs[0] !== tensor || r.int("group", 1) !== 1 || !ctx.constant(r.inputs[1] ?? ""));
    if (bad) return { refused: `zero channels reach ${bad.opType} '${bad.name}', which cannot drop input channels` };
    const sharedReader = readers.find((r) => ctx.otherUsers(r.inputs[1]!, r).length > 0);
    if (sharedReader) return { refused: `weight of '${sharedReader.name}' is shared with another node` };
    if (readers.length === 0) return undefined;
    return { producer, chain, readers, zero };
  }
}

function select(t: Tensor, name: string, axis: 0 | 1, drop: Set<number>): Tensor {
  const dims = [...t.dims];
  const outer = axis === 0 ? 1 : dims[0]!;
  const count = dims[axis]!;
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const keep = [...Array(count).keys()].filter((i) => !drop.has(i));
  const src = t.data();
  const Ctor = src.constructor as new (n: number) => TensorData;
  const out = new Ctor(outer * keep.length * inner);
  let k = 0;
  for (let o = 0; o < outer; o++)
    for (const c of keep) {
      const base = (o * count + c) * inner;
      for (let i = 0; i < inner; i++) (out as unknown as number[])[k++] = (src as unknown as number[])[base + i]!;
    }
  dims[axis] = keep.length;
  return Tensor.fromData(name, t.dtype, dims, out);
}

export const pruneZeroChannels: Pass = {
  name: "prune-zero-channels",
  description: "drop Conv output channels that are exactly zero (ResRep) and the matching input channels of their readers",
  run(ctx) {
    for (const producer of ctx.graph.nodes) {
      if (producer.opType !== "Conv" || !producer.isDefaultDomain) continue;
      if (ctx.rewriter.declinedAnchor(producer)) continue;
      const p = plan(ctx, producer);
      if (!p) continue;
      if ("refused" in p) {
        ctx.refuse(producer, p.refused);
        continue;
      }
      const drop = new Set(p.zero);
      const bytesBefore = [producer, ...p.readers].reduce((s, n) => s + ctx.constant(n.inputs[1]!)!.byteLength, 0);
      const replaceInit = (node: Node, index: number, axis: 0 | 1) => {
        const t = ctx.constant(node.inputs[index]!)!;
        ctx.rewriter.setInput(node, index, ctx.rewriter.addInitializer(`${t.name}.pruned`, (name) => select(t, name, axis, drop)));
      };
      const oldInits = [producer, ...p.readers].flatMap((n) => n.inputs.slice(1));
      replaceInit(producer, 1, 0);
      if (producer.inputs[2]) replaceInit(producer, 2, 0);
      for (const r of p.readers) replaceInit(r, 1, 1);
      const bytesAfter = [producer, ...p.readers].reduce((s, n) => s + ctx.constant(n.inputs[1]!)!.byteLength, 0);
      // Channel counts changed: fix the recorded shapes of the tensors in between.
      const changed = new Set([producer.outputs[0]!, ...p.chain.map((n) => n.outputs[0]!)]);
      const keep = ctx.constant(producer.inputs[1]!)!.dims[0]!;
      for (const v of ctx.graph.valueInfo)
        if (changed.has(v.name ?? "") && v.type?.tensorType?.shape?.dim?.[1]) v.type.tensorType.shape.dim[1] = onnx.TensorShapeProto.Dimension.create({ dimValue: keep });
      if (!ctx.rewriter.allows(pruneZeroChannels.name, producer, [])) {
        ctx.refuse(producer, "rewrite skipped: it failed verification (--skip-failing)");
        continue;
      }
      ctx.rewriter.replace({
        pass: pruneZeroChannels.name, anchor: producer, remove: [], add: [],
        summary: `pruned ${drop.size} zero channel(s) of '${producer.name}' (and ${p.readers.length} reader(s)): weights ${bytesBefore} → ${bytesAfter} bytes`,
        collect: oldInits,
      });
      return true;
    }
    return false;
  },
};
