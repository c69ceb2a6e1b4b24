// Reductions (ReduceSum/Mean/Max/Min/Prod/L1/L2/SumSquare/LogSum/LogSumExp, ArgMax/ArgMin) and
// Softmax/LogSoftmax, with the opset differences in how axes are given.
import { DataType, dtypeName } from "../ir/dtype.js";
import type { Node } from "../ir/graph.js";
import { attrInts, transposeData } from "./shape-ops.js";
import { alloc, intsOf, isBool, isFloat, isInt, normAxes, normAxis, product, notEvaluated, value, type Value } from "./value.js";

function need(v: Value | undefined, op: string, i = 0): Value {
  if (!v) notEvaluated(`${op} input ${i} is missing`);
  return v;
}

type BlockReducer = (d: Float64Array, from: number, len: number) => number;

function sum(d: Float64Array, from: number, len: number, f: (x: number) => number = (x) => x): number {
  let acc = 0;
  for (let i = from; i < from + len; i++) acc += f(d[i]!);
  return acc;
}

const REDUCERS: Record<string, { fn: BlockReducer; empty?: number; floatOnly?: boolean }> = {
  ReduceSum: { fn: (d, f, n) => sum(d, f, n), empty: 0 },
  ReduceSumSquare: { fn: (d, f, n) => sum(d, f, n, (x) => x * x), empty: 0 },
  ReduceL1: { fn: (d, f, n) => sum(d, f, n, Math.abs), empty: 0 },
  ReduceL2: { fn: (d, f, n) => Math.sqrt(sum(d, f, n, (x) => x * x)), empty: 0, floatOnly: true },
  ReduceMean: { fn: (d, f, n) => sum(d, f, n) / n, floatOnly: true },
  ReduceLogSum: { fn: (d, f, n) => Math.log(sum(d, f, n)), floatOnly: true },
  ReduceLogSumExp: {
    fn: (d, f, n) => {
      let m = -Infinity;
      for (let i = f; i < f + n; i++) m = Math.max(m, d[i]!);
      if (!Number.isFinite(m)) return m === -Infinity ? -Infinity : m;
      return m + Math.log(sum(d, f, n, (x) => Math.exp(x - m)));
    },
    floatOnly: true,
  },
  ReduceMax: {
    fn: (d, f, n) => {
      let m = -Infinity;
      for (let i = f; i < f + n; i++) m = d[i]! > m || d[i] !== d[i] ? d[i]! : m;
      return m;
    },
  },
  ReduceMin: {
    fn: (d, f, n) => {
      let m = Infinity;
      for (let i = f; i < f + n; i++) m = d[i]! < m || d[i] !== d[i] ? d[i]! : m;
      return m;
    },
  },
  ReduceProd: {
    fn: (d, f, n) => {
      let p = 1;
      for (let i = f; i < f + n; i++) p *= d[i]!;
      return p;
    },
    empty: 1,
  },
};

export const REDUCE_OPS = Object.keys(REDUCERS);

/** Moves `axes` last: data laid out as [outer kept elements][block of reduced elements]. */
function reduceLayout(x: Value, axes: number[]): { data: Float64Array; outer: number; block: number } {
  const r = x.dims.length;
  const kept = Array.from({ length: r }, (_, i) => i).filter((i) => !axes.includes(i));
  const perm = [...kept, ...axes];
  const identity = perm.every((p, i) => p === i);
  return {
    data: identity ? x.data : transposeData(x, perm),
    outer: product(kept.map((i) => x.dims[i]!)),
    block: product(axes.map((i) => x.dims[i]!)),
  };
}

export function evalReduce(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const op = node.opType;
  const x = need(ins[0], op);
  const red = REDUCERS[op]!;
  if (isBool(x.dtype)) notEvaluated(`${op} on bool`);
  if (red.floatOnly && !isFloat(x.dtype)) notEvaluated(`${op} on ${dtypeName(x.dtype)}`);
  const since = op === "ReduceSum" ? 13 : 18;
  const r = x.dims.length;
  let axes = opset < since ? attrInts(node, "axes") : ins[1] ? intsOf(ins[1], `${op} axes`) : undefined;
  const keepdims = node.int("keepdims", 1) !== 0;
  if (!axes || axes.length === 0) {
    if (opset >= since && node.int("noop_with_empty_axes", 0) !== 0) return [value(x.dtype, x.dims, Float64Array.from(x.data))];
    axes = Array.from({ length: r }, (_, i) => i);
  }
  const ax = normAxes(axes, r, `${op} axes`).sort((a, b) => a - b);
  const dims = keepdims ? x.dims.map((d, i) => (ax.includes(i) ? 1 : d)) : x.dims.filter((_, i) => !ax.includes(i));
  const out = alloc(x.dtype, dims);
  const { data, outer, block } = reduceLayout(x, ax);
  if (block === 0) {
    if (red.empty === undefined) notEvaluated(`${op} over an empty axis`);
    out.data.fill(red.empty);
    return [out];
  }
  if (isInt(x.dtype)) {
    // Every partial sum (product) must stay exact.
    for (let o = 0; o < outer; o++) {
      if (op === "ReduceProd") {
        let p = 1;
        for (let i = 0; i < block; i++) {
          p *= data[o * block + i]!;
          if (!Number.isSafeInteger(p)) notEvaluated("integer ReduceProd exceeds 2^53");
        }
      } else if (op !== "ReduceMax" && op !== "ReduceMin") {
        const bound = sum(data, o * block, block, op === "ReduceSumSquare" ? (v) => v * v : Math.abs);
        if (!(bound <= Number.MAX_SAFE_INTEGER)) notEvaluated(`integer ${op} exceeds 2^53`);
      }
    }
  }
  for (let o = 0; o < outer; o++) out.data[o] = red.fn(data, o * block, block);
  return [out];
}

export function evalArgMinMax(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const op = node.opType;
  const x = need(ins[0], op);
  if (isBool(x.dtype)) notEvaluated(`${op} on bool`);
  const r = x.dims.length;
  const axis = normAxis(node.int("axis", 0), r, `${op} axis`);
  const keepdims = node.int("keepdims", 1) !== 0;
  const last = opset >= 12 && node.int("select_last_index", 0) !== 0;
  const dims = keepdims ? x.dims.map((d, i) => (i === axis ? 1 : d)) : x.dims.filter((_, i) => i !== axis);
  const out = alloc(DataType.INT64, dims);
  const d = x.dims[axis]!;
  if (d === 0) notEvaluated(`${op} over an empty axis`);
  const outer = product(x.dims, 0, axis);
  const inner = product(x.dims, axis + 1);
  const better = op === "ArgMax" ? (a: number, b: number) => a > b : (a: number, b: number) => a < b;
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      let best = x.data[o * d * inner + i]!;
      let at = 0;
      for (let j = 1; j < d; j++) {
        const v = x.data[(o * d + j) * inner + i]!;
        if (better(v, best) || (last && v === best)) {
          best = v;
          at = j;
        }
      }
      out.data[o * inner + i] = at;
    }
  return [out];
}

export function evalSoftmax(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const op = node.opType;
  const x = need(ins[0], op);
  if (!isFloat(x.dtype)) notEvaluated(`${op} on ${dtypeName(x.dtype)}`);
  const r = x.dims.length;
  const out = alloc(x.dtype, x.dims);
  if (r === 0) notEvaluated(`${op} of a scalar`);
  const log = op === "LogSoftmax";
  let outer: number, d: number, inner: number;
  if (opset < 13) {
    // Coerced to 2-D at `axis`: each row of prod(dims[axis:]) elements is one distribution.
    let axis = node.int("axis", 1);
    if (axis < -r || axis > r) notEvaluated(`${op} axis ${axis} for rank ${r}`);
    if (axis < 0) axis += r;
    outer = product(x.dims, 0, axis);
    d = product(x.dims, axis);
    inner = 1;
  } else {
    const axis = normAxis(node.int("axis", -1), r, `${op} axis`);
    outer = product(x.dims, 0, axis);
    d = x.dims[axis]!;
    inner = product(x.dims, axis + 1);
  }
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      const base = o * d * inner + i;
      let m = -Infinity;
      for (let j = 0; j < d; j++) m = Math.max(m, x.data[base + j * inner]!);
      let s = 0;
      for (let j = 0; j < d; j++) s += Math.exp(x.data[base + j * inner]! - m);
      const ls = Math.log(s);
      for (let j = 0; j < d; j++) {
        const z = x.data[base + j * inner]! - m;
        out.data[base + j * inner] = log ? z - ls : Math.exp(z) / s;
      }
    }
  return [out];
}
