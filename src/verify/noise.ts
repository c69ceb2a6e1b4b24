// The reference's own rounding noise: how far the original model's outputs move when it is
// evaluated again with different float rounding. A correct fold changes the model by rounding
// only (each folded weight is the exact float64 value stored once in the model's type, and the
// products are summed in another order), so its error is of the same size as this spread, at any
// depth and output scale; a wrong fold changes what is computed and lands far outside it.
//
// Up to three re-rounded evaluations are measured (README "Guarantees"; verify.ts takes the
// second and third only where the first does not already prove the candidate): the reference
// with every arithmetic weight and every float input moved by exactly one unit in the last place
// of its type, in a random direction (one seed each): the rounding a fold introduces, applied at
// every layer, so that whatever the network amplifies is amplified here too.
// Weights are moved only where they are arithmetic operands (conv/matmul weights, biases,
// normalization parameters, elementwise constants), never where a value is structural (a Pow
// exponent, a Range bound, Resize scales, a comparison threshold).
//
// The moved weights are not written into a copy of the model: verify loads the model once with
// those weights lifted to graph inputs (liftedModel) and feeds either the weights as written or a
// moved copy (WeightFeeds), so one onnxruntime session serves the literal runs and every sample.
import { DataType } from "../ir/dtype.js";
import { Model } from "../ir/graph.js";
import { onnx, type ValueInfoProto } from "../ir/proto.js";
import type { Tensor, TensorData } from "../ir/tensor.js";
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
 * Float types a weight can be moved in and handed to onnxruntime as an input. bfloat16 is not
 * among them: onnxruntime's JavaScript API has no bfloat16 tensors, so such weights stay as written.
 */
const FEED_TYPE: Partial<Record<number, "float32" | "float64" | "float16">> = {
  [DataType.FLOAT]: "float32", [DataType.DOUBLE]: "float64", [DataType.FLOAT16]: "float16",
};

/**
 * The weights a noise sample moves: main-graph float initializers every use of which is an
 * arithmetic slot of a default-domain node. Weights read inside a subgraph (If/Loop/Scan bodies,
 * at any depth) or that are graph outputs are left as written.
 */
export function perturbableWeights(model: Model): Tensor[] {
  const g = model.graph;
  const arithmetic = new Map<string, boolean>();
  const excluded = new Set<string>(g.outputs.map((o) => o.name ?? ""));
  for (const n of g.nodes) {
    n.inputs.forEach((name, index) => {
      if (!name) return;
      const ok = n.isDefaultDomain && isArithmeticSlot(n.opType, index);
      arithmetic.set(name, (arithmetic.get(name) ?? true) && ok);
    });
    for (const name of n.subgraphReads()) excluded.add(name);
  }
  return [...g.initializers.values()].filter((t) => FEED_TYPE[t.dtype] !== undefined && arithmetic.get(t.name) === true && !excluded.has(t.name));
}

/**
 * `model` with `weights` turned into graph inputs (declared with their type and shape) instead of
 * initializers: the model without those weights' bytes, to be loaded once and fed them (WeightFeeds).
 * A shallow copy: `model` is not changed.
 */
export function liftedModel(model: Model, weights: readonly Tensor[]): Model {
  const clone = model.clone();
  // Errors about it name the file it came from: it is that model, loaded differently.
  const copy = new Model(clone.original, clone.graph, model.path, model.sources);
  const g = copy.graph;
  const declared = new Set(g.inputs.map((v) => v.name ?? ""));
  for (const t of weights) {
    g.initializers.delete(t.name);
    // An initializer already listed as an input (IR < 4 exporters) keeps its declaration.
    if (!declared.has(t.name)) g.inputs.push(weightInput(t));
  }
  return copy;
}

function weightInput(t: Tensor): ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name: t.name,
    type: { tensorType: { elemType: t.dtype, shape: { dim: t.dims.map((d) => ({ dimValue: d })) } } },
  });
}

/** One weight as onnxruntime is fed it: its type name, dims and values. */
export interface WeightFeed {
  name: string;
  type: "float32" | "float64" | "float16";
  dims: readonly number[];
  data: Float32Array | Float64Array | Uint16Array;
}

/**
 * The lifted weights' values as fed to onnxruntime: as written (the tensors' own arrays, no copy)
 * or moved by one ulp each (perturbed: buffers made at the first sample and refilled for every
 * other), so at most one copy of the weights exists beside the model at any time.
 */
export class WeightFeeds {
  private buffers: WeightFeed[] | undefined;
  /** The arrays last handed out as written, until the first sample (which may move them in place). */
  private asWritten: WeightFeed[] | undefined;
  /**
   * Which of those arrays were made for this read alone, decided when they were read: a tensor
   * may drop its kept copy later (optimize on the same model meanwhile), and an array it kept —
   * possibly a view of the model's own bytes — must never be moved in place.
   */
  private ownsRead: boolean[] | undefined;
  constructor(private readonly weights: readonly Tensor[]) {}

  /** The weights as written: each tensor's own values (a weight left in the model's file is read from it). */
  original(): WeightFeed[] {
    this.asWritten = this.weights.map((t) => ({ name: t.name, type: FEED_TYPE[t.dtype]!, dims: t.dims, data: t.data() as Float32Array | Float64Array | Uint16Array }));
    this.ownsRead = this.weights.map((t, i) => !t.keeps(this.asWritten![i]!.data));
    return this.asWritten;
  }

  /**
   * Every non-zero finite weight moved by one ulp, in a direction drawn from `seed`. The first
   * sample moves the arrays original() read for it alone in place (no second read, no second copy);
   * the arrays feeding the weights as written are no longer valid after it.
   */
  perturbed(seed: number): WeightFeed[] {
    const asWritten = this.asWritten, ownsRead = this.ownsRead;
    this.asWritten = undefined;
    this.ownsRead = undefined;
    const holdsValues = new Set<number>();
    this.buffers ??= this.weights.map((t, i) => {
      const type = FEED_TYPE[t.dtype]!;
      const read = asWritten?.[i]?.data;
      if (read && ownsRead?.[i]) {
        holdsValues.add(i);
        return { name: t.name, type, dims: t.dims, data: read };
      }
      const n = t.size;
      const data = type === "float32" ? new Float32Array(n) : type === "float64" ? new Float64Array(n) : new Uint16Array(n);
      return { name: t.name, type, dims: t.dims, data };
    });
    const bits = new RandomBits(seed);
    this.weights.forEach((t, i) => {
      const f = this.buffers![i]!;
      if (!holdsValues.has(i)) copyValues(t, f.data);
      moveByOneUlp(f.type, f.data, bits);
    });
    return this.buffers;
  }
}

/** `t`'s values into `into`: straight from the stored bytes where it has them (no decoded copy in between). */
function copyValues(t: Tensor, into: Float32Array | Float64Array | Uint16Array): void {
  const raw = t.external ? undefined : t.original?.rawData;
  if (raw && raw.byteLength === into.byteLength) new Uint8Array(into.buffer, into.byteOffset, into.byteLength).set(raw);
  else into.set(t.data() as ArrayLike<number>);
}

/** Random directions: 32 from each draw of mulberry32(seed). */
export class RandomBits {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** 32 random bits. */
  word(): number {
    return (this.next() * 4294967296) >>> 0;
  }
}

/**
 * Move each non-zero finite value by exactly one ulp of its binade, up or down in magnitude at
 * random (one bit per value), in place. float32/float16 on the bit pattern (IEEE 754: the next
 * magnitude is the pattern ± 1; down from a power of two the lower binade's ulp is half as large,
 * so 2 steps); subnormals move by one step of their spacing; the largest finite magnitude moved up
 * becomes ±Inf, as adding one ulp to it rounds to.
 * A fraction of an ulp would often round back to the same value, and a parameter met once per
 * channel (a BN mean) would then go unmoved in every sample: that channel's noise would miss the
 * rounding a fold makes there.
 */
export function moveByOneUlp(type: "float32" | "float64" | "float16", data: Float32Array | Float64Array | Uint16Array, bits: RandomBits): void {
  if (type === "float32") moveBits(new Uint32Array(data.buffer, data.byteOffset, data.length), BINARY32, bits);
  else if (type === "float16") moveBits(data as Uint16Array, BINARY16, bits);
  else moveFloat64(data as Float64Array, bits);
}

/** An IEEE 754 format's bit fields: the magnitude (all but the sign), its first non-finite pattern, the mantissa, the first pattern of the second binade. */
interface BitFormat { magnitude: number; infinity: number; mantissa: number; secondBinade: number }
const BINARY32: BitFormat = { magnitude: 0x7fffffff, infinity: 0x7f800000, mantissa: 0x7fffff, secondBinade: 0x01000000 };
const BINARY16: BitFormat = { magnitude: 0x7fff, infinity: 0x7c00, mantissa: 0x3ff, secondBinade: 0x0800 };

function moveBits(u: Uint32Array | Uint16Array, f: BitFormat, bits: RandomBits): void {
  const n = u.length;
  for (let start = 0; start < n; start += 32) {
    let word = bits.word();
    const end = Math.min(n, start + 32);
    for (let i = start; i < end; i++, word >>>= 1) {
      const x = u[i]!;
      const magnitude = x & f.magnitude;
      if (magnitude === 0 || magnitude >= f.infinity) continue; // zero, Inf, NaN
      if (word & 1) u[i] = x + 1;
      else u[i] = x - ((magnitude & f.mantissa) === 0 && magnitude >= f.secondBinade ? 2 : 1);
    }
  }
}

/** float64 by arithmetic: v ± ulp of its binade is exact in float64. */
function moveFloat64(v: Float64Array, bits: RandomBits): void {
  const n = v.length;
  for (let start = 0; start < n; start += 32) {
    let word = bits.word();
    const end = Math.min(n, start + 32);
    for (let i = start; i < end; i++, word >>>= 1) {
      const x = v[i]!;
      if (x === 0 || !Number.isFinite(x)) continue;
      const a = Math.abs(x);
      let binade = 2 ** Math.floor(Math.log2(a));
      if (binade > a) binade /= 2; // log2 rounded up just below a power of two
      else if (binade * 2 <= a) binade *= 2;
      const ulp = Math.max(binade * 2 ** -52, Number.MIN_VALUE);
      v[i] = Math.sign(x) * (word & 1 ? a + ulp : a - ulp);
    }
  }
}

export type FloatFeedData = Float32Array | Float64Array | Uint16Array;

/** Float input values moved by exactly one ulp each (float32, float64, float16 half bits): a moved copy. */
export function perturbInput(type: string, data: FloatFeedData, seed: number): FloatFeedData {
  if (type !== "float32" && type !== "float64" && type !== "float16") return data;
  const copy = data.slice();
  moveByOneUlp(type, copy, new RandomBits(seed));
  return copy;
}
