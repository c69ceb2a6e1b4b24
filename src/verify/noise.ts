// The reference's own rounding noise: how far the original model's outputs move when it is
// evaluated again with different float rounding. A correct fold changes the model by rounding
// only (each folded weight is the exact float64 value stored once in the model's type, and the
// products are summed in another order), so its error is of the same size as this spread, at any
// depth and output scale; a wrong fold changes what is computed and lands far outside it.
//
// Two re-rounded evaluations are measured (README "Guarantees"):
//  - onnxruntime with its graph optimizations on: its own fusions (Conv+BN, Conv+Add, Gemm…) sum
//    the same products in another order: a real float32 re-association of the reference;
//  - the reference with every weight and every float input moved by exactly one unit in the last
//    place of its type, in a random direction: the rounding a fold introduces, applied at every
//    layer, so that whatever the network amplifies is amplified here too.
// Weights are moved only where they are arithmetic operands (conv/matmul weights, biases,
// normalization parameters, elementwise constants), never where a value is structural (a Pow
// exponent, a Range bound, Resize scales, a comparison threshold).
import { DataType, floatToHalf, halfToFloat, floatToBfloat16, bfloat16ToFloat } from "../ir/dtype.js";
import type { Model } from "../ir/graph.js";
import { Tensor } from "../ir/tensor.js";
import { unitRoundoff } from "./precision.js";
import { mulberry32 } from "./rng.js";

/** Input slots whose constant operand is arithmetic (perturbing it by an ulp is rounding, not a change of meaning). */
const ARITHMETIC_SLOTS: Record<string, readonly number[] | "all"> = {
  Conv: [1, 2], ConvTranspose: [1, 2], Gemm: "all", MatMul: "all", Einsum: "all",
  BatchNormalization: [1, 2, 3, 4], InstanceNormalization: [1, 2], LayerNormalization: [1, 2], GroupNormalization: [1, 2],
  Add: "all", Sub: "all", Mul: "all", Div: "all", Sum: "all", Mean: "all", PRelu: [1],
};

function isArithmeticSlot(op: string, index: number): boolean {
  const slots = ARITHMETIC_SLOTS[op];
  return slots === "all" || (slots !== undefined && slots.includes(index));
}

/**
 * Move each non-zero value by exactly one ulp of its type, up or down at random. A fraction of an
 * ulp would often round back to the same value, and a parameter met once per channel (a BN mean)
 * would then go unmoved in every sample: that channel's noise would miss the rounding a fold makes there.
 */
function perturbValues(dtype: number, values: Float64Array, next: () => number): Float64Array {
  const ulpOfOne = 2 * unitRoundoff(dtype);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const sign = next() < 0.5 ? -1 : 1;
    if (v === 0 || !Number.isFinite(v)) continue;
    values[i] = v + sign * 2 ** Math.floor(Math.log2(Math.abs(v))) * ulpOfOne;
  }
  return values;
}

/** A copy of `model` whose arithmetic weights are moved by exactly one ulp each (seeded). */
export function perturbWeights(model: Model, seed: number): Model {
  const copy = model.clone();
  const g = copy.graph;
  const next = mulberry32(seed);
  // A weight is moved only if every use of it is an arithmetic slot.
  const arithmetic = new Map<string, boolean>();
  for (const n of g.nodes)
    n.inputs.forEach((name, index) => {
      if (!name) return;
      const ok = n.isDefaultDomain && isArithmeticSlot(n.opType, index);
      arithmetic.set(name, (arithmetic.get(name) ?? true) && ok);
    });
  // Subgraphs may read outer tensors: those reads are not arithmetic slots we can see.
  const readInSubgraphs = new Set<string>();
  for (const n of g.nodes)
    for (const a of n.attributes) for (const sub of [a.g, ...(a.graphs ?? [])]) if (sub) for (const sn of sub.node ?? []) for (const i of sn.input ?? []) readInSubgraphs.add(i);
  for (const [name, t] of g.initializers) {
    if (!unitRoundoff(t.dtype) || !arithmetic.get(name) || readInSubgraphs.has(name)) continue;
    g.initializers.set(name, Tensor.fromFloat64(name, t.dtype, t.dims, perturbValues(t.dtype, t.toFloat64(), next)));
  }
  return copy;
}

export type FloatFeedData = Float32Array | Float64Array | Uint16Array;

/** Float input values moved by exactly one ulp each (float32, float64, float16 half bits). */
export function perturbInput(type: string, data: FloatFeedData, seed: number): FloatFeedData {
  const next = mulberry32(seed);
  if (type === "float32" || type === "float64") {
    const dtype = type === "float32" ? DataType.FLOAT : DataType.DOUBLE;
    const values = perturbValues(dtype, Float64Array.from(data), next);
    return type === "float32" ? Float32Array.from(values) : values;
  }
  if (type === "float16" || type === "bfloat16") {
    const half = type === "float16";
    const bits = data as Uint16Array;
    const values = Float64Array.from(bits, (h) => (half ? halfToFloat(h) : bfloat16ToFloat(h)));
    perturbValues(half ? DataType.FLOAT16 : DataType.BFLOAT16, values, next);
    return Uint16Array.from(values, (v) => (half ? floatToHalf(v) : floatToBfloat16(v)));
  }
  return data;
}
