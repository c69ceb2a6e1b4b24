// Elementwise ops: unary math, broadcasting binary arithmetic, comparisons, logic, Where, Clip,
// and the variadic Min/Max/Sum/Mean.
import { DataType, dtypeName } from "../ir/dtype.js";
import type { Node } from "../ir/graph.js";
import {
  broadcastDims, broadcastStrides, expandData, isBool, isFloat, isInt, newData, notEvaluated, sizeOf, stridedBinary, takeOverwritable, type Combine, type Value,
} from "./value.js";

export type Unary = (x: number) => number;

function need(v: Value | undefined, op: string, i = 0): Value {
  if (!v) notEvaluated(`${op} input ${i} is missing`);
  return v;
}

export function mapUnary(x: Value, f: Unary, dtype = x.dtype): Value {
  const out = newData(x.data.length, false);
  const d = x.data;
  for (let i = 0; i < d.length; i++) out[i] = f(d[i]!);
  return { dtype, dims: [...x.dims], data: out };
}

/**
 * a op b with numpy broadcasting; both operands are read in place (value.ts stridedBinary).
 * `roundToFloat32`: the result is final and float32 — rounded as it is written (not for a partial
 * result another step continues from, such as Sum's running total).
 */
export function mapBinary(a: Value, b: Value, dtype: number, f: Combine, roundToFloat32 = false): Value {
  const dims = broadcastDims([a.dims, b.dims]);
  // In place over an operand read for the last time (evaluateNode's overwritable), else fresh.
  const out = takeOverwritable(a, dims) ?? takeOverwritable(b, dims) ?? newData(sizeOf(dims), false);
  stridedBinary(out, dims, a.data, broadcastStrides(a.dims, dims), b.data, broadcastStrides(b.dims, dims), f, roundToFloat32 && dtype === DataType.FLOAT);
  return { dtype, dims, data: out };
}

// --- unary ---------------------------------------------------------------------------------

function roundHalfEven(x: number): number {
  if (!Number.isFinite(x)) return x;
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r;
}

function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

function softplus(x: number): number {
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}

/** Unary ops valid on every numeric type. */
const UNARY_ANY: Record<string, (node: Node) => Unary> = {
  Neg: () => (x) => -x,
  Abs: () => Math.abs,
  Relu: () => (x) => (x > 0 ? x : 0),
  Sign: () => (x) => (x > 0 ? 1 : x < 0 ? -1 : x === 0 ? 0 : NaN),
};

/** Unary ops defined on float types only. */
const UNARY_FLOAT: Record<string, (node: Node) => Unary> = {
  Sqrt: () => Math.sqrt,
  Reciprocal: () => (x) => 1 / x,
  Exp: () => Math.exp,
  Log: () => Math.log,
  Floor: () => Math.floor,
  Ceil: () => Math.ceil,
  Round: () => roundHalfEven,
  Sigmoid: () => sigmoid,
  Tanh: () => Math.tanh,
  Sin: () => Math.sin,
  Cos: () => Math.cos,
  Softplus: () => softplus,
  Softsign: () => (x) => x / (1 + Math.abs(x)),
  LeakyRelu: (n) => {
    const a = n.float("alpha", 0.01);
    return (x) => (x >= 0 ? x : a * x);
  },
  Elu: (n) => {
    const a = n.float("alpha", 1);
    return (x) => (x >= 0 ? x : a * Math.expm1(x));
  },
  Selu: (n) => {
    const a = n.float("alpha", 1.67326319217681884765625);
    const g = n.float("gamma", 1.05070102214813232421875);
    return (x) => (x > 0 ? g * x : g * a * Math.expm1(x));
  },
  HardSigmoid: (n) => {
    const a = n.float("alpha", 0.2);
    const b = n.float("beta", 0.5);
    return (x) => Math.max(0, Math.min(1, a * x + b));
  },
  HardSwish: () => (x) => x * Math.max(0, Math.min(1, x / 6 + 0.5)),
};

export const UNARY_OPS = [...Object.keys(UNARY_ANY), ...Object.keys(UNARY_FLOAT)];

export function evalUnary(node: Node, ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], node.opType);
  const anyType = UNARY_ANY[node.opType];
  if (anyType) {
    if (isBool(x.dtype)) notEvaluated(`${node.opType} on bool`);
    return [mapUnary(x, anyType(node))];
  }
  if (!isFloat(x.dtype)) notEvaluated(`${node.opType} on ${dtypeName(x.dtype)} is not defined`);
  return [mapUnary(x, UNARY_FLOAT[node.opType]!(node))];
}

// --- binary arithmetic -------------------------------------------------------------------

function intDiv(x: number, y: number): number {
  if (y === 0) notEvaluated("integer division by zero");
  if (Math.abs(x) < 2 ** 31) return Math.trunc(x / y);
  return Number(BigInt(x) / BigInt(y));
}

function intPow(base: number, exp: number): number {
  if (!Number.isInteger(exp)) notEvaluated(`integer Pow with non-integer exponent ${exp}`);
  if (exp < 0) {
    if (base === 1) return 1;
    if (base === -1) return exp % 2 === 0 ? 1 : -1;
    notEvaluated(`integer Pow with negative exponent ${exp}`);
  }
  let result = 1;
  let b = base;
  let e = exp;
  while (e > 0) {
    if (e % 2 === 1) {
      result *= b;
      if (!Number.isSafeInteger(result)) notEvaluated("integer Pow exceeds 2^53");
    }
    e = Math.floor(e / 2);
    if (e > 0) {
      b *= b;
      if (!Number.isSafeInteger(b) && result !== 0) notEvaluated("integer Pow exceeds 2^53");
    }
  }
  return result;
}

export function evalBinary(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const op = node.opType;
  const a = need(ins[0], op, 0);
  const b = need(ins[1], op, 1);
  if (opset < 7 && node.int("broadcast", 0) !== 0 && node.attr("axis")) notEvaluated(`${op} with legacy broadcast axis (opset ${opset})`);
  const t = a.dtype;
  if (isBool(t)) notEvaluated(`${op} on bool`);
  if (op !== "Pow" && b.dtype !== t) notEvaluated(`${op} mixes ${dtypeName(t)} and ${dtypeName(b.dtype)}`);
  const int = isInt(t);
  switch (op) {
    case "Add": return [mapBinary(a, b, t, "add", true)];
    case "Sub": return [mapBinary(a, b, t, "sub", true)];
    case "Mul": return [mapBinary(a, b, t, "mul", true)];
    case "Div": return [mapBinary(a, b, t, int ? intDiv : "div", true)];
    case "Pow":
      if (isBool(b.dtype)) notEvaluated("Pow with bool exponent");
      return [mapBinary(a, b, t, int ? intPow : Math.pow)];
    case "Mod": {
      const fmod = node.int("fmod", 0);
      if (!int) {
        if (fmod !== 1) notEvaluated("float Mod requires fmod=1");
        return [mapBinary(a, b, t, (x, y) => x % y)];
      }
      return [
        mapBinary(a, b, t, (x, y) => {
          if (y === 0) notEvaluated("integer modulo by zero");
          const r = x % y; // exact (fmod)
          if (fmod === 1 || r === 0 || r < 0 === y < 0) return r;
          return r + y;
        }),
      ];
    }
    case "PRelu":
      return [mapBinary(a, b, t, (x, s) => (x < 0 ? s * x : x))];
    default:
      notEvaluated(`op ${op} is not evaluated`);
  }
}

export const BINARY_OPS = ["Add", "Sub", "Mul", "Div", "Pow", "Mod", "PRelu"];

// --- comparisons and logic -----------------------------------------------------------------

const COMPARE: Record<string, (x: number, y: number) => number> = {
  Equal: (x, y) => (x === y ? 1 : 0),
  Less: (x, y) => (x < y ? 1 : 0),
  LessOrEqual: (x, y) => (x <= y ? 1 : 0),
  Greater: (x, y) => (x > y ? 1 : 0),
  GreaterOrEqual: (x, y) => (x >= y ? 1 : 0),
};

const LOGIC: Record<string, (x: number, y: number) => number> = {
  And: (x, y) => (x && y ? 1 : 0),
  Or: (x, y) => (x || y ? 1 : 0),
  Xor: (x, y) => (!x !== !y ? 1 : 0),
};

export const COMPARE_OPS = [...Object.keys(COMPARE), ...Object.keys(LOGIC), "Not"];

export function evalCompare(node: Node, ins: (Value | undefined)[]): Value[] {
  const op = node.opType;
  if (op === "Not") {
    const x = need(ins[0], op);
    if (!isBool(x.dtype)) notEvaluated(`Not on ${dtypeName(x.dtype)}`);
    return [mapUnary(x, (v) => (v ? 0 : 1))];
  }
  const a = need(ins[0], op, 0);
  const b = need(ins[1], op, 1);
  if (a.dtype !== b.dtype) notEvaluated(`${op} mixes ${dtypeName(a.dtype)} and ${dtypeName(b.dtype)}`);
  const logic = LOGIC[op];
  if (logic) {
    if (!isBool(a.dtype)) notEvaluated(`${op} on ${dtypeName(a.dtype)}`);
    return [mapBinary(a, b, DataType.BOOL, logic)];
  }
  return [mapBinary(a, b, DataType.BOOL, COMPARE[op]!)];
}

export function evalWhere(ins: (Value | undefined)[]): Value[] {
  const c = need(ins[0], "Where", 0);
  const x = need(ins[1], "Where", 1);
  const y = need(ins[2], "Where", 2);
  if (!isBool(c.dtype)) notEvaluated(`Where condition is ${dtypeName(c.dtype)}, not bool`);
  if (x.dtype !== y.dtype) notEvaluated(`Where mixes ${dtypeName(x.dtype)} and ${dtypeName(y.dtype)}`);
  const dims = broadcastDims([c.dims, x.dims, y.dims]);
  const n = sizeOf(dims);
  const out = new Float64Array(n);
  if (n > 0) {
    const dc = expandData(c, dims);
    const dx = expandData(x, dims);
    const dy = expandData(y, dims);
    for (let i = 0; i < n; i++) out[i] = dc[i] ? dx[i]! : dy[i]!;
  }
  return [{ dtype: x.dtype, dims, data: out }];
}

// --- variadic --------------------------------------------------------------------------------

function nanMin(x: number, y: number): number {
  return x !== x || y !== y ? NaN : Math.min(x, y);
}
function nanMax(x: number, y: number): number {
  return x !== x || y !== y ? NaN : Math.max(x, y);
}

export function evalVariadic(node: Node, ins: (Value | undefined)[]): Value[] {
  const op = node.opType;
  const vs = ins.filter((v): v is Value => v !== undefined);
  if (vs.length === 0) notEvaluated(`${op} with no inputs`);
  const t = vs[0]!.dtype;
  if (vs.some((v) => v.dtype !== t)) notEvaluated(`${op} mixes dtypes`);
  if (isBool(t)) notEvaluated(`${op} on bool`);
  if (op === "Mean" && !isFloat(t)) notEvaluated(`Mean on ${dtypeName(t)}`);
  const f: Combine = op === "Min" ? nanMin : op === "Max" ? nanMax : "add";
  let acc: Value = { dtype: t, dims: [...vs[0]!.dims], data: Float64Array.from(vs[0]!.data) };
  for (let i = 1; i < vs.length; i++) acc = mapBinary(acc, vs[i]!, t, f);
  if (op === "Mean") {
    const k = vs.length;
    for (let i = 0; i < acc.data.length; i++) acc.data[i] = acc.data[i]! / k;
  }
  return [acc];
}

export const VARIADIC_OPS = ["Min", "Max", "Sum", "Mean"];

export function evalClip(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const x = need(ins[0], "Clip");
  if (isBool(x.dtype)) notEvaluated("Clip on bool");
  let lo = -Infinity;
  let hi = Infinity;
  if (opset < 11) {
    if (node.attr("min")) lo = node.float("min", -Infinity);
    if (node.attr("max")) hi = node.float("max", Infinity);
  } else {
    const bound = (v: Value | undefined, what: string, dflt: number) => {
      if (!v) return dflt;
      if (v.data.length !== 1) notEvaluated(`Clip ${what} must be a scalar`);
      if (v.dtype !== x.dtype) notEvaluated(`Clip ${what} dtype differs from input`);
      return v.data[0]!;
    };
    lo = bound(ins[1], "min", -Infinity);
    hi = bound(ins[2], "max", Infinity);
  }
  return [mapUnary(x, (v) => (v !== v ? v : Math.min(Math.max(v, lo), hi)))];
}
