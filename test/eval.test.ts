// The float64 reference evaluator against onnxruntime: every op on one-node models whose inputs
// are graph inputs (random shapes for the tricky ones), plus refusals and dtype round trips.
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { isRefusal, type Refusal } from "../src/algebra/linear-map.js";
import {
  EVALUATED_OPS, MAX_ELEMENTS, evaluateNode, recycle, tensorFromValue, valueFromTensor, withRecycling, type Value,
} from "../src/eval/index.js";
import { GraphBuilder } from "../src/ir/builder.js";
import { DataType, floatToHalf, halfToFloat } from "../src/ir/dtype.js";
import { attr, Node } from "../src/ir/graph.js";
import { modelToBytes } from "../src/ir/io.js";
import { onnx, type AttributeProto } from "../src/ir/proto.js";
import { Tensor } from "../src/ir/tensor.js";
import { pick, rng } from "./helpers/random.js";

const { FLOAT, INT64, INT32, BOOL, FLOAT16, DOUBLE, UINT8 } = DataType;

// --- inputs --------------------------------------------------------------------------------

interface In {
  dtype: number;
  dims: number[];
  data: number[];
}

const size = (dims: number[]) => dims.reduce((a, b) => a * b, 1);
const f32 = (dims: number[], r: () => number, scale = 1, offset = 0): In => ({
  dtype: FLOAT,
  dims,
  data: Array.from({ length: size(dims) }, () => Math.fround((r() * 2 - 1) * scale + offset)),
});
const i64 = (dims: number[], data: number[]): In => ({ dtype: INT64, dims, data });
const vec = (data: number[]): In => i64([data.length], data);
const s64 = (x: number): In => i64([], [x]);
const bools = (dims: number[], r: () => number): In => ({ dtype: BOOL, dims, data: Array.from({ length: size(dims) }, () => (r() < 0.5 ? 1 : 0)) });
const ints = (dims: number[], r: () => number, lo: number, hi: number, dtype: number = INT64): In => ({
  dtype,
  dims,
  data: Array.from({ length: size(dims) }, () => lo + Math.floor(r() * (hi - lo + 1))),
});

function tensorOf(name: string, i: In): Tensor {
  switch (i.dtype) {
    case FLOAT: return Tensor.fromData(name, FLOAT, i.dims, Float32Array.from(i.data));
    case DOUBLE: return Tensor.fromData(name, DOUBLE, i.dims, Float64Array.from(i.data));
    case FLOAT16: return Tensor.fromData(name, FLOAT16, i.dims, Uint16Array.from(i.data, floatToHalf));
    case INT64: return Tensor.fromData(name, INT64, i.dims, BigInt64Array.from(i.data.map((x) => BigInt(x))));
    case INT32: return Tensor.fromData(name, INT32, i.dims, Int32Array.from(i.data));
    case UINT8: return Tensor.fromData(name, UINT8, i.dims, Uint8Array.from(i.data));
    case BOOL: return Tensor.fromData(name, BOOL, i.dims, Uint8Array.from(i.data));
    default: throw new Error(`test dtype ${i.dtype}`);
  }
}

const ORT_TYPE: Record<number, string> = { [FLOAT]: "float32", [DOUBLE]: "float64", [FLOAT16]: "float16", [INT64]: "int64", [INT32]: "int32", [UINT8]: "uint8", [BOOL]: "bool" };

function ortTensor(t: Tensor): ort.Tensor {
  return new ort.Tensor(ORT_TYPE[t.dtype] as "float32", t.data() as Float32Array, [...t.dims]);
}

function ortValues(t: ort.Tensor): number[] {
  const d = t.data as unknown;
  if (t.type === "float16") return Array.from(d as Uint16Array, (h) => (typeof h === "number" && d instanceof Uint16Array ? halfToFloat(h) : Number(h)));
  if (t.type === "bool") return Array.from(d as ArrayLike<unknown>, (x) => (x ? 1 : 0));
  return Array.from(d as ArrayLike<number | bigint>, (x) => Number(x));
}

// --- attributes ----------------------------------------------------------------------------

/** A float attribute even for an integral value. */
class F {
  constructor(readonly v: number | number[]) {}
}
type A = number | number[] | string | F | AttributeProto;

function attrs(rec: Record<string, A>): AttributeProto[] {
  return Object.entries(rec).map(([k, v]) => {
    if (v instanceof F)
      return Array.isArray(v.v)
        ? onnx.AttributeProto.create({ name: k, type: onnx.AttributeProto.AttributeType.FLOATS, floats: v.v })
        : attr.float(k, v.v);
    if (typeof v === "string") return attr.string(k, v);
    if (Array.isArray(v)) return attr.ints(k, v);
    if (typeof v === "number") return Number.isInteger(v) ? attr.int(k, v) : attr.float(k, v);
    return { ...v, name: k };
  });
}

function tensorAttr(t: Tensor): AttributeProto {
  return onnx.AttributeProto.create({ type: onnx.AttributeProto.AttributeType.TENSOR, t: t.toProto() });
}

// --- checking ------------------------------------------------------------------------------

interface Case {
  op: string;
  /** null = optional input left out (empty name). */
  inputs: (In | null)[];
  attrs?: Record<string, A>;
  opset?: number;
  outputs?: number;
  tol?: number;
}

function evaluate(c: Case, node: Node): Value[] {
  const values = c.inputs.map((i, k) => (i ? valueFromTensor(tensorOf(`in${k}`, i)) : undefined));
  const res = evaluateNode(node, values, c.opset ?? 13);
  if (!Array.isArray(res)) throw new Error(`${c.op} unsupported: ${res.refused}`);
  return res;
}

/** Evaluate with evaluateNode and with onnxruntime; compare. Returns our values. */
async function check(c: Case): Promise<Value[]> {
  const opset = c.opset ?? 13;
  const names = c.inputs.map((i, k) => (i ? `in${k}` : ""));
  const outs = Array.from({ length: c.outputs ?? 1 }, (_, k) => `out${k}`);
  const node = new Node("n", c.op, names, outs, attrs(c.attrs ?? {}));
  const ours = evaluate(c, node);
  const b = new GraphBuilder(opset);
  const feeds: Record<string, ort.Tensor> = {};
  c.inputs.forEach((i, k) => {
    if (!i) return;
    b.input(`in${k}`, i.dims, i.dtype);
    feeds[`in${k}`] = ortTensor(tensorOf(`in${k}`, i));
  });
  b.nodes.push(node);
  outs.forEach((o, k) => b.output(o, undefined, ours[k]!.dtype));
  const model = b.build();
  model.original.irVersion = opset >= 19 ? 9 : 8;
  const session = await ort.InferenceSession.create(modelToBytes(model), { logSeverityLevel: 3 });
  const res = await session.run(feeds);
  outs.forEach((o, k) => {
    const theirs = res[o]!;
    const mine = ours[k]!;
    const what = `${c.op} output ${k} (opset ${opset}, inputs ${c.inputs.map((i) => (i ? `[${i.dims}]` : "-")).join(" ")})`;
    expect(mine.dims, what).toEqual([...theirs.dims]);
    expect(ORT_TYPE[mine.dtype], what).toBe(theirs.type);
    const want = ortValues(theirs);
    const got = Array.from(mine.data);
    if (mine.dtype === FLOAT || mine.dtype === DOUBLE || mine.dtype === FLOAT16) {
      const tol = c.tol ?? (mine.dtype === FLOAT16 ? 2e-3 : 1e-5);
      const scale = Math.max(1e-30, ...want.map((x) => (Number.isFinite(x) ? Math.abs(x) : 0)));
      want.forEach((w, j) => {
        const g = got[j]!;
        if (Number.isNaN(w) || !Number.isFinite(w)) expect(g, `${what} [${j}]`).toBe(w);
        else expect(Math.abs(g - w) / Math.max(scale, 1e-30), `${what} [${j}]: ${g} vs ${w}`).toBeLessThanOrEqual(tol);
      });
    } else {
      expect(got, what).toEqual(want);
    }
  });
  await session.release();
  return ours;
}

function unsupported(op: string, inputs: (Value | undefined)[], a: Record<string, A> = {}, opset = 13, outputs = 1, domain = ""): string {
  const node = new Node("n", op, inputs.map((v, i) => (v ? `i${i}` : "")), Array.from({ length: outputs }, (_, i) => `o${i}`), attrs(a), domain);
  const res = evaluateNode(node, inputs, opset);
  expect(isRefusal(res), `${op} should be refused`).toBe(true);
  return (res as Refusal).refused;
}

const V = (dtype: number, dims: number[], data: number[]): Value => ({ dtype, dims, data: Float64Array.from(data) });

/** Random shape of rank lo..hi with dims 1..maxDim. */
function shape(r: () => number, lo: number, hi: number, maxDim = 4): number[] {
  const rank = lo + Math.floor(r() * (hi - lo + 1));
  return Array.from({ length: rank }, () => 1 + Math.floor(r() * maxDim));
}

/** A shape that broadcasts to `out`: a suffix of it with some dims set to 1. */
function broadcastable(r: () => number, out: number[]): number[] {
  const drop = Math.floor(r() * (out.length + 1));
  return out.slice(drop).map((d) => (r() < 0.3 ? 1 : d));
}

// --- elementwise ---------------------------------------------------------------------------

describe("elementwise", () => {
  it("unary float ops", async () => {
    const r = rng(1);
    const x = f32([2, 3, 4], r, 3);
    const half = { ...x, data: [...x.data.slice(0, 20), 0.5, -0.5, 1.5, 2.5] };
    for (const op of ["Neg", "Abs", "Reciprocal", "Exp", "Floor", "Ceil", "Relu", "Sigmoid", "Tanh", "Sin", "Cos", "Softsign", "Sign", "Elu", "Selu", "Softplus"])
      await check({ op, inputs: [x] });
    await check({ op: "Round", inputs: [half], opset: 11 });
    await check({ op: "Sqrt", inputs: [f32([3, 5], r, 2, 2.5)] });
    await check({ op: "Log", inputs: [f32([3, 5], r, 2, 2.5)] });
    await check({ op: "LeakyRelu", inputs: [x], attrs: { alpha: 0.1 } });
    await check({ op: "HardSigmoid", inputs: [x], attrs: { alpha: 0.3, beta: 0.4 } });
    await check({ op: "HardSwish", inputs: [x], opset: 14 });
    await check({ op: "Elu", inputs: [x], attrs: { alpha: new F(0.5) } });
  });

  it("integer unary ops", async () => {
    const r = rng(2);
    await check({ op: "Neg", inputs: [ints([7], r, -50, 50)] });
    await check({ op: "Abs", inputs: [ints([7], r, -50, 50)] });
    await check({ op: "Relu", inputs: [ints([7], r, -50, 50, INT32)], opset: 14 });
  });

  it("binary float ops broadcast (random shapes)", async () => {
    const r = rng(3);
    for (let t = 0; t < 6; t++) {
      const out = shape(r, 0, 4);
      const a = f32(broadcastable(r, out), r, 2);
      const b = f32(broadcastable(r, out), r, 2, t % 2 ? 3 : 0);
      for (const op of ["Add", "Sub", "Mul", "Div"]) await check({ op, inputs: t % 3 === 0 ? [b, a] : [a, b] });
    }
    await check({ op: "Pow", inputs: [f32([3, 4], r, 1, 2), f32([4], r, 2)] });
    await check({ op: "Pow", inputs: [f32([3, 4], r, 2), s64(3)] });
    await check({ op: "Mod", inputs: [f32([3, 4], r, 10), f32([4], r, 1, 3)], attrs: { fmod: 1 } });
    await check({ op: "PRelu", inputs: [f32([2, 3, 4], r, 2), f32([3, 1], r, 1)] });
  });

  it("integer Div truncates, Mod follows fmod, Pow is exact", async () => {
    const r = rng(4);
    for (let t = 0; t < 4; t++) {
      const out = shape(r, 1, 3, 5);
      const a = ints(broadcastable(r, out), r, -100, 100);
      const b = ints(out, r, 1, 9);
      b.data = b.data.map((x, i) => (i % 2 ? -x : x));
      await check({ op: "Div", inputs: [a, b] });
      await check({ op: "Mod", inputs: [a, b] });
      await check({ op: "Mod", inputs: [a, b], attrs: { fmod: 1 } });
      await check({ op: "Mul", inputs: [a, b] });
      await check({ op: "Sub", inputs: [a, b] });
    }
    await check({ op: "Div", inputs: [ints([6], r, -1000, 1000, INT32), ints([6], r, 1, 7, INT32)] });
    await check({ op: "Pow", inputs: [ints([6], r, -9, 9), ints([6], r, 0, 9)] });
  });

  it("int64 near 2^53 stays exact (Div, Mod, Sub, Add, Mul)", async () => {
    const big = [2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 52 + 7, -(2 ** 51) - 3, 4503599627370497, 123456789012345];
    const small = [3, -7, 2, 5, -1, 1000003];
    await check({ op: "Div", inputs: [vec(big), vec(small)] });
    await check({ op: "Mod", inputs: [vec(big), vec(small)] });
    await check({ op: "Mod", inputs: [vec(big), vec(small)], attrs: { fmod: 1 } });
    await check({ op: "Sub", inputs: [vec(big), vec(big.map((x) => Math.sign(x) * 1))] });
    await check({ op: "Mul", inputs: [vec([2 ** 26, -(2 ** 26) - 1, 3]), vec([2 ** 26, 2 ** 26, 2 ** 51])] });
  });

  it("comparisons and logic", async () => {
    const r = rng(5);
    const a = ints([3, 4], r, -3, 3);
    const b = ints([4], r, -3, 3);
    const fa = f32([3, 4], r);
    const fb = { ...f32([3, 1], r), data: [fa.data[0]!, 0.5, fa.data[8]!] };
    for (const op of ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"]) {
      await check({ op, inputs: [a, b], opset: 16 });
      await check({ op, inputs: [fa, fb], opset: 16 });
    }
    const p = bools([2, 3], r);
    const q = bools([3], r);
    for (const op of ["And", "Or", "Xor"]) await check({ op, inputs: [p, q] });
    await check({ op: "Not", inputs: [p] });
    await check({ op: "Equal", inputs: [p, q] });
  });

  it("Where broadcasts three ways (random shapes)", async () => {
    const r = rng(6);
    for (let t = 0; t < 5; t++) {
      const out = shape(r, 0, 4);
      await check({ op: "Where", inputs: [bools(broadcastable(r, out), r), f32(broadcastable(r, out), r), f32(broadcastable(r, out), r)] });
      await check({ op: "Where", inputs: [bools(broadcastable(r, out), r), ints(broadcastable(r, out), r, -9, 9), ints(broadcastable(r, out), r, -9, 9)] });
    }
  });

  it("Clip (inputs and legacy attributes), Min/Max/Sum/Mean", async () => {
    const r = rng(7);
    const x = f32([3, 5], r, 3);
    await check({ op: "Clip", inputs: [x, f32([], r, 0.5, -1), f32([], r, 0.5, 1)] });
    await check({ op: "Clip", inputs: [x, null, f32([], r, 0.5, 1)] });
    await check({ op: "Clip", inputs: [ints([6], r, -9, 9), s64(-2), s64(4)] });
    await check({ op: "Clip", inputs: [x], opset: 6, attrs: { min: new F(-1), max: new F(0.5) } });
    for (const op of ["Min", "Max", "Sum", "Mean"]) await check({ op, inputs: [f32([3, 1, 4], r), f32([2, 4], r), f32([4], r)] });
    await check({ op: "Max", inputs: [ints([4], r, -9, 9), ints([2, 1], r, -9, 9)] });
    await check({ op: "Sum", inputs: [f32([3], r)] });
  });
});

// --- casts, constants, shapes --------------------------------------------------------------

describe("casts and constants", () => {
  it("Cast between float, int, bool and half", async () => {
    const r = rng(8);
    const x = f32([4, 5], r, 20);
    x.data[0] = 0;
    await check({ op: "Cast", inputs: [x], attrs: { to: INT64 } });
    await check({ op: "Cast", inputs: [x], attrs: { to: INT32 } });
    await check({ op: "Cast", inputs: [x], attrs: { to: BOOL } });
    await check({ op: "Cast", inputs: [x], attrs: { to: FLOAT16 } });
    await check({ op: "Cast", inputs: [x], attrs: { to: DOUBLE } });
    await check({ op: "Cast", inputs: [ints([5], r, -300, 300)], attrs: { to: FLOAT } });
    await check({ op: "Cast", inputs: [bools([5], r)], attrs: { to: FLOAT } });
    await check({ op: "Cast", inputs: [bools([5], r)], attrs: { to: INT64 } });
    await check({ op: "CastLike", inputs: [ints([5], r, -300, 300), f32([1], r)], opset: 15 });
    await check({ op: "Add", inputs: [{ dtype: FLOAT16, dims: [4], data: [0.1, 1e3, -2.5, 7] }, { dtype: FLOAT16, dims: [4], data: [0.2, 1, 3, 1e-3] }] });
  });

  it("Constant, ConstantOfShape, Identity, Dropout", async () => {
    const t = Tensor.fromData("t", FLOAT, [2, 2], Float32Array.of(1, 2.5, -3, 4));
    await check({ op: "Constant", inputs: [], attrs: { value: tensorAttr(t) } });
    await check({ op: "Constant", inputs: [], attrs: { value_float: new F(2.5) } });
    await check({ op: "Constant", inputs: [], attrs: { value_floats: new F([1, 2.5]) } });
    await check({ op: "Constant", inputs: [], attrs: { value_int: 7 } });
    await check({ op: "Constant", inputs: [], attrs: { value_ints: [7, -3, 0] } });
    await check({ op: "ConstantOfShape", inputs: [vec([2, 3])] });
    await check({ op: "ConstantOfShape", inputs: [vec([3, 1])], attrs: { value: tensorAttr(Tensor.fromData("v", INT64, [1], BigInt64Array.of(-5n))) } });
    await check({ op: "ConstantOfShape", inputs: [vec([])], attrs: { value: tensorAttr(Tensor.fromData("v", FLOAT, [1], Float32Array.of(0.25))) } });
    const r = rng(9);
    await check({ op: "Identity", inputs: [f32([2, 3], r)] });
    await check({ op: "Dropout", inputs: [f32([2, 3], r)], outputs: 2 });
    await check({ op: "Dropout", inputs: [f32([2, 3], r)], opset: 7 });
  });

  it("Shape (start/end), Size, Range", async () => {
    const r = rng(10);
    const x = f32([2, 3, 4, 5], r);
    await check({ op: "Shape", inputs: [x] });
    await check({ op: "Shape", inputs: [x], opset: 15, attrs: { start: 1 } });
    await check({ op: "Shape", inputs: [x], opset: 15, attrs: { start: -3, end: -1 } });
    await check({ op: "Shape", inputs: [x], opset: 15, attrs: { start: 3, end: 1 } });
    await check({ op: "Size", inputs: [x] });
    await check({ op: "Range", inputs: [s64(2), s64(17), s64(3)], opset: 11 });
    await check({ op: "Range", inputs: [s64(10), s64(-7), s64(-4)], opset: 11 });
    await check({ op: "Range", inputs: [s64(5), s64(1), s64(1)], opset: 11 });
    const fs = (x: number): In => ({ dtype: FLOAT, dims: [], data: [Math.fround(x)] });
    await check({ op: "Range", inputs: [fs(0.1), fs(3.3), fs(0.3)], opset: 11 });
  });
});

describe("shape plumbing", () => {
  it("Reshape with 0 and -1, allowzero", async () => {
    const r = rng(11);
    const x = f32([2, 3, 4], r);
    for (const s of [[0, -1], [-1], [4, 0, 2], [2, -1, 2], [0, 0, 4], [1, 24], [-1, 1, 2]]) await check({ op: "Reshape", inputs: [x, vec(s)] });
    await check({ op: "Reshape", inputs: [x, vec([4, 6])], opset: 14, attrs: { allowzero: 1 } });
    await check({ op: "Reshape", inputs: [f32([2, 0, 3], r), vec([3, 0])], opset: 14, attrs: { allowzero: 1 } });
    await check({ op: "Flatten", inputs: [x] });
    await check({ op: "Flatten", inputs: [x], attrs: { axis: -1 } });
    await check({ op: "Flatten", inputs: [x], attrs: { axis: 0 } });
  });

  it("Squeeze/Unsqueeze with axes as attribute (opset 11) and input (13)", async () => {
    const r = rng(12);
    const x = f32([1, 3, 1, 2], r);
    await check({ op: "Squeeze", inputs: [x] });
    await check({ op: "Squeeze", inputs: [x, vec([-2])] });
    await check({ op: "Squeeze", inputs: [x], opset: 11, attrs: { axes: [0, 2] } });
    await check({ op: "Unsqueeze", inputs: [x, vec([0, -1])] });
    await check({ op: "Unsqueeze", inputs: [s64(5), vec([0])] });
    await check({ op: "Unsqueeze", inputs: [x], opset: 11, attrs: { axes: [1, 5] } });
  });

  it("Transpose, Concat, Split", async () => {
    const r = rng(13);
    const x = f32([2, 3, 4], r);
    await check({ op: "Transpose", inputs: [x] });
    await check({ op: "Transpose", inputs: [x], attrs: { perm: [1, 2, 0] } });
    await check({ op: "Concat", inputs: [f32([2, 1, 4], r), x, f32([2, 2, 4], r)], attrs: { axis: -2 } });
    await check({ op: "Concat", inputs: [vec([1, 2]), vec([]), vec([-1])], attrs: { axis: 0 } });
    await check({ op: "Split", inputs: [x, vec([1, 3])], attrs: { axis: 2 }, outputs: 2 });
    await check({ op: "Split", inputs: [x], attrs: { axis: 1 }, outputs: 3 });
    await check({ op: "Split", inputs: [x], opset: 11, attrs: { axis: -1, split: [3, 1] }, outputs: 2 });
    await check({ op: "Split", inputs: [f32([2, 7], r)], opset: 18, attrs: { axis: 1, num_outputs: 3 }, outputs: 3 });
  });

  it("Slice: steps, negatives, clamping, INT64_MAX (random)", async () => {
    const r = rng(14);
    const BIG = 2 ** 63; // INT64_MAX/MIN as the exporters write them
    for (let t = 0; t < 12; t++) {
      const x = f32(shape(r, 1, 4, 6), r);
      const rank = x.dims.length;
      const k = 1 + Math.floor(r() * rank);
      const axes = [...Array(rank).keys()].sort(() => r() - 0.5).slice(0, k);
      const starts: number[] = [], ends: number[] = [], steps: number[] = [];
      for (const a of axes) {
        const d = x.dims[a]!;
        const step = pick(r, [1, 1, 2, -1, -2, 3]);
        steps.push(step);
        starts.push(pick(r, [0, 1, -1, d, d + 3, -d - 2, Math.floor(r() * d)]));
        ends.push(step > 0 ? pick(r, [d, -1, 2, 100]) : pick(r, [-d - 1, 0, -100, 1]));
      }
      const negAxes = axes.map((a) => (r() < 0.3 ? a - rank : a));
      await check({ op: "Slice", inputs: [x, vec(starts), vec(ends), vec(negAxes), vec(steps)] });
    }
    const x = f32([3, 5], r);
    const toBig = (v: number) => BigInt(v === BIG ? "9223372036854775807" : v === -BIG ? "-9223372036854775808" : v);
    // INT64_MAX ends via a real int64 tensor.
    const ends = Tensor.fromData("e", INT64, [2], BigInt64Array.of(toBig(BIG), toBig(BIG)));
    const res = evaluateNode(new Node("s", "Slice", ["x", "s", "e"], ["y"]), [valueFromTensor(tensorOf("x", x)), valueFromTensor(tensorOf("s", vec([1, -3]))), valueFromTensor(ends)], 13);
    expect(Array.isArray(res) && res[0]!.dims).toEqual([2, 3]);
    const rev = Tensor.fromData("e", INT64, [1], BigInt64Array.of(toBig(-BIG)));
    const res2 = evaluateNode(new Node("s", "Slice", ["x", "s", "e", "a", "st"], ["y"]), [valueFromTensor(tensorOf("x", x)), valueFromTensor(tensorOf("s", vec([-1]))), valueFromTensor(rev), valueFromTensor(tensorOf("a", vec([1]))), valueFromTensor(tensorOf("st", vec([-1])))], 13);
    expect(Array.isArray(res2) && Array.from(res2[0]!.data.slice(0, 5))).toEqual([4, 3, 2, 1, 0].map((i) => x.data[i]));
    await check({ op: "Slice", inputs: [x], opset: 9, attrs: { starts: [1, 0], ends: [100, -1], axes: [0, 1] } });
    await check({ op: "Slice", inputs: [x, vec([0]), vec([4]), null, vec([2])] });
  });

  it("Gather / GatherElements / GatherND (any axis, negative indices, random)", async () => {
    const r = rng(15);
    for (let t = 0; t < 8; t++) {
      const x = f32(shape(r, 1, 3, 5), r);
      const axis = Math.floor(r() * x.dims.length);
      const d = x.dims[axis]!;
      const idxShape = shape(r, 0, 2, 3);
      await check({ op: "Gather", inputs: [x, ints(idxShape, r, -d, d - 1)], attrs: { axis: t % 2 ? axis - x.dims.length : axis } });
    }
    await check({ op: "Gather", inputs: [vec([2, 3, 5, 7]), s64(-1)] });
    await check({ op: "Gather", inputs: [f32([3, 4], r), ints([2, 2], r, -3, 2, INT32)] });
    for (let t = 0; t < 4; t++) {
      const x = f32(shape(r, 1, 3, 4), r);
      const axis = Math.floor(r() * x.dims.length);
      const idims = x.dims.map((dd, a) => (a === axis ? 1 + Math.floor(r() * 5) : 1 + Math.floor(r() * dd)));
      await check({ op: "GatherElements", inputs: [x, ints(idims, r, -x.dims[axis]!, x.dims[axis]! - 1)], attrs: { axis } });
    }
    await check({ op: "GatherND", inputs: [f32([3, 4, 2], r), ints([5, 2], r, 0, 2)] });
    await check({ op: "GatherND", inputs: [f32([2, 4, 3], r), ints([2, 3, 1], r, 0, 3)], attrs: { batch_dims: 1 } });
  });

  it("Expand and Tile (random)", async () => {
    const r = rng(16);
    for (let t = 0; t < 6; t++) {
      const out = shape(r, 1, 4);
      const x = f32(broadcastable(r, out), r);
      const target = out.map((d, i) => (r() < 0.3 && x.dims[x.dims.length - out.length + i] !== 1 ? 1 : d)).slice(Math.floor(r() * 2));
      await check({ op: "Expand", inputs: [x, vec(target)] });
    }
    await check({ op: "Expand", inputs: [vec([4, 5]), vec([3, 1])] });
    await check({ op: "Tile", inputs: [f32([2, 3], r), vec([2, 3])] });
    await check({ op: "Tile", inputs: [ints([3], r, 0, 9), vec([4])] });
  });

  it("Pad constant/reflect/edge, pads as attribute (opset 10) and input (13, 18 axes)", async () => {
    const r = rng(17);
    const x = f32([2, 3, 4], r);
    await check({ op: "Pad", inputs: [x, vec([0, 1, 2, 1, 0, 1])] });
    await check({ op: "Pad", inputs: [x, vec([0, 1, 2, 1, 0, 1]), f32([], r)] });
    await check({ op: "Pad", inputs: [x, vec([0, 2, 3, 0, 1, 3])], attrs: { mode: "reflect" } });
    await check({ op: "Pad", inputs: [x, vec([1, 2, 3, 0, 4, 1])], attrs: { mode: "edge" } });
    await check({ op: "Pad", inputs: [x, vec([0, -1, 1, 0, 1, -2])] });
    await check({ op: "Pad", inputs: [x], opset: 10, attrs: { pads: [0, 0, 1, 0, 0, 2], value: new F(1.5) } });
    await check({ op: "Pad", inputs: [x, vec([1, 2]), null, vec([-1])], opset: 18 });
    await check({ op: "Pad", inputs: [x, vec([0, 1, 2, 0, 2, 3])], opset: 19, attrs: { mode: "wrap" } });
    // OREPA's 1x1 kernel padded to 3x3, and a pad of 0 everywhere.
    await check({ op: "Pad", inputs: [f32([4, 3, 1, 1], r), vec([0, 0, 1, 1, 0, 0, 1, 1])] });
    await check({ op: "Pad", inputs: [x, vec([0, 0, 0, 0, 0, 0])] });
  });

  it("ScatterND and ScatterElements (random, distinct indices)", async () => {
    const r = rng(18);
    for (let t = 0; t < 5; t++) {
      const x = f32(shape(r, 1, 3, 4), r);
      const k = 1 + Math.floor(r() * x.dims.length);
      const cells = size(x.dims.slice(0, k));
      const n = 1 + Math.floor(r() * cells);
      const chosen = [...Array(cells).keys()].sort(() => r() - 0.5).slice(0, n);
      const idx: number[] = [];
      for (const c of chosen) {
        let rem = c;
        const tuple: number[] = [];
        for (let a = k - 1; a >= 0; a--) {
          tuple.unshift(rem % x.dims[a]!);
          rem = Math.floor(rem / x.dims[a]!);
        }
        idx.push(...tuple.map((v, a) => (r() < 0.3 ? v - x.dims[a]! : v)));
      }
      await check({ op: "ScatterND", inputs: [x, i64([n, k], idx), f32([n, ...x.dims.slice(k)], r)] });
    }
    await check({ op: "ScatterND", inputs: [f32([4, 2], r), i64([2, 1], [1, 1]), f32([2, 2], r)], opset: 16, attrs: { reduction: "add" } });
    await check({ op: "ScatterElements", inputs: [f32([3, 3], r), i64([2, 3], [1, 0, 2, 0, 2, 1]), f32([2, 3], r)], attrs: { axis: 0 } });
    await check({ op: "ScatterElements", inputs: [f32([2, 5], r), i64([2, 2], [-1, 0, 3, 1]), f32([2, 2], r)], attrs: { axis: 1 } });
    await check({ op: "ScatterElements", inputs: [f32([2, 3], r), i64([1, 3], [1, 1, 1]), f32([1, 3], r)], opset: 16, attrs: { axis: 1, reduction: "mul" } });
  });

  it("Trilu, CumSum, NonZero", async () => {
    const r = rng(19);
    await check({ op: "Trilu", inputs: [f32([2, 3, 4], r)], opset: 14 });
    await check({ op: "Trilu", inputs: [f32([4, 3], r), s64(-1)], opset: 14, attrs: { upper: 0 } });
    await check({ op: "CumSum", inputs: [f32([3, 4], r), s64(1)] });
    await check({ op: "CumSum", inputs: [ints([3, 4], r, -5, 5), s64(0)], attrs: { exclusive: 1, reverse: 1 } });
    await check({ op: "NonZero", inputs: [ints([3, 4], r, 0, 1)] });
  });
});

// --- contractions ----------------------------------------------------------------------------

describe("linear algebra", () => {
  it("MatMul broadcasting and 1-D rules (random)", async () => {
    const r = rng(20);
    const cases: [number[], number[]][] = [[[3], [3]], [[3], [3, 4]], [[2, 3], [3]], [[2, 5, 3], [3]], [[3], [2, 3, 4]]];
    for (let t = 0; t < 8; t++) {
      const batch = shape(r, 0, 3, 3);
      const [m, k, n] = [1 + Math.floor(r() * 5), 1 + Math.floor(r() * 5), 1 + Math.floor(r() * 5)];
      cases.push([[...broadcastable(r, batch), m, k], [...broadcastable(r, batch), k, n]]);
    }
    for (const [a, b] of cases) await check({ op: "MatMul", inputs: [f32(a, r), f32(b, r)] });
    await check({ op: "MatMul", inputs: [ints([2, 3], r, -9, 9), ints([3, 2], r, -9, 9)] });
  });

  it("Gemm with trans flags, alpha/beta and every C form (random)", async () => {
    const r = rng(21);
    for (let t = 0; t < 8; t++) {
      const [m, k, n] = [1 + Math.floor(r() * 5), 1 + Math.floor(r() * 5), 1 + Math.floor(r() * 5)];
      const transA = t & 1, transB = (t >> 1) & 1;
      const a = f32(transA ? [k, m] : [m, k], r);
      const b = f32(transB ? [n, k] : [k, n], r);
      const cShape = pick(r, [[m, n], [n], [1, n], [m, 1], [], [1]]);
      const at: Record<string, A> = { transA, transB };
      if (t >= 4) Object.assign(at, { alpha: new F(0.5 + t), beta: new F(-1.25) });
      await check({ op: "Gemm", inputs: t === 7 ? [a, b] : [a, b, f32(cShape, r)], attrs: at });
    }
  });

  it("Einsum: explicit, implicit, OREPA kernel forms", async () => {
    const r = rng(22);
    const cases: [string, number[][]][] = [
      ["ij,jk->ik", [[3, 4], [4, 5]]],
      ["ij,jk", [[3, 4], [4, 2]]],
      ["bij,bjk->bik", [[2, 3, 4], [2, 4, 3]]],
      ["oi,ihw->ohw", [[4, 3], [3, 3, 3]]],
      ["oihw,o->oihw", [[4, 2, 3, 3], [4]]],
      ["ij->ji", [[3, 5]]],
      ["ij->", [[3, 5]]],
      ["i,i->", [[6], [6]]],
      ["i,j->ij", [[3], [4]]],
      ["ab,bc,cd->ad", [[2, 3], [3, 4], [4, 2]]],
      ["ba", [[3, 2]]],
      ["n c h w, o c -> n o h w", [[2, 3, 2, 2], [4, 3]]],
      // OREPA's kernel generation: a size-1 operand axis broadcasts (h = 1 against 3), the 1x1 → kxk
      // and grouped forms, a summed index only one operand carries.
      ["oihw,hw->oihw", [[4, 2, 3, 3], [1, 3]]],
      ["oihw,hw->oihw", [[4, 2, 1, 3], [3, 3]]],
      ["oi,hw->oihw", [[4, 2], [3, 3]]],
      ["ti,othw->oihw", [[5, 3], [4, 5, 3, 3]]],
      ["gti,gothw->goihw", [[2, 3, 2], [2, 4, 3, 3, 3]]],
      ["ij,jk->i", [[3, 4], [4, 5]]],
      ["bij,bjk->bki", [[1, 3, 4], [2, 4, 3]]],
    ];
    for (const [equation, dims] of cases) await check({ op: "Einsum", inputs: dims.map((d) => f32(d, r)), attrs: { equation }, opset: 12 });
  });

  it("Conv 1-D/2-D/3-D with groups, strides, pads, dilations, auto_pad (random)", async () => {
    const r = rng(23);
    for (let t = 0; t < 10; t++) {
      const nsp = t < 6 ? 2 : t < 9 ? 1 : 3;
      const g = pick(r, [1, 1, 2, 3]);
      const cg = 1 + Math.floor(r() * 2);
      const mg = 1 + Math.floor(r() * 2);
      const k = Array.from({ length: nsp }, () => 1 + Math.floor(r() * 3));
      const sp = Array.from({ length: nsp }, () => 5 + Math.floor(r() * 4));
      const x = f32([1 + Math.floor(r() * 2), g * cg, ...sp], r);
      const w = f32([g * mg, cg, ...k], r);
      const a: Record<string, A> = { group: g, strides: k.map(() => pick(r, [1, 2])), dilations: k.map(() => pick(r, [1, 1, 2])) };
      const autoPad = pick(r, ["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]);
      if (autoPad === "NOTSET") a.pads = [...k, ...k].map(() => Math.floor(r() * 3));
      else a.auto_pad = autoPad;
      if (autoPad.startsWith("SAME")) a.dilations = k.map(() => 1);
      if (r() < 0.5) a.kernel_shape = k;
      await check({ op: "Conv", inputs: r() < 0.5 ? [x, w, f32([g * mg], r)] : [x, w], attrs: a });
    }
  });

  it("Conv applied to weights (kernel generation) and ConvTranspose", async () => {
    const r = rng(24);
    // OREPA-style: a 1x1 conv over a bank of 3x3 kernels.
    await check({ op: "Conv", inputs: [f32([8, 4, 3, 3], r), f32([6, 4, 1, 1], r)] });
    await check({ op: "ConvTranspose", inputs: [f32([1, 4, 3, 3], r), f32([4, 2, 3, 3], r), f32([2], r)], attrs: { strides: [2, 2], pads: [1, 0, 0, 1], output_padding: [1, 0] } });
    await check({ op: "ConvTranspose", inputs: [f32([2, 4, 5], r), f32([4, 3, 2], r)], attrs: { group: 2, dilations: [2] } });
  });

  it("ConvTranspose VALID, AveragePool SAME, Cast to small ints, Squeeze negative axes", async () => {
    const r = rng(29);
    await check({ op: "ConvTranspose", inputs: [f32([1, 2, 3, 4], r), f32([2, 3, 2, 3], r)], attrs: { auto_pad: "VALID", strides: [2, 1] } });
    await check({ op: "AveragePool", inputs: [f32([1, 2, 5, 6], r)], attrs: { kernel_shape: [3, 2], auto_pad: "SAME_UPPER", strides: [2, 2] } });
    await check({ op: "AveragePool", inputs: [f32([1, 2, 5, 6], r)], attrs: { kernel_shape: [2, 3], auto_pad: "SAME_LOWER" } });
    await check({ op: "Cast", inputs: [f32([6], r, 100, 120)], attrs: { to: UINT8 } });
    await check({ op: "Cast", inputs: [ints([6], r, -3, 3)], attrs: { to: INT32 } });
    await check({ op: "Cast", inputs: [{ dtype: FLOAT16, dims: [3], data: [0.1, -3.5, 1000] }], attrs: { to: FLOAT } });
    await check({ op: "Squeeze", inputs: [f32([2, 1, 3, 1], r)], opset: 11, attrs: { axes: [-1, 1] } });
  });

  it("BatchNormalization, pooling", async () => {
    const r = rng(25);
    const x = f32([2, 3, 4, 5], r);
    await check({ op: "BatchNormalization", inputs: [x, f32([3], r, 0.5, 1), f32([3], r), f32([3], r), f32([3], r, 0.5, 1)], attrs: { epsilon: 1e-3 } });
    await check({ op: "BatchNormalization", inputs: [f32([2, 3], r), f32([3], r), f32([3], r), f32([3], r), f32([3], r, 0.5, 1)], opset: 15 });
    await check({ op: "GlobalAveragePool", inputs: [x] });
    await check({ op: "GlobalMaxPool", inputs: [x] });
    await check({ op: "AveragePool", inputs: [x], attrs: { kernel_shape: [3, 2], pads: [1, 1, 1, 0], strides: [2, 1] } });
    await check({ op: "AveragePool", inputs: [x], attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1], count_include_pad: 1 } });
    await check({ op: "MaxPool", inputs: [x], attrs: { kernel_shape: [2, 3], pads: [0, 1, 1, 1], strides: [2, 2], dilations: [1, 2] } });
    await check({ op: "MaxPool", inputs: [f32([1, 2, 7], r)], attrs: { kernel_shape: [3], auto_pad: "SAME_UPPER", strides: [2] } });
  });
});

// --- reductions ------------------------------------------------------------------------------

describe("reductions and softmax", () => {
  it("Reduce* with axes as attribute (13) and input (18), keepdims, noop_with_empty_axes", async () => {
    const r = rng(26);
    const x = f32([2, 3, 4], r, 1, 1.5);
    for (const op of ["ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]) {
      await check({ op, inputs: [x], attrs: { axes: [0, -1] } });
      await check({ op, inputs: [x], attrs: { keepdims: 0 } });
      await check({ op, inputs: [x, vec([1])], opset: 18, attrs: { keepdims: 0 } });
    }
    await check({ op: "ReduceSum", inputs: [x, vec([0, 2])] });
    await check({ op: "ReduceSum", inputs: [x], attrs: { keepdims: 0 } });
    await check({ op: "ReduceSum", inputs: [x, vec([])], attrs: { noop_with_empty_axes: 1 } });
    await check({ op: "ReduceSum", inputs: [x], opset: 11, attrs: { axes: [1] } });
    await check({ op: "ReduceMean", inputs: [x], opset: 18, attrs: { noop_with_empty_axes: 1 } });
    await check({ op: "ReduceSum", inputs: [ints([3, 4], r, -9, 9), vec([1])] });
    await check({ op: "ReduceMax", inputs: [ints([3, 4], r, -9, 9)], attrs: { axes: [0] } });
    await check({ op: "ArgMax", inputs: [ints([3, 4], r, 0, 3)], attrs: { axis: 1 } });
    await check({ op: "ArgMin", inputs: [ints([3, 4], r, 0, 3)], attrs: { axis: 0, keepdims: 0, select_last_index: 1 } });
  });

  it("Softmax/LogSoftmax axis semantics per opset (random)", async () => {
    const r = rng(27);
    for (let t = 0; t < 6; t++) {
      const x = f32(shape(r, 1, 4, 4), r, 4);
      const axis = Math.floor(r() * x.dims.length) - (t % 2 ? x.dims.length : 0);
      for (const opset of [11, 13]) {
        await check({ op: "Softmax", inputs: [x], attrs: { axis }, opset });
        await check({ op: "LogSoftmax", inputs: [x], attrs: { axis }, opset });
      }
    }
    await check({ op: "Softmax", inputs: [f32([2, 3, 4], r)], opset: 11 });
    await check({ op: "Softmax", inputs: [f32([2, 3, 4], r)] });
  });
});

// --- small graphs ----------------------------------------------------------------------------

interface Step {
  op: string;
  inputs: string[];
  attrs?: Record<string, A>;
  outputs?: number;
}

/** Evaluate a small graph node by node and compare every graph output with onnxruntime. */
async function checkGraph(inputs: Record<string, In>, steps: Step[], outputs: string[], opset = 13, tol = 1e-5): Promise<Map<string, Value>> {
  const env = new Map<string, Value>();
  const b = new GraphBuilder(opset);
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, i] of Object.entries(inputs)) {
    const t = tensorOf(name, i);
    env.set(name, valueFromTensor(t));
    b.input(name, i.dims, i.dtype);
    feeds[name] = ortTensor(t);
  }
  steps.forEach((s, k) => {
    const outs = Array.from({ length: s.outputs ?? 1 }, (_, j) => `s${k}_${j}`);
    const node = new Node(`n${k}`, s.op, s.inputs, outs, attrs(s.attrs ?? {}));
    const res = evaluateNode(node, s.inputs.map((n) => (n ? env.get(n) : undefined)), opset);
    if (!Array.isArray(res)) throw new Error(`${s.op}: ${res.refused}`);
    outs.forEach((o, j) => env.set(o, res[j]!));
    b.nodes.push(node);
  });
  for (const o of outputs) b.output(o, undefined, env.get(o)!.dtype);
  const session = await ort.InferenceSession.create(modelToBytes(b.build()), { logSeverityLevel: 3 });
  const res = await session.run(feeds);
  for (const o of outputs) {
    const mine = env.get(o)!;
    expect(mine.dims, o).toEqual([...res[o]!.dims]);
    const want = ortValues(res[o]!);
    const scale = Math.max(1e-30, ...want.map(Math.abs));
    want.forEach((w, j) => expect(Math.abs(mine.data[j]! - w) / scale, `${o}[${j}]`).toBeLessThanOrEqual(tol));
  }
  await session.release();
  return env;
}

describe("small constant subgraphs", () => {
  it("PyTorch shape plumbing: Shape/Gather/Unsqueeze/Concat/Reshape/Equal/Where/ConstantOfShape/Expand", async () => {
    const r = rng(40);
    // The view(B, C, -1) pattern, then an Expand whose target comes through Equal/Where.
    await checkGraph(
      { x: f32([2, 3, 4, 5], r), i0: s64(0), i1: s64(1), ax: vec([0]), m1: vec([-1]), ones: vec([1, 1, 1]), neg: vec([-1, -1, -1]) },
      [
        { op: "Shape", inputs: ["x"] }, // s0_0 = [2,3,4,5]
        { op: "Gather", inputs: ["s0_0", "i0"], attrs: { axis: 0 } }, // s1_0 = 2
        { op: "Gather", inputs: ["s0_0", "i1"], attrs: { axis: 0 } }, // s2_0 = 3
        { op: "Unsqueeze", inputs: ["s1_0", "ax"] }, // s3_0
        { op: "Unsqueeze", inputs: ["s2_0", "ax"] }, // s4_0
        { op: "Concat", inputs: ["s3_0", "s4_0", "m1"], attrs: { axis: 0 } }, // s5_0 = [2,3,-1]
        { op: "Reshape", inputs: ["x", "s5_0"] }, // s6_0
        { op: "Equal", inputs: ["s5_0", "neg"] }, // s7_0
        { op: "Where", inputs: ["s7_0", "ones", "s5_0"] }, // s8_0 = [2,3,1]
        { op: "ConstantOfShape", inputs: ["s8_0"] }, // s9_0
        { op: "Shape", inputs: ["s6_0"] }, // s10_0 = [2,3,20]
        { op: "Expand", inputs: ["s9_0", "s10_0"] }, // s11_0
      ],
      ["s5_0", "s6_0", "s8_0", "s11_0"],
    );
  });

  it("BN parameter arithmetic and an OREPA-style kernel built in-graph", async () => {
    const r = rng(41);
    await checkGraph(
      { w: f32([4, 3, 3, 3], r), gamma: f32([4], r, 0.5, 1), beta: f32([4], r), mean: f32([4], r), v: f32([4], r, 0.5, 1), eps: f32([], r, 0, 1e-5), shp: vec([-1, 1, 1, 1]) },
      [
        { op: "Add", inputs: ["v", "eps"] }, // s0_0
        { op: "Sqrt", inputs: ["s0_0"] }, // s1_0
        { op: "Div", inputs: ["gamma", "s1_0"] }, // s2_0
        { op: "Reshape", inputs: ["s2_0", "shp"] }, // s3_0
        { op: "Mul", inputs: ["w", "s3_0"] }, // s4_0: folded weight
        { op: "Mul", inputs: ["mean", "s2_0"] }, // s5_0
        { op: "Sub", inputs: ["beta", "s5_0"] }, // s6_0: folded bias
      ],
      ["s4_0", "s6_0"],
    );
    await checkGraph(
      { bank: f32([6, 4, 3, 3], r), coef: f32([8, 6], r), w1: f32([8, 4, 1, 1], r), pads: vec([0, 0, 1, 1, 0, 0, 1, 1]) },
      [
        { op: "Einsum", inputs: ["coef", "bank"], attrs: { equation: "om,mihw->oihw" } }, // s0_0 [8,4,3,3]
        { op: "Pad", inputs: ["w1", "pads"] }, // s1_0: 1x1 -> 3x3
        { op: "Add", inputs: ["s0_0", "s1_0"] }, // s2_0
        { op: "Conv", inputs: ["bank", "s2_0"], attrs: { pads: [1, 1, 1, 1] } }, // s3_0: a conv applied to weights
      ],
      ["s2_0", "s3_0"],
    );
  });

  it("a constant attention head: MatMul/Softmax/Gemm/Relu/Conv1d/Sigmoid on learned constants", async () => {
    const r = rng(42);
    await checkGraph(
      { q: f32([1, 4, 8], r), k: f32([1, 6, 8], r), wv: f32([5, 6], r), bv: f32([5], r), c1: f32([3, 4, 3], r), zero: vec([0]) },
      [
        { op: "Transpose", inputs: ["k"], attrs: { perm: [0, 2, 1] } }, // s0_0 [1,8,6]
        { op: "MatMul", inputs: ["q", "s0_0"] }, // s1_0 [1,4,6]
        { op: "Softmax", inputs: ["s1_0"], attrs: { axis: -1 } }, // s2_0
        { op: "Squeeze", inputs: ["s2_0", "zero"] }, // s3_0 [4,6]
        { op: "Gemm", inputs: ["s3_0", "wv", "bv"], attrs: { transB: 1 } }, // s4_0 [4,5]
        { op: "Relu", inputs: ["s4_0"] }, // s5_0
        { op: "Conv", inputs: ["s2_0", "c1"], attrs: { pads: [1, 1] } }, // s6_0: Conv1d [1,3,6]
        { op: "Sigmoid", inputs: ["s6_0"] }, // s7_0
      ],
      ["s2_0", "s5_0", "s7_0"],
    );
  });

  it("Slice/Unsqueeze attributes holding INT64_MAX as protobuf longs (opset 9)", async () => {
    const r = rng(43);
    const big = onnx.AttributeProto.fromObject({ type: onnx.AttributeProto.AttributeType.INTS, ints: ["1", "9223372036854775807"] });
    await check({ op: "Slice", inputs: [f32([4, 5], r)], opset: 9, attrs: { starts: big, ends: { ...big }, axes: [1, 0] } });
    await check({ op: "Slice", inputs: [f32([4, 5], r)], opset: 9, attrs: { starts: [0, 2], ends: big } });
  });
});

// --- shape-only inputs, contractions as matrix products --------------------------------------

describe("shape-only inputs and matrix products", () => {
  const run = (op: string, inputs: (Value | undefined)[], a: Record<string, A> = {}, opset = 13): Value[] => {
    const node = new Node("n", op, inputs.map((_, i) => `in${i}`), ["out0"], attrs(a));
    const r = evaluateNode(node, inputs, opset);
    if (!Array.isArray(r)) throw new Error(`${op}: ${r.refused}`);
    return r;
  };
  it("Shape and Size of a tensor known by its shape only (no values)", () => {
    const placeholder: Value = { dtype: FLOAT, dims: [2, 3, 40, 40], data: new Float64Array(0) };
    expect(Array.from(run("Shape", [placeholder])[0]!.data)).toEqual([2, 3, 40, 40]);
    expect(Array.from(run("Shape", [placeholder], { start: 1, end: -1 }, 15)[0]!.data)).toEqual([3, 40]);
    expect(Array.from(run("Size", [placeholder])[0]!.data)).toEqual([9600]);
    // Larger than any tensor the evaluator would hold: only its dims are read.
    expect(Array.from(run("Shape", [{ dtype: FLOAT, dims: [1 << 20, 1 << 20], data: new Float64Array(0) }])[0]!.data)).toEqual([1 << 20, 1 << 20]);
    expect(unsupported("Shape", [{ dtype: FLOAT, dims: [2, -1], data: new Float64Array(0) }])).toMatch(/shape/);
  });

  /** The summation order every contraction promises: out[i, j] = ((0 + a[i,0]·b[0,j]) + a[i,1]·b[1,j]) + … */
  const reference = (a: Float64Array, b: Float64Array, M: number, K: number, N: number): Float64Array => {
    const c = new Float64Array(M * N);
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += a[i * K + k]! * b[k * N + j]!;
        c[i * N + j] = acc;
      }
    return c;
  };
  it("Einsum and MatMul are bit-identical to the textbook loop (ragged sizes)", () => {
    const r = rng(91);
    for (const [M, K, N] of [[1, 1, 1], [5, 3, 7], [9, 300, 6], [70, 17, 13], [4, 520, 4]] as const) {
      const a = Float64Array.from({ length: M * K }, () => r() - 0.5), b = Float64Array.from({ length: K * N }, () => (r() - 0.5) * 1e3);
      const want = reference(a, b, M, K, N);
      const dbl = (dims: number[], d: Float64Array): Value => ({ dtype: DOUBLE, dims, data: d });
      expect(run("MatMul", [dbl([M, K], a), dbl([K, N], b)])[0]!.data).toEqual(want);
      expect(run("Einsum", [dbl([M, K], a), dbl([K, N], b)], { equation: "ik,kj->ij" }, 12)[0]!.data).toEqual(want);
      // Output transposed: the same numbers moved.
      const t = run("Einsum", [dbl([M, K], a), dbl([K, N], b)], { equation: "ik,kj->ji" }, 12)[0]!.data;
      for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) expect(t[j * M + i]).toBe(want[i * N + j]);
    }
  });
  it("Einsum `ti,othw->oihw` run in slices of o (large B) gives the textbook sums, in order", () => {
    // 1000 output channels of 64·3·3: B and C are moved in slices (linalg.ts SLICE_ELEMENTS), the
    // last one shorter. Every element must still be ((0 + a0·b0) + a1·b1) + … over t.
    const r = rng(93);
    const [T, I, O, H, W] = [64, 64, 1000, 3, 3];
    const a = Float64Array.from({ length: T * I }, () => r() - 0.5), b = Float64Array.from({ length: O * T * H * W }, () => (r() - 0.5) * 1e3);
    const got = run("Einsum", [{ dtype: DOUBLE, dims: [T, I], data: a }, { dtype: DOUBLE, dims: [O, T, H, W], data: b }], { equation: "ti,othw->oihw" }, 12)[0]!;
    expect(got.dims).toEqual([O, I, H, W]);
    for (let o = 0; o < O; o++)
      for (let i = 0; i < I; i++)
        for (let hw = 0; hw < H * W; hw++) {
          let acc = 0;
          for (let t = 0; t < T; t++) acc += a[t * I + i]! * b[(o * T + t) * H * W + hw]!;
          const x = got.data[(o * I + i) * H * W + hw]!;
          if (x !== acc) throw new Error(`out[${o},${i},${hw}] = ${x}, want ${acc}`);
        }
  });
  it("broadcasting ops read their operands in place: the same bits as the expanded loop (random shapes)", () => {
    const r = rng(92);
    const dbl = (dims: number[]): Value => ({
      dtype: DOUBLE, dims, data: Float64Array.from({ length: size(dims) }, (_, i) => (i % 7 === 3 ? -0 : (r() - 0.5) * 1e3)),
    });
    /** Element `flat` of `out` read from `v` broadcast to `out` (numpy rules), by coordinates. */
    const at = (v: Value, out: number[], flat: number): number => {
      let off = 0, stride = 1;
      for (let ax = out.length - 1, rem = flat; ax >= 0; ax--) {
        const c = rem % out[ax]!;
        rem = Math.floor(rem / out[ax]!);
        const i = ax - (out.length - v.dims.length);
        if (i < 0) continue;
        if (v.dims[i] !== 1) off += c * stride;
        stride *= v.dims[i]!;
      }
      return v.data[off]!;
    };
    const same = (got: Float64Array, want: number[]) => {
      expect(got.length).toBe(want.length);
      for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) throw new Error(`element ${i}: ${got[i]} != ${want[i]}`);
    };
    const ops: [string, (x: number, y: number) => number][] = [["Add", (x, y) => x + y], ["Sub", (x, y) => x - y], ["Mul", (x, y) => x * y], ["Div", (x, y) => x / y], ["Max", (x, y) => Math.max(x, y)]];
    for (let t = 0; t < 40; t++) {
      const out = shape(r, 0, 5, 5);
      const a = dbl(broadcastable(r, out)), b = dbl(broadcastable(r, out));
      const rank = Math.max(a.dims.length, b.dims.length);
      const dims = Array.from({ length: rank }, (_, i) => Math.max(...[a, b].map((v) => v.dims[i - (rank - v.dims.length)] ?? 1)));
      for (const [op, f] of ops) same(run(op, [a, b])[0]!.data, Array.from({ length: size(dims) }, (_, i) => f(at(a, dims, i), at(b, dims, i))));
    }
    // float32 results are rounded as they are written, once, and only when final: Sum's running
    // total stays float64 ((1 + 2^-24) + 2^-24 is 1 + 2^-23 in float32, rounding each step gives 1).
    const f = (data: number[]): Value => ({ dtype: FLOAT, dims: [data.length], data: Float64Array.from(data) });
    const h = 2 ** -24;
    same(run("Add", [f([1, 1 / 3]), f([h, 1 / 7])])[0]!.data, [1, Math.fround(1 / 3 + 1 / 7)]);
    same(run("Sum", [f([1]), f([h]), f([h])])[0]!.data, [1 + 2 ** -23]);
    same(run("Einsum", [f([1 / 3, 1]), f([1 / 7, h])], { equation: "i,i->i" }, 12)[0]!.data, [Math.fround(0 + (1 / 3) * (1 / 7)), 1 * h]);
    // Einsum with nothing summed: 0 + a·b per element, operands broadcast by index (OREPA's forms).
    for (const [equation, da, db, dims] of [
      ["oihw,o->oihw", [5, 3, 3, 3], [5], [5, 3, 3, 3]], ["oihw,hw->oihw", [4, 6, 1, 1], [3, 3], [4, 6, 3, 3]],
      ["oi,hw->oihw", [4, 6], [3, 3], [4, 6, 3, 3]], ["oihw,hw->oihw", [2, 3, 1, 3], [1, 3], [2, 3, 1, 3]],
    ] as [string, number[], number[], number[]][]) {
      const a = dbl(da), b = dbl(db);
      const [ta, tb, to] = equation.split(/,|->/) as [string, string, string];
      const flat = (v: Value, term: string, i: number) => {
        const coords: Record<string, number> = {};
        for (let ax = to.length - 1, rem = i; ax >= 0; ax--) (coords[to[ax]!] = rem % dims[ax]!), (rem = Math.floor(rem / dims[ax]!));
        let off = 0;
        for (let k = 0; k < term.length; k++) off = off * v.dims[k]! + (v.dims[k] === 1 ? 0 : coords[term[k]!]!);
        return v.data[off]!;
      };
      same(run("Einsum", [a, b], { equation }, 12)[0]!.data, Array.from({ length: size(dims) }, (_, i) => 0 + flat(a, ta, i) * flat(b, tb, i)));
    }
  });
  it("Einsum beyond the index loop's step budget runs as a matrix product", () => {
    // 700³ ≈ 3.4e8 multiply-adds: more than MAX_WORK, refused before, within the matrix-product budget.
    const n = 700;
    const ones = (d: number[]): Value => ({ dtype: FLOAT, dims: d, data: new Float64Array(d[0]! * d[1]!).fill(0.5) });
    const out = run("Einsum", [ones([n, n]), ones([n, n])], { equation: "ij,jk->ik" }, 12)[0]!;
    expect(out.data[0]).toBe(n * 0.25);
    expect(out.data[n * n - 1]).toBe(n * 0.25);
    expect(unsupported("Einsum", [ones([n, n]), ones([n, n]), ones([n, n])], { equation: "ij,jk,kl->il" }, 12)).toMatch(/steps/);
  });
});

// --- refusals and API ----------------------------------------------------------------------

describe("refusals", () => {
  const x = V(FLOAT, [2, 2], [1, 2, 3, 4]);
  it("is the project's one Refusal, returned (not thrown), never quiet", () => {
    expect(evaluateNode(new Node("n", "Loop", ["i0"], ["o0"]), [x], 13)).toEqual({ refused: "op Loop is not evaluated" });
    // A reason raised deep inside a kernel comes back the same way.
    expect(evaluateNode(new Node("n", "Add", ["i0", "i1"], ["o0"]), [x, V(FLOAT, [3], [1, 2, 3])], 13)).toEqual({ refused: expect.stringMatching(/broadcast/) });
  });
  it("names the reason", () => {
    expect(unsupported("Loop", [x])).toMatch(/op Loop is not evaluated/);
    expect(unsupported("Relu", [x], {}, 13, 1, "com.microsoft")).toMatch(/not evaluated/);
    expect(unsupported("Einsum", [x, x], { equation: "...ij,...jk->...ik" }, 12)).toMatch(/ellipsis/);
    expect(unsupported("Einsum", [x], { equation: "ii->i" }, 12)).toMatch(/diagonal/);
    expect(unsupported("Div", [V(INT64, [1], [4]), V(INT64, [1], [0])])).toMatch(/division by zero/);
    expect(unsupported("Mul", [V(INT64, [1], [2 ** 40]), V(INT64, [1], [2 ** 40])])).toMatch(/2\^53/);
    expect(unsupported("Add", [V(INT32, [1], [2 ** 31 - 1]), V(INT32, [1], [1])])).toMatch(/range of int32/);
    expect(unsupported("Cast", [V(FLOAT, [1], [NaN])], { to: INT64 })).toMatch(/Cast/);
    expect(unsupported("Gather", [x, V(INT64, [1], [2])])).toMatch(/out of range/);
    expect(unsupported("Reshape", [x, V(INT64, [2], [3, -1])])).toMatch(/-1/);
    expect(unsupported("Add", [x, V(FLOAT, [3], [1, 2, 3])])).toMatch(/broadcast/);
    expect(unsupported("Sqrt", [V(INT64, [1], [4])])).toMatch(/int64/);
    expect(unsupported("ScatterND", [x, V(INT64, [2, 1], [0, 0]), V(FLOAT, [2, 2], [1, 2, 3, 4])])).toMatch(/duplicate/);
    expect(unsupported("Dropout", [x, V(FLOAT, [], [0.5]), V(BOOL, [], [1])])).toMatch(/training/);
    expect(unsupported("MaxPool", [V(FLOAT, [1, 1, 4, 4], new Array(16).fill(0))], { kernel_shape: [2, 2], ceil_mode: 1 })).toMatch(/ceil_mode/);
    expect(unsupported("MaxPool", [V(FLOAT, [1, 1, 4, 4], new Array(16).fill(0))], { kernel_shape: [2, 2] }, 13, 2)).toMatch(/Indices/);
  });

  it("INT64_MAX passes through data movement but not arithmetic; beyond 2^53 is refused", () => {
    const big = valueFromTensor(Tensor.fromData("b", INT64, [2], BigInt64Array.of(0x7fffffffffffffffn, 5n)));
    const cat = evaluateNode(new Node("c", "Concat", ["a", "b"], ["y"], attrs({ axis: 0 })), [big, big], 13);
    expect(Array.isArray(cat)).toBe(true);
    const t = tensorFromValue("y", (cat as Value[])[0]!);
    expect(Array.from(t.data() as BigInt64Array, (x) => x)).toEqual([0x7fffffffffffffffn, 5n, 0x7fffffffffffffffn, 5n]);
    expect(unsupported("Add", [big, big])).toMatch(/INT64_MAX/);
    const odd = valueFromTensor(Tensor.fromData("o", INT64, [1], BigInt64Array.of(2n ** 60n + 1n)));
    expect(unsupported("Identity", [odd])).toMatch(/2\^53/);
    expect(Array.isArray(evaluateNode(new Node("s", "Shape", ["o"], ["y"]), [odd], 13))).toBe(true);
  });

  it("refuses outputs beyond MAX_ELEMENTS without allocating", () => {
    expect(MAX_ELEMENTS).toBeGreaterThan(1e6);
    expect(unsupported("ConstantOfShape", [V(INT64, [2], [1e6, 1e6])])).toMatch(/exceed/);
    expect(unsupported("ConstantOfShape", [V(INT64, [3], [2 ** 40, 2 ** 40, 2 ** 40])])).toMatch(/exceed/);
    expect(unsupported("Expand", [x, V(INT64, [4], [1e5, 1e5, 2, 1])])).toMatch(/exceed/);
    expect(unsupported("Tile", [x, V(INT64, [2], [1e5, 1e5])])).toMatch(/exceed/);
    expect(unsupported("Range", [V(INT64, [], [0]), V(INT64, [], [2 ** 50]), V(INT64, [], [1])])).toMatch(/exceed/);
    expect(unsupported("Pad", [x, V(INT64, [4], [0, 1e9, 0, 1e9])])).toMatch(/exceed/);
    expect(unsupported("MatMul", [V(FLOAT, [1, 1], [1]), V(FLOAT, [1, 2 ** 27], [])])).toMatch(/input|exceed/);
    // Zero-size with a huge dim is fine (nothing to allocate).
    const empty = evaluateNode(new Node("c", "ConstantOfShape", ["s"], ["y"]), [V(INT64, [2], [0, 1e12])], 13);
    expect(Array.isArray(empty) && empty[0]!.data.length).toBe(0);
  });
});

describe("API", () => {
  it("overwritable inputs: Add/Sub/Mul/Div/Einsum on floats may write over one of the same shape, nothing else does", () => {
    const v = (dtype: number, dims: number[], data: number[]): Value => ({ dtype, dims, data: Float64Array.from(data) });
    const node = (op: string, a: Record<string, A> = {}) => new Node("n", op, ["a", "b"], ["c"], attrs(a));
    const a = v(FLOAT, [2, 2], [1, 2, 3, 4]), b = v(FLOAT, [2], [10, 20]);
    const [sum] = evaluateNode(node("Add"), [a, b], 13, new Set([a, b])) as Value[];
    expect(sum!.data).toBe(a.data); // b has another shape: only a can take the output
    expect(Array.from(sum!.data)).toEqual([11, 22, 13, 24]);
    const w = v(FLOAT, [2, 3], [1, 2, 3, 4, 5, 6]), s = v(FLOAT, [2], [2, 3]);
    const [scaled] = evaluateNode(new Node("n", "Einsum", ["w", "s"], ["c"], attrs({ equation: "oi,o->oi" })), [w, s], 12, new Set([w])) as Value[];
    expect(scaled!.data).toBe(w.data);
    expect(Array.from(scaled!.data)).toEqual([2, 4, 6, 12, 15, 18]);
    // Not allowed: an input not listed, integers, other ops.
    const c = v(FLOAT, [2], [1, 2]), d = v(FLOAT, [2], [3, 4]);
    expect((evaluateNode(node("Add"), [c, d], 13, new Set([d])) as Value[])[0]!.data).toBe(d.data);
    expect((evaluateNode(node("Add"), [c, d], 13) as Value[])[0]!.data).not.toBe(c.data);
    const i = v(INT64, [2], [1, 2]);
    expect((evaluateNode(node("Add"), [i, i], 13, new Set([i])) as Value[])[0]!.data).not.toBe(i.data);
    const p = v(FLOAT, [2], [2, 3]);
    expect((evaluateNode(node("Pow"), [p, v(FLOAT, [2], [2, 2])], 13, new Set([p])) as Value[])[0]!.data).not.toBe(p.data);
    expect(Array.from(p.data)).toEqual([2, 3]);
  });
  it("recycled buffers: reused only inside withRecycling, by length, zero-filled where a product accumulates", () => {
    const n = 64 * 64;
    const node = new Node("n", "MatMul", ["a", "b"], ["c"], []);
    const ones = (): Value => ({ dtype: DOUBLE, dims: [64, 64], data: new Float64Array(n).fill(1) });
    const dirty = new Float64Array(n).fill(7);
    // Outside withRecycling recycle keeps nothing: the product's output is a fresh array.
    recycle(dirty);
    const fresh = evaluateNode(node, [ones(), ones()], 13) as Value[];
    expect(fresh[0]!.data).not.toBe(dirty);
    withRecycling(() => {
      recycle(dirty);
      recycle(new Float64Array(2 * n).subarray(0, n)); // a view of a larger buffer: never handed out
      const [c] = evaluateNode(node, [ones(), ones()], 13) as Value[];
      // The dead array came back as the output, zero-filled before the sums ran onto it.
      expect(c!.data).toBe(dirty);
      expect(c!.data.every((x) => x === 64)).toBe(true);
      const [d] = evaluateNode(node, [ones(), ones()], 13) as Value[];
      expect(d!.data).not.toBe(dirty);
      expect(d!.data.every((x) => x === 64)).toBe(true);
    });
  });
  it("tensorFromValue round-trips float32, float16, int64, bool (and rounds to the dtype)", () => {
    const cases: Tensor[] = [
      Tensor.fromData("f", FLOAT, [2, 2], Float32Array.of(0.1, -2.5, 1e-8, 3e30)),
      Tensor.fromData("h", FLOAT16, [3], Uint16Array.from([0.1, -65504, 6e-5], floatToHalf)),
      Tensor.fromData("i", INT64, [4], BigInt64Array.of(-(2n ** 53n) + 1n, 0n, 7n, 0x7fffffffffffffffn)),
      Tensor.fromData("b", BOOL, [3], Uint8Array.of(1, 0, 1)),
      Tensor.fromData("u", UINT8, [2], Uint8Array.of(255, 3)),
      Tensor.fromData("d", DOUBLE, [1], Float64Array.of(Math.PI)),
    ];
    for (const t of cases) {
      const v = valueFromTensor(t);
      const back = tensorFromValue(t.name, v);
      expect(back.dtype).toBe(t.dtype);
      expect(back.dims).toEqual(t.dims);
      expect(Array.from(back.data() as ArrayLike<number | bigint>)).toEqual(Array.from(t.data() as ArrayLike<number | bigint>));
    }
    expect(Array.from(tensorFromValue("r", V(FLOAT, [1], [0.1])).data() as Float32Array)).toEqual([Math.fround(0.1)]);
    expect(() => tensorFromValue("x", V(INT32, [1], [0.5]))).toThrow(RangeError);
    expect(() => tensorFromValue("x", V(INT64, [1], [2 ** 60]))).toThrow(RangeError);
  });

  it("float32 results are rounded to float32; optional outputs named '' get placeholders", () => {
    const res = evaluateNode(new Node("d", "Div", ["a", "b"], ["y"]), [V(FLOAT, [], [1]), V(FLOAT, [], [3])], 13) as Value[];
    expect(res[0]!.data[0]).toBe(Math.fround(1 / 3));
    const bn = evaluateNode(
      new Node("bn", "BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "", ""]),
      [V(FLOAT, [1, 1], [2]), V(FLOAT, [1], [1]), V(FLOAT, [1], [0]), V(FLOAT, [1], [0]), V(FLOAT, [1], [1])],
      15,
    ) as Value[];
    expect(bn.length).toBe(3);
  });

  it("lists the evaluated ops", () => {
    for (const op of ["Gather", "Einsum", "Conv", "ScatterND", "Softmax", "Gemm", "Where", "Expand", "Range", "ReduceProd", "Split", "Constant"])
      expect(EVALUATED_OPS.has(op)).toBe(true);
    expect(EVALUATED_OPS.has("Loop")).toBe(false);
  });
});
