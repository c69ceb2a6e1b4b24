// ResRep pruning (docs/rules.md §9): an output channel of a Conv whose kernel slice and bias are
// exactly zero is identically zero; after activations with f(0) = 0 it is still zero, so every
// Conv reading it can drop the matching input channel and the producer can drop the channel.
import type { Node } from "../ir/graph.js";
import { Tensor, type TensorData } from "../ir/tensor.js";
import type { RuleContext } from "../pipeline/context.js";
import { notCandidate, refuse, type Match, type Refusal, type Rule } from "../pipeline/rule.js";
import { ZERO_PRESERVING_ACTIVATIONS } from "./op-traits.js";
import { sharedParameter } from "./policy.js";

/** Elementwise ops that map 0 to 0 (so a zero channel stays zero through them). */
function keepsZero(ctx: RuleContext, n: Node): boolean {
  if (ZERO_PRESERVING_ACTIVATIONS.has(n.opType)) return n.inputs.slice(1).every((i) => !i || ctx.constant(i));
  switch (n.opType) {
    case "Dropout":
      return n.outputs.slice(1).every((o) => !o || ctx.consumers(o).length === 0);
    case "Clip": {
      // Bounds are scalars by the standard; every element is checked all the same.
      const bound = (i: number, pick: (a: number, b: number) => number, attr: string, fallback: number) => {
        if (!n.inputs[i]) return n.float(attr, fallback);
        const t = ctx.constant(n.inputs[i]!);
        return t && t.size > 0 ? t.toFloat64().reduce((a, b) => pick(a, b)) : undefined;
      };
      const lo = bound(1, Math.max, "min", -Infinity);
      const hi = bound(2, Math.min, "max", Infinity);
      return lo !== undefined && hi !== undefined && lo <= 0 && hi >= 0;
    }
    default:
      return false;
  }
}

/**
 * A constant operand of a chain node broadcasts against the rank-4 activation [N, C, H, W]; the
 * axis of the operand that lines up with C (numpy broadcasting aligns trailing axes), or undefined
 * when the operand does not vary across channels (rank < 3, or size 1 there).
 */
function channelAxisOf(operand: Tensor): number | undefined {
  const axis = operand.dims.length - 3;
  return axis >= 0 && operand.dims[axis] !== 1 ? axis : undefined;
}

interface Plan extends Match {
  producer: Node;
  chain: Node[];
  /** Per-channel constant operands of chain nodes (PRelu slope [C,1,1], …): pruned with the channels. */
  operands: { node: Node; input: number; axis: number }[];
  readers: Node[];
  zero: number[];
}

function plan(ctx: RuleContext, producer: Node): Plan | Refusal {
  const w = ctx.constant(producer.inputs[1] ?? "");
  if (!w || w.dims.length !== 4) return notCandidate("weight is not a constant 2-D kernel");
  const bias = producer.inputs[2] ? ctx.constant(producer.inputs[2]) : undefined;
  if (producer.inputs[2] && !bias) return notCandidate("bias is not a constant");
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
  if (zero.length === 0) return notCandidate("no zero output channel");
  if (zero.length === O) return refuse("every output channel is zero (the layer would vanish)");
  if (producer.int("group", 1) !== 1) return refuse("grouped conv: dropping channels would change its groups");
  const shared = sharedParameter(ctx, producer, [producer.inputs[1]!, producer.inputs[2] ?? ""], "prune");
  if (shared) return refuse(`weight '${shared.name}' is shared with another node`);
  // Follow zero-preserving activations to the Convs that read the zero channels.
  const chain: Node[] = [];
  const operands: Plan["operands"] = [];
  let tensor = producer.outputs[0]!;
  for (;;) {
    if (ctx.isGraphOutput(tensor)) return refuse(`'${tensor}' is a graph output (its channel count is part of the interface)`);
    const readers = ctx.consumers(tensor);
    const inBody = readers.find((r) => !r.inputs.includes(tensor));
    if (inBody) return refuse(`'${tensor}' is read inside a subgraph of ${inBody.opType} '${inBody.name}' (its channel count would change there)`);
    if (readers.length === 1 && keepsZero(ctx, readers[0]!) && readers[0]!.inputs[0] === tensor) {
      const node = readers[0]!;
      // Every other operand is a constant (keepsZero checked): one that varies per channel loses
      // the pruned channels too, or it would no longer broadcast against the narrower tensor.
      for (let input = 1; input < node.inputs.length; input++) {
        const operand = node.inputs[input] ? ctx.constant(node.inputs[input]!) : undefined;
        const axis = operand && channelAxisOf(operand);
        if (operand === undefined || axis === undefined) continue;
        if (operand.dims[axis] !== O) return refuse(`operand '${operand.name}' of ${node.opType} '${node.name}' has ${operand.dims[axis]} channels, not ${O}`);
        operands.push({ node, input, axis });
      }
      chain.push(node);
      tensor = readers[0]!.outputs[0]!;
      continue;
    }
    const bad = readers.find((r) => r.opType !== "Conv" || r.inputs[0] !== tensor || r.int("group", 1) !== 1 || !ctx.constant(r.inputs[1] ?? ""));
    if (bad) return refuse(`zero channels reach ${bad.opType} '${bad.name}', which cannot drop input channels`);
    const sharedReader = readers.find((r) => sharedParameter(ctx, r, [r.inputs[1]!], "prune"));
    if (sharedReader) return refuse(`weight of '${sharedReader.name}' is shared with another node`);
    if (readers.length === 0) return notCandidate("its output is not read");
    return { anchor: producer, remove: [], producer, chain, operands, readers, zero };
  }
}

function select(t: Tensor, name: string, axis: number, drop: Set<number>): Tensor {
  const dims = [...t.dims];
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
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

export const pruneZeroChannels: Rule<Plan> = {
  name: "prune-zero-channels",
  description: "drop Conv output channels that are exactly zero (ResRep) and the matching input channels of their readers",
  rootOps: ["Conv"],
  benefit: 10,
  match: (root, ctx) => plan(ctx, root),
  rewrite(p, ctx) {
    const { producer, readers } = p;
    const drop = new Set(p.zero);
    const bytesBefore = [producer, ...readers].reduce((s, n) => s + ctx.constant(n.inputs[1]!)!.byteLength, 0);
    const initializers: Tensor[] = [];
    const rewire: { node: Node; input: number; tensor: string }[] = [];
    const replaceInit = (node: Node, index: number, axis: number) => {
      const t = ctx.constant(node.inputs[index]!)!;
      const pruned = select(t, ctx.uniqueName(`${t.name}.pruned`), axis, drop);
      initializers.push(pruned);
      rewire.push({ node, input: index, tensor: pruned.name });
    };
    replaceInit(producer, 1, 0);
    if (producer.inputs[2]) replaceInit(producer, 2, 0);
    for (const r of readers) replaceInit(r, 1, 1);
    for (const o of p.operands) replaceInit(o.node, o.input, o.axis);
    const weights = initializers.filter((t, i) => rewire[i]!.input === 1 && !p.chain.includes(rewire[i]!.node));
    const bytesAfter = weights.reduce((s, t) => s + t.byteLength, 0);
    // Channel counts changed: the recorded shapes of the tensors in between change with them.
    const keep = initializers[0]!.dims[0]!;
    const resize = [producer.outputs[0]!, ...p.chain.map((n) => n.outputs[0]!)].map((tensor) => ({ tensor, axis: 1, size: keep }));
    return {
      initializers, rewire, resize,
      collect: [producer, ...readers, ...p.chain].flatMap((n) => n.inputs.slice(1)),
      summary: `pruned ${drop.size} zero channel(s) of '${producer.name}' (and ${readers.length} reader(s)): weights ${bytesBefore} → ${bytesAfter} bytes`,
    };
  },
};
