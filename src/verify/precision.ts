// The lowest float precision each output is computed in. A float16 network wrapped in Casts with
// float32 inputs and outputs (what float16 converters write when they keep I/O types) rounds to
// float16 at every layer: its outputs are float32 tensors holding float16-accurate values, and
// they are judged at float16's tolerance. Every float type met on the way to the output counts:
// graph inputs, initializers, Constant values, Cast/CastLike targets, declared value types, and
// anything inside a subgraph of a node on the way.
import { DataType } from "../ir/dtype.js";
import type { Graph, Model } from "../ir/graph.js";
import { toNumber, type GraphProto, type ValueInfoProto } from "../ir/proto.js";

/** Significand bits of each float type: a lower number is a lower precision. */
const BITS: Record<number, number> = { [DataType.BFLOAT16]: 8, [DataType.FLOAT16]: 11, [DataType.FLOAT]: 24, [DataType.DOUBLE]: 53 };

/** Relative tolerance floor for each precision (≈ 1000 units in the last place for float32). */
const FLOOR: Record<number, number> = { [DataType.BFLOAT16]: 1e-2, [DataType.FLOAT16]: 1e-2, [DataType.FLOAT]: 1e-4, [DataType.DOUBLE]: 1e-9 };

/** Unit roundoff of a float type (half an ulp of 1). */
export function unitRoundoff(dtype: number): number {
  const bits = BITS[dtype];
  return bits ? 2 ** -bits : 0;
}

/** Default relative floor for values computed in `dtype`; 0 (exact) for non-float types. */
export function floorTolerance(dtype: number | undefined): number {
  return dtype === undefined ? 0 : (FLOOR[dtype] ?? 0);
}

function lower(a: number | undefined, b: number | undefined): number | undefined {
  if (b === undefined || BITS[b] === undefined) return a;
  if (a === undefined) return b;
  return BITS[b]! < BITS[a]! ? b : a;
}

function elemType(v: ValueInfoProto | undefined): number | undefined {
  return v?.type?.tensorType?.elemType ?? undefined;
}

/** Lowest float type anywhere in a subgraph (its nodes' Casts and Constants, initializers, declared types). */
function lowestInProto(g: GraphProto): number | undefined {
  let low: number | undefined;
  for (const t of g.initializer ?? []) low = lower(low, t.dataType ?? undefined);
  for (const v of [...(g.input ?? []), ...(g.output ?? []), ...(g.valueInfo ?? [])]) low = lower(low, elemType(v));
  for (const n of g.node ?? [])
    for (const a of n.attribute ?? []) {
      if (a.name === "to" && (n.opType === "Cast")) low = lower(low, toNumber(a.i ?? 0));
      if (a.t) low = lower(low, a.t.dataType ?? undefined);
      if (a.g) low = lower(low, lowestInProto(a.g));
      for (const sub of a.graphs ?? []) low = lower(low, lowestInProto(sub));
    }
  return low;
}

/** Output name → the lowest float precision (an ONNX element type) among everything it depends on. */
export function outputPrecisions(model: Model): Map<string, number | undefined> {
  const g: Graph = model.graph;
  const producers = g.producers();
  const declared = new Map<string, number | undefined>();
  for (const v of [...g.inputs, ...g.outputs, ...g.valueInfo]) declared.set(v.name ?? "", elemType(v));
  const result = new Map<string, number | undefined>();
  for (const out of g.outputs) {
    const name = out.name ?? "";
    let low: number | undefined;
    const seen = new Set<string>();
    const stack = [name];
    while (stack.length) {
      const t = stack.pop()!;
      if (seen.has(t)) continue;
      seen.add(t);
      low = lower(low, declared.get(t));
      const init = g.initializers.get(t);
      if (init) low = lower(low, init.dtype);
      const node = producers.get(t);
      if (!node) continue;
      if (node.opType === "Cast") low = lower(low, node.int("to", 0));
      // CastLike's target type is its second input's: that input is walked like any other.
      for (const a of node.attributes) {
        if (a.t) low = lower(low, a.t.dataType ?? undefined);
        if (a.g) low = lower(low, lowestInProto(a.g));
        for (const sub of a.graphs ?? []) low = lower(low, lowestInProto(sub));
      }
      for (const i of node.inputs) if (i) stack.push(i);
    }
    result.set(name, low);
  }
  return result;
}
