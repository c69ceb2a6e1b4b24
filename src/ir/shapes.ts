// Static shape inference for the ops this tool reasons about. Unknown ops or dims give undefined:
// a pass that needs a shape it cannot get refuses instead of guessing.
import type { Graph, Node } from "./graph.js";
import { toNumber, type ValueInfoProto } from "./proto.js";
import { DataType } from "./dtype.js";

export type Dims = (number | undefined)[];
export interface ShapeInfo {
  dims: Dims | undefined; // undefined: rank unknown
  dtype: number | undefined;
}
export type ShapeMap = Map<string, ShapeInfo>;

/** Product of dims, or undefined when any of them is unknown. */
export function knownProduct(dims: Dims): number | undefined {
  let n = 1;
  for (const d of dims) {
    if (d === undefined) return undefined;
    n *= d;
  }
  return n;
}

export function dimsOf(v: ValueInfoProto): Dims | undefined {
  const shape = v.type?.tensorType?.shape;
  if (!shape) return undefined;
  return (shape.dim ?? []).map((d) => (d.dimValue !== undefined && d.dimValue !== null && Object.prototype.hasOwnProperty.call(d, "dimValue") ? toNumber(d.dimValue) : undefined));
}

const SAME_SHAPE = new Set([
  "BatchNormalization", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish", "Identity", "Dropout",
  "Neg", "Abs", "Exp", "Log", "Sqrt", "Softmax", "LogSoftmax", "Erf", "Gelu", "Mish", "Elu", "Selu", "Softplus", "Softsign",
  "PRelu", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "InstanceNormalization", "LayerNormalization", "LRN", "Not", "ThresholdedRelu", "Celu", "Swish",
  "ScatterND", "ScatterElements",
]);
const BROADCAST = new Set(["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Less", "Greater", "And", "Or", "PRelu"]);

export interface ShapeOptions {
  /** Concrete shapes for graph inputs (e.g. from --shape). */
  overrides?: Record<string, number[]>;
  /** Value for symbolic dims of graph inputs (e.g. 1 for verification); undefined keeps them unknown. */
  symbolicDim?: number;
  /** Reads a constant tensor's values (for Reshape targets and Pad amounts). */
  constant?: (name: string) => number[] | undefined;
}

export function inferShapes(graph: Graph, options: ShapeOptions = {}): ShapeMap {
  const shapes: ShapeMap = new Map();
  const elem = (v: ValueInfoProto) => v.type?.tensorType?.elemType ?? undefined;
  for (const [name, t] of graph.initializers) shapes.set(name, { dims: [...t.dims], dtype: t.dtype });
  for (const v of graph.valueInfo) shapes.set(v.name ?? "", { dims: dimsOf(v), dtype: elem(v) });
  for (const v of graph.realInputs()) {
    const name = v.name ?? "";
    const override = options.overrides?.[name];
    let dims = override ? [...override] : dimsOf(v);
    if (dims && !override && options.symbolicDim !== undefined) dims = dims.map((d) => d ?? options.symbolicDim);
    shapes.set(name, { dims, dtype: elem(v) });
  }
  // Partially known values of small integer tensors (shape plumbing: Shape → Gather → Div →
  // Concat → Reshape), so a Reshape whose target is computed from a dynamic shape still gets the
  // dims that are static.
  const values: ValueMap = new Map();
  for (const node of graph.nodes) {
    try {
      inferNode(node, shapes, options, values);
      inferValue(node, shapes, options, values);
    } catch {
      // A node we cannot reason about leaves its outputs unknown.
    }
  }
  return shapes;
}

function spatialOut(inSize: number | undefined, k: number, s: number, d: number, p0: number, p1: number, ceil = false): number | undefined {
  if (inSize === undefined) return undefined;
  const span = (k - 1) * d + 1;
  const v = (inSize + p0 + p1 - span) / s;
  return (ceil ? Math.ceil(v) : Math.floor(v)) + 1;
}

function broadcast(a: Dims, b: Dims): Dims {
  const n = Math.max(a.length, b.length);
  const out: Dims = [];
  for (let i = 0; i < n; i++) {
    // An unknown dim stays unknown unless the other side is known and not 1 (then it must match).
    const x = a[a.length - n + i], y = b[b.length - n + i];
    if (a.length - n + i < 0) out.push(y);
    else if (b.length - n + i < 0) out.push(x);
    else if (x === 1) out.push(y);
    else if (y === 1) out.push(x);
    else out.push(x ?? y);
  }
  return out;
}

/** Resolved pads [top, left, bottom, right] of a 2-D Conv/Pool, or undefined (auto_pad needing unknown sizes). */
export function resolvePads(node: Node, input: Dims | undefined, kernel: number[], strides: number[], dilations: number[]): number[] | undefined {
  const autoPad = node.string("auto_pad", "NOTSET");
  if (autoPad === "NOTSET") return node.ints("pads", new Array(kernel.length * 2).fill(0));
  if (autoPad === "VALID") return new Array(kernel.length * 2).fill(0);
  const pads = new Array(kernel.length * 2).fill(0);
  for (let i = 0; i < kernel.length; i++) {
    const size = input?.[2 + i];
    if (size === undefined) return undefined;
    const out = Math.ceil(size / strides[i]!);
    const total = Math.max(0, (out - 1) * strides[i]! + (kernel[i]! - 1) * dilations[i]! + 1 - size);
    const small = Math.floor(total / 2), big = total - small;
    pads[i] = autoPad === "SAME_UPPER" ? small : big;
    pads[i + kernel.length] = autoPad === "SAME_UPPER" ? big : small;
  }
  return pads;
}

/** Entries of small 1-D/scalar integer tensors, undefined where not known statically. */
type ValueMap = Map<string, (number | undefined)[]>;

const MAX_VALUE_LENGTH = 64;

function valueOf(name: string | undefined, options: ShapeOptions, values: ValueMap): (number | undefined)[] | undefined {
  if (!name) return undefined;
  return values.get(name) ?? options.constant?.(name);
}

function inferValue(node: Node, shapes: ShapeMap, options: ShapeOptions, values: ValueMap): void {
  if (node.domain && node.domain !== "ai.onnx") return;
  const out = node.outputs[0];
  if (!out) return;
  const val = (i: number) => valueOf(node.inputs[i], options, values);
  // Values are flat lists: kept only for scalars and 1-D tensors (a 2-D value sliced or
  // concatenated as if flat would be wrong).
  const rank = shapes.get(out)?.dims?.length;
  const set = (v: (number | undefined)[] | undefined) => {
    if (v && v.length <= MAX_VALUE_LENGTH && rank !== undefined && rank <= 1) values.set(out, v);
  };
  switch (node.opType) {
    case "Shape": {
      const dims = shapes.get(node.inputs[0] ?? "")?.dims;
      if (!dims) return;
      const r = dims.length, clamp = (a: number) => Math.min(r, Math.max(0, a < 0 ? a + r : a));
      return set(dims.slice(clamp(node.int("start", 0)), clamp(node.int("end", r))));
    }
    case "Identity": case "Squeeze": case "Unsqueeze":
      return set(val(0));
    case "Cast": {
      // Followed only where the value survives exactly as computed here: int64, int32 within
      // range, float32 (rounded), double. Narrower types wrap or round: not followed.
      const v = val(0), to = node.int("to", 0);
      const convert = (x: number): number | undefined => {
        if (to === DataType.INT64) return Math.trunc(x);
        if (to === DataType.INT32) return Math.abs(x) < 2 ** 31 ? Math.trunc(x) : undefined;
        if (to === DataType.FLOAT) return Math.fround(x);
        if (to === DataType.DOUBLE) return x;
        return undefined;
      };
      return set(v?.map((x) => (x === undefined ? undefined : convert(x))));
    }
    case "Gather": {
      const v = val(0), idx = valueOf(node.inputs[1], options, new Map());
      if (!v || !idx || node.int("axis", 0) !== 0 || (shapes.get(node.inputs[0] ?? "")?.dims?.length ?? 1) !== 1) return;
      return set(idx.map((i) => (i === undefined ? undefined : v[i < 0 ? i + v.length : i])));
    }
    case "Concat": {
      if (node.int("axis", 0) !== 0 && node.int("axis", 0) !== -1) return;
      const parts = node.inputs.map((_, i) => val(i));
      if (parts.some((p) => !p)) return;
      return set(parts.flatMap((p) => p!));
    }
    case "Add": case "Sub": case "Mul": case "Div": {
      const a = val(0), b = val(1);
      if (!a || !b || (a.length !== b.length && a.length !== 1 && b.length !== 1)) return;
      // Integer Div truncates; when the dtype is unknown only an exact quotient is known.
      const dtype = shapes.get(out)?.dtype;
      const integral = dtype === DataType.INT64 || dtype === DataType.INT32;
      const floating = dtype === DataType.FLOAT || dtype === DataType.DOUBLE;
      const n = Math.max(a.length, b.length);
      const round = (v: number) => (dtype === DataType.FLOAT ? Math.fround(v) : v);
      const f = (x: number, y: number) =>
        node.opType === "Add" ? round(x + y) : node.opType === "Sub" ? round(x - y) : node.opType === "Mul" ? round(x * y)
          : integral ? Math.trunc(x / y) : floating || Number.isInteger(x / y) ? round(x / y) : undefined;
      return set(Array.from({ length: n }, (_, i) => {
        const x = a[a.length === 1 ? 0 : i], y = b[b.length === 1 ? 0 : i];
        return x === undefined || y === undefined || (node.opType === "Div" && y === 0) ? undefined : f(x, y);
      }));
    }
    case "Slice": {
      const v = val(0);
      // Opset < 10 carries starts/ends/axes as attributes.
      const arg = (i: number, attrName: string, fallback?: number[]) =>
        node.inputs.length > 1 ? (node.inputs[i] ? valueOf(node.inputs[i], options, new Map()) : fallback) : node.ints(attrName, fallback as number[]);
      const starts = arg(1, "starts"), ends = arg(2, "ends"), axes = arg(3, "axes", [0]), steps = arg(4, "steps", [1]);
      if (!v || !starts || !ends || !axes || !steps || starts.length !== 1 || axes[0] !== 0 && axes[0] !== -1 || steps[0] !== 1) return;
      const n = v.length, clamp = (a: number) => Math.min(n, Math.max(0, a < 0 ? a + n : a));
      if (starts[0] === undefined || ends[0] === undefined) return;
      return set(v.slice(clamp(starts[0]), clamp(ends[0])));
    }
    default:
      return;
  }
}

function inferNode(node: Node, shapes: ShapeMap, options: ShapeOptions, values: ValueMap): void {
  const inp = (i: number) => shapes.get(node.inputs[i] ?? "");
  const x = inp(0);
  const set = (dims: Dims | undefined, dtype = x?.dtype, i = 0) => {
    if (node.outputs[i]) shapes.set(node.outputs[i]!, { dims, dtype });
  };
  const op = node.opType;
  if (node.domain && node.domain !== "ai.onnx") return;
  if (SAME_SHAPE.has(op)) return set(x?.dims && [...x.dims]);
  if (BROADCAST.has(op)) {
    let dims: Dims | undefined = x?.dims;
    for (let i = 1; i < node.inputs.length && dims; i++) {
      const other = inp(i)?.dims;
      dims = other ? broadcast(dims, other) : undefined;
    }
    const dtype = ["Equal", "Less", "Greater", "And", "Or"].includes(op) ? DataType.BOOL : op === "Where" ? inp(1)?.dtype : x?.dtype;
    return set(dims, dtype);
  }
  const xd = x?.dims;
  switch (op) {
    case "Conv": case "ConvTranspose": {
      const w = inp(1)?.dims;
      if (!xd || !w || op === "ConvTranspose") return set(undefined);
      const k = node.ints("kernel_shape") ?? (w.slice(2) as number[]);
      const nsp = k.length;
      const s = node.ints("strides", new Array(nsp).fill(1)), d = node.ints("dilations", new Array(nsp).fill(1));
      const p = resolvePads(node, xd, k, s, d);
      const spatial = k.map((kk, i) => (p ? spatialOut(xd[2 + i], kk, s[i]!, d[i]!, p[i]!, p[i + nsp]!) : undefined));
      return set([xd[0], w[0], ...spatial]);
    }
    case "MaxPool": case "AveragePool": case "LpPool": {
      if (!xd) return set(undefined);
      const k = node.ints("kernel_shape", []);
      const nsp = k.length;
      const s = node.ints("strides", new Array(nsp).fill(1)), d = node.ints("dilations", new Array(nsp).fill(1));
      const p = resolvePads(node, xd, k, s, d);
      const ceil = node.int("ceil_mode", 0) === 1;
      return set([xd[0], xd[1], ...k.map((kk, i) => (p ? spatialOut(xd[2 + i], kk, s[i]!, d[i]!, p[i]!, p[i + nsp]!, ceil) : undefined))]);
    }
    case "GlobalAveragePool": case "GlobalMaxPool":
      return set(xd && [xd[0], xd[1], ...xd.slice(2).map(() => 1)]);
    case "Pad": {
      const pads = node.inputs[1] ? options.constant?.(node.inputs[1]) : node.ints("pads");
      if (!xd || !pads) return set(undefined);
      const r = xd.length;
      return set(xd.map((v, i) => (v === undefined ? undefined : v + pads[i]! + pads[i + r]!)));
    }
    case "Concat": {
      const axisRaw = node.int("axis", 0);
      const all = node.inputs.map((_, i) => inp(i)?.dims);
      if (all.some((a) => !a)) return set(undefined);
      const r = all[0]!.length, axis = axisRaw < 0 ? axisRaw + r : axisRaw;
      const dims = [...all[0]!];
      dims[axis] = all.reduce<number | undefined>((acc, a) => (acc === undefined || a![axis] === undefined ? undefined : acc + a![axis]!), 0);
      return set(dims);
    }
    case "Flatten": {
      if (!xd) return set(undefined);
      const a = node.int("axis", 1), axis = a < 0 ? a + xd.length : a;
      return set([knownProduct(xd.slice(0, axis)), knownProduct(xd.slice(axis))]);
    }
    case "Gemm": {
      const a = xd, b = inp(1)?.dims;
      if (!a || !b) return set(undefined);
      const m = node.int("transA", 0) ? a[1] : a[0];
      const n = node.int("transB", 0) ? b[0] : b[1];
      return set([m, n]);
    }
    case "MatMul": {
      const a = xd, b = inp(1)?.dims;
      if (!a || !b || a.length < 2 || b.length < 2) return set(undefined);
      const batch = broadcast(a.slice(0, -2), b.slice(0, -2));
      return set([...batch, a[a.length - 2], b[b.length - 1]]);
    }
    case "Reshape": {
      const target = valueOf(node.inputs[1], options, values);
      if (!target) return set(undefined);
      const allowZero = node.int("allowzero", 0) === 1;
      const dims: Dims = target.map((v, i) => (v === 0 && !allowZero ? xd?.[i] : v));
      const known = xd && xd.every((v) => v !== undefined) ? (xd as number[]).reduce((p, v) => p * v, 1) : undefined;
      const neg = dims.indexOf(-1);
      if (neg >= 0) {
        const rest = dims.reduce<number | undefined>((p, v, i) => (i === neg || p === undefined || v === undefined ? (i === neg ? p : undefined) : p * v), 1);
        dims[neg] = known !== undefined && rest ? known / rest : undefined;
      }
      return set(dims);
    }
    case "Transpose": {
      if (!xd) return set(undefined);
      const perm = node.ints("perm", xd.map((_, i) => xd.length - 1 - i));
      return set(perm.map((p) => xd[p]));
    }
    case "Squeeze": case "Unsqueeze": {
      const axes = node.ints("axes") ?? (node.inputs[1] ? options.constant?.(node.inputs[1]) : undefined);
      if (!xd) return set(undefined);
      if (op === "Squeeze") {
        if (!axes) return set(xd.some((v) => v === undefined) ? undefined : xd.filter((v) => v !== 1));
        const norm = axes.map((a) => (a < 0 ? a + xd.length : a));
        return set(xd.filter((_, i) => !norm.includes(i)));
      }
      if (!axes) return set(undefined);
      const r = xd.length + axes.length;
      const norm = axes.map((a) => (a < 0 ? a + r : a));
      const out: Dims = [];
      let j = 0;
      for (let i = 0; i < r; i++) out.push(norm.includes(i) ? 1 : xd[j++]);
      return set(out);
    }
    case "ReduceMean": case "ReduceSum": case "ReduceMax": {
      if (!xd) return set(undefined);
      const axes = node.ints("axes") ?? (node.inputs[1] ? options.constant?.(node.inputs[1]) : undefined) ?? xd.map((_, i) => i);
      const keep = node.int("keepdims", 1) === 1;
      const norm = axes.map((a) => (a < 0 ? a + xd.length : a));
      return set(keep ? xd.map((v, i) => (norm.includes(i) ? 1 : v)) : xd.filter((_, i) => !norm.includes(i)));
    }
    case "Shape":
      return set(xd ? [xd.length] : undefined, DataType.INT64);
    case "Slice": {
      if (!xd) return set(undefined);
      // Opset < 10 carries starts/ends/axes as attributes.
      const arg = (i: number, attrName: string) =>
        node.inputs.length > 1 ? (node.inputs[i] ? valueOf(node.inputs[i], options, values) : undefined) : node.ints(attrName);
      const starts = arg(1, "starts"), ends = arg(2, "ends");
      // Defaults only when the input is absent: a present input whose value is unknown leaves every axis unknown.
      const axesGiven = node.inputs.length > 1 ? !!node.inputs[3] : node.attr("axes") !== undefined;
      const stepsGiven = node.inputs.length > 1 && !!node.inputs[4];
      const axes = axesGiven ? arg(3, "axes") : starts?.map((_, i) => i);
      const steps = stepsGiven ? valueOf(node.inputs[4], options, values) : starts?.map(() => 1);
      if (!starts || !ends || !axes || !steps || starts.length !== ends.length || axes.length !== starts.length || steps.length !== starts.length)
        return set(xd.map(() => undefined));
      const out: Dims = [...xd];
      axes.forEach((a, k) => {
        const axis = a === undefined ? undefined : a < 0 ? a + xd.length : a;
        if (axis === undefined) return out.fill(undefined);
        const d = xd[axis], st = starts[k], en = ends[k], step = steps[k];
        if (d === undefined || st === undefined || en === undefined || step === undefined || step === 0) return (out[axis] = undefined);
        const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v < 0 ? v + d : v));
        // ONNX: start clamps to [0, d] (step > 0) or [0, d−1] (step < 0); end to [0, d] or [−1, d−1].
        const b = step > 0 ? clamp(st, 0, d) : clamp(st, 0, d - 1), e = step > 0 ? clamp(en, 0, d) : clamp(en, -1, d - 1);
        out[axis] = Math.max(0, Math.ceil((e - b) / step));
      });
      return set(out);
    }
    case "Gather": {
      const idx = inp(1)?.dims;
      if (!xd || !idx) return set(undefined);
      const a = node.int("axis", 0), axis = a < 0 ? a + xd.length : a;
      return set([...xd.slice(0, axis), ...idx, ...xd.slice(axis + 1)]);
    }
    case "Cast":
      return set(xd && [...xd], node.int("to", 0));
    case "Constant": {
      const t = node.tensor("value");
      return set(t ? [...t.dims] : undefined, t?.dtype);
    }
    default:
      return;
  }
}
