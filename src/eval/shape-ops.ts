// Data-movement and shape ops: the plumbing exporters emit around shapes (Shape/Gather/Concat/
// Unsqueeze/Slice/Range/Expand/...), plus Cast, Constant and the scatter/gather family.
import { DataType, dtypeName } from "../ir/dtype.js";
import type { Node } from "../ir/graph.js";
import {
  INT64_MAX_VALUE, alloc, axisGather, broadcastDims, expandData, intsOf, isBool, isEvaluableDtype, isFloat, isInt, newData,
  normAxes, normAxis, product, notEvaluated, roundFloat, sameDims, scalar, scalarOf, sizeOf, stridesOf, table, value, valueFromTensor,
  type Value,
} from "./value.js";

function need(v: Value | undefined, op: string, i = 0): Value {
  if (!v) notEvaluated(`${op} input ${i} is missing`);
  return v;
}

function copy(v: Value, dims: readonly number[] = v.dims): Value {
  const data = newData(v.data.length, false);
  data.set(v.data);
  return value(v.dtype, dims, data);
}

/** Integer attribute list, INT64_MAX/MIN kept as ±2^63 (Node.ints refuses values beyond 2^53). */
export function attrInts(node: Node, name: string): number[] | undefined {
  const a = node.attr(name);
  if (!a) return undefined;
  return (a.ints ?? []).map((v) => {
    if (typeof v === "number") return v;
    const b = BigInt(String(v));
    if (b === 0x7fffffffffffffffn) return INT64_MAX_VALUE;
    if (b === -0x8000000000000000n) return -INT64_MAX_VALUE;
    const n = Number(b);
    if (!Number.isSafeInteger(n)) notEvaluated(`attribute ${name} holds ${b}, beyond 2^53`);
    return n;
  });
}

/** A list given as an attribute before `sinceOpset` and as input `index` from then on. */
function attrOrInput(node: Node, ins: (Value | undefined)[], index: number, name: string, sinceOpset: number, opset: number): number[] | undefined {
  if (opset < sinceOpset) return attrInts(node, name);
  const v = ins[index];
  return v ? intsOf(v, `${node.opType} ${name}`) : undefined;
}

// --- Identity / Cast / Constant ------------------------------------------------------------

export function evalIdentity(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const x = need(ins[0], node.opType);
  const out = [copy(x)];
  if (node.opType === "Dropout") {
    if (opset >= 12 && ins[2] && scalarOf(ins[2], "Dropout training_mode") !== 0) notEvaluated("Dropout in training mode");
    if (node.outputs.length > 1) {
      const mask = alloc(opset >= 10 ? DataType.BOOL : x.dtype, x.dims);
      mask.data.fill(1);
      out.push(mask);
    }
  }
  return out;
}

export function castData(x: Value, to: number): Value {
  if (!isEvaluableDtype(to)) notEvaluated(`Cast to ${dtypeName(to)} is not evaluated`);
  const out = new Float64Array(x.data.length);
  const d = x.data;
  if (isFloat(to)) {
    for (let i = 0; i < d.length; i++) out[i] = roundFloat(to, d[i]!);
  } else if (isBool(to)) {
    for (let i = 0; i < d.length; i++) out[i] = d[i] !== 0 ? 1 : 0;
  } else if (isFloat(x.dtype)) {
    // float -> int: truncation toward zero; NaN or out of range is undefined in ONNX: refused.
    for (let i = 0; i < d.length; i++) {
      const v = Math.trunc(d[i]!);
      if (!Number.isSafeInteger(v)) notEvaluated(`Cast of ${d[i]} to ${dtypeName(to)} is undefined or inexact`);
      out[i] = v;
    }
  } else {
    out.set(d); // int/bool -> int: finalize checks the range
  }
  return value(to, x.dims, out);
}

export function evalCast(node: Node, ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], node.opType);
  let to: number;
  if (node.opType === "CastLike") to = need(ins[1], "CastLike", 1).dtype;
  else {
    const t = node.int("to");
    if (t === undefined) notEvaluated("Cast without 'to'");
    to = t;
  }
  return [castData(x, to)];
}

export function evalConstant(node: Node): Value[] {
  const t = node.tensor("value");
  if (t) return [valueFromTensor(t)];
  const f = node.attr("value_float");
  if (f) return [scalar(DataType.FLOAT, Math.fround(Number(f.f ?? 0)))];
  const fs = node.attr("value_floats");
  if (fs) {
    const data = Float64Array.from(fs.floats ?? [], (v) => Math.fround(Number(v)));
    return [value(DataType.FLOAT, [data.length], data)];
  }
  if (node.attr("value_int")) return [scalar(DataType.INT64, node.int("value_int", 0))];
  const is = attrInts(node, "value_ints");
  if (is) return [value(DataType.INT64, [is.length], Float64Array.from(is))];
  notEvaluated("Constant without a numeric value (sparse or string)");
}

export function evalConstantOfShape(node: Node, ins: (Value | undefined)[]): Value[] {
  const shape = intsOf(need(ins[0], "ConstantOfShape"), "ConstantOfShape shape");
  sizeOf(shape); // refuse before anything is allocated
  const t = node.tensor("value");
  let dtype: number = DataType.FLOAT;
  let fill = 0;
  if (t) {
    if (t.size !== 1) notEvaluated("ConstantOfShape value must hold one element");
    const v = valueFromTensor(t);
    dtype = v.dtype;
    fill = v.data[0]!;
  }
  const out = alloc(dtype, shape);
  out.data.fill(fill);
  return [out];
}

// --- Shape / Size / Range ------------------------------------------------------------------

export function evalShape(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const x = need(ins[0], node.opType);
  if (node.opType === "Size") return [scalar(DataType.INT64, product(x.dims))];
  const r = x.dims.length;
  let start = 0;
  let end = r;
  if (opset >= 15) {
    const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + r : v, 0), r);
    start = clamp(node.int("start", 0));
    const e = node.attr("end");
    if (e) end = clamp(node.int("end", r));
  }
  const dims = x.dims.slice(start, Math.max(start, end));
  return [value(DataType.INT64, [dims.length], Float64Array.from(dims))];
}

export function evalRange(ins: (Value | undefined)[]): Value[] {
  const s = need(ins[0], "Range", 0);
  const l = need(ins[1], "Range", 1);
  const dl = need(ins[2], "Range", 2);
  const t = s.dtype;
  if (l.dtype !== t || dl.dtype !== t) notEvaluated("Range inputs differ in dtype");
  const start = scalarOf(s, "Range start");
  const limit = scalarOf(l, "Range limit");
  const delta = scalarOf(dl, "Range delta");
  if (delta === 0) notEvaluated("Range with delta 0");
  if (!Number.isFinite(start) || !Number.isFinite(limit) || !Number.isFinite(delta)) notEvaluated("Range with non-finite bounds");
  const span = isFloat(t) ? roundFloat(t, limit - start) : limit - start;
  const n = Math.max(Math.ceil(span / delta), 0);
  const out = alloc(t, [n]);
  // As onnxruntime does (and the spec's loop): accumulate, rounding to the dtype at each step.
  let v = start;
  for (let i = 0; i < n; i++) {
    out.data[i] = v;
    v = isFloat(t) ? roundFloat(t, v + delta) : v + delta;
  }
  return [out];
}

// --- Reshape family ------------------------------------------------------------------------

export function evalReshape(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const x = need(ins[0], "Reshape");
  const spec = opset < 5 ? attrInts(node, "shape") : ins[1] ? intsOf(ins[1], "Reshape shape") : undefined;
  if (!spec) notEvaluated("Reshape without a shape");
  const allowzero = opset >= 14 && node.int("allowzero", 0) === 1;
  const total = product(x.dims);
  const dims: number[] = [];
  let infer = -1;
  spec.forEach((d, i) => {
    if (d === -1) {
      if (infer >= 0) notEvaluated("Reshape with more than one -1");
      infer = i;
      dims.push(1);
    } else if (d === 0 && !allowzero) {
      if (i >= x.dims.length) notEvaluated(`Reshape copies dim ${i} of a rank-${x.dims.length} input`);
      dims.push(x.dims[i]!);
    } else if (d < 0 || !Number.isSafeInteger(d)) notEvaluated(`Reshape dim ${d}`);
    else dims.push(d);
  });
  if (infer >= 0) {
    if (allowzero && spec.includes(0)) notEvaluated("Reshape with allowzero, 0 and -1");
    const known = product(dims);
    if (known === 0 || total % known !== 0) notEvaluated(`Reshape cannot infer -1 for ${total} elements into [${spec}]`);
    dims[infer] = total / known;
  }
  if (product(dims) !== total) notEvaluated(`Reshape of [${x.dims}] to [${dims}] changes the element count`);
  return [copy(x, dims)];
}

export function evalFlatten(node: Node, ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], "Flatten");
  const r = x.dims.length;
  let axis = node.int("axis", 1);
  if (axis < -r || axis > r) notEvaluated(`Flatten axis ${axis} out of range`);
  if (axis < 0) axis += r;
  return [copy(x, [product(x.dims, 0, axis), product(x.dims, axis)])];
}

export function evalSqueeze(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const x = need(ins[0], "Squeeze");
  const r = x.dims.length;
  const axes = attrOrInput(node, ins, 1, "axes", 13, opset);
  let drop: Set<number>;
  if (axes === undefined) drop = new Set(x.dims.flatMap((d, i) => (d === 1 ? [i] : [])));
  else {
    drop = new Set(normAxes(axes, r, "Squeeze axes"));
    for (const a of drop) if (x.dims[a] !== 1) notEvaluated(`Squeeze of axis ${a} with size ${x.dims[a]}`);
  }
  return [copy(x, x.dims.filter((_, i) => !drop.has(i)))];
}

export function evalUnsqueeze(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const x = need(ins[0], "Unsqueeze");
  const axes = attrOrInput(node, ins, 1, "axes", 13, opset);
  if (!axes) notEvaluated("Unsqueeze without axes");
  const r = x.dims.length + axes.length;
  const add = new Set(normAxes(axes, r, "Unsqueeze axes"));
  const dims: number[] = [];
  let j = 0;
  for (let i = 0; i < r; i++) dims.push(add.has(i) ? 1 : x.dims[j++]!);
  return [copy(x, dims)];
}

export function evalTranspose(node: Node, ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], "Transpose");
  const r = x.dims.length;
  const perm = node.ints("perm") ?? Array.from({ length: r }, (_, i) => r - 1 - i);
  if (perm.length !== r || new Set(perm).size !== r || perm.some((p) => p < 0 || p >= r)) notEvaluated(`Transpose perm [${perm}] for rank ${r}`);
  const dims = perm.map((p) => x.dims[p]!);
  return [value(x.dtype, dims, transposeData(x, perm))];
}

export function transposeData(x: Value, perm: readonly number[]): Float64Array {
  const dims = perm.map((p) => x.dims[p]!);
  if (sizeOf(dims) === 0) return new Float64Array(0);
  if (perm.length === 2 && perm[0] === 1) {
    // A weight matrix (PyTorch exports Linear weights as Transpose(W)): in cache-sized tiles.
    const [R, C] = x.dims as [number, number];
    const out = new Float64Array(R * C), src = x.data, T = 32;
    for (let r0 = 0; r0 < R; r0 += T)
      for (let c0 = 0; c0 < C; c0 += T) {
        const r1 = Math.min(R, r0 + T), c1 = Math.min(C, c0 + T);
        for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * R + r] = src[r * C + c]!;
      }
    return out;
  }
  const st = stridesOf(x.dims);
  return axisGather(x.data, dims, perm.map((p, ax) => table(dims[ax]!, (c) => c, st[p]!)));
}

// --- Concat / Split / Slice ----------------------------------------------------------------

export function evalConcat(node: Node, ins: (Value | undefined)[]): Value[] {
  const vs = ins.filter((v): v is Value => v !== undefined);
  if (vs.length === 0) notEvaluated("Concat with no inputs");
  const first = vs[0]!;
  const r = first.dims.length;
  if (r === 0) notEvaluated("Concat of scalars");
  const axisAttr = node.int("axis");
  if (axisAttr === undefined) notEvaluated("Concat without axis");
  const axis = normAxis(axisAttr, r, "Concat axis");
  let total = 0;
  for (const v of vs) {
    if (v.dtype !== first.dtype) notEvaluated("Concat mixes dtypes");
    if (v.dims.length !== r || v.dims.some((d, i) => i !== axis && d !== first.dims[i])) notEvaluated(`Concat of [${first.dims}] and [${v.dims}] on axis ${axis}`);
    total += v.dims[axis]!;
  }
  const dims = [...first.dims];
  dims[axis] = total;
  const out = alloc(first.dtype, dims);
  const outer = product(dims, 0, axis);
  const inner = product(dims, axis + 1);
  const rowOut = total * inner;
  let at = 0;
  for (const v of vs) {
    const row = v.dims[axis]! * inner;
    for (let o = 0; o < outer; o++) out.data.set(v.data.subarray(o * row, (o + 1) * row), o * rowOut + at);
    at += row;
  }
  return [out];
}

export function evalSplit(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const x = need(ins[0], "Split");
  const r = x.dims.length;
  const axis = normAxis(node.int("axis", 0), r, "Split axis");
  const dim = x.dims[axis]!;
  let split: number[] | undefined;
  if (opset < 13) split = attrInts(node, "split") ?? (ins[1] ? intsOf(ins[1], "Split split") : undefined);
  else split = ins[1] ? intsOf(ins[1], "Split split") : undefined;
  const n = node.outputs.length;
  if (!split) {
    const k = opset >= 18 ? node.int("num_outputs", n) : n;
    if (k !== n) notEvaluated(`Split num_outputs ${k} but ${n} outputs`);
    if (dim % k === 0) split = new Array<number>(k).fill(dim / k);
    else if (opset >= 18) {
      const chunk = Math.ceil(dim / k);
      const last = dim - chunk * (k - 1);
      if (last <= 0) notEvaluated(`Split of ${dim} into ${k} parts`);
      split = [...new Array<number>(k - 1).fill(chunk), last];
    } else notEvaluated(`Split of ${dim} into ${k} equal parts`);
  }
  if (split.length !== n) notEvaluated(`Split into ${split.length} parts but ${n} outputs`);
  if (split.some((s) => s < 0) || split.reduce((a, b) => a + b, 0) !== dim) notEvaluated(`Split sizes [${split}] do not sum to ${dim}`);
  const outer = product(x.dims, 0, axis);
  const inner = product(x.dims, axis + 1);
  const outs: Value[] = [];
  let at = 0;
  for (const s of split) {
    const dims = [...x.dims];
    dims[axis] = s;
    const out = alloc(x.dtype, dims);
    const row = s * inner;
    for (let o = 0; o < outer; o++) out.data.set(x.data.subarray(o * dim * inner + at, o * dim * inner + at + row), o * row);
    at += row;
    outs.push(out);
  }
  return outs;
}

export function evalSlice(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const x = need(ins[0], "Slice");
  const r = x.dims.length;
  let starts: number[] | undefined, ends: number[] | undefined, axes: number[] | undefined, steps: number[] | undefined;
  if (opset < 10) {
    starts = attrInts(node, "starts");
    ends = attrInts(node, "ends");
    axes = attrInts(node, "axes");
  } else {
    starts = ins[1] && intsOf(ins[1], "Slice starts");
    ends = ins[2] && intsOf(ins[2], "Slice ends");
    axes = ins[3] && intsOf(ins[3], "Slice axes");
    steps = ins[4] && intsOf(ins[4], "Slice steps");
  }
  if (!starts || !ends) notEvaluated("Slice without starts/ends");
  const k = starts.length;
  axes ??= Array.from({ length: k }, (_, i) => i);
  steps ??= new Array<number>(k).fill(1);
  if (ends.length !== k || axes.length !== k || steps.length !== k) notEvaluated("Slice starts/ends/axes/steps differ in length");
  const ax = normAxes(axes, r, "Slice axes");
  const begin = new Array<number>(r).fill(0);
  const step = new Array<number>(r).fill(1);
  const dims = [...x.dims];
  for (let i = 0; i < k; i++) {
    const a = ax[i]!;
    const d = x.dims[a]!;
    const s = steps[i]!;
    if (s === 0 || !Number.isSafeInteger(s)) notEvaluated(`Slice step ${s}`);
    let b = starts[i]!;
    let e = ends[i]!;
    if (b < 0) b += d;
    if (e < 0) e += d;
    if (s > 0) {
      b = Math.min(Math.max(b, 0), d);
      e = Math.min(Math.max(e, 0), d);
      dims[a] = Math.max(0, Math.ceil((e - b) / s));
    } else {
      b = Math.min(Math.max(b, 0), d - 1);
      e = Math.min(Math.max(e, -1), d - 1);
      dims[a] = Math.max(0, Math.ceil((e - b) / s));
    }
    begin[a] = b;
    step[a] = s;
  }
  if (sizeOf(dims) === 0) return [value(x.dtype, dims, new Float64Array(0))];
  const st = stridesOf(x.dims);
  return [value(x.dtype, dims, axisGather(x.data, dims, dims.map((len, a) => table(len, (c) => begin[a]! + c * step[a]!, st[a]!))))];
}

// --- Expand / Tile / Pad ---------------------------------------------------------------------

export function evalExpand(ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], "Expand");
  const shape = intsOf(need(ins[1], "Expand", 1), "Expand shape");
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) notEvaluated(`Expand shape [${shape}]`);
  const dims = broadcastDims([x.dims, shape]);
  sizeOf(dims);
  return [value(x.dtype, dims, Float64Array.from(expandData(x, dims)))];
}

export function evalTile(ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], "Tile");
  const reps = intsOf(need(ins[1], "Tile", 1), "Tile repeats");
  if (reps.length !== x.dims.length || reps.some((v) => v < 0)) notEvaluated(`Tile repeats [${reps}] for rank ${x.dims.length}`);
  const dims = x.dims.map((d, i) => d * reps[i]!);
  if (sizeOf(dims) === 0) return [value(x.dtype, dims, new Float64Array(0))];
  const st = stridesOf(x.dims);
  return [value(x.dtype, dims, axisGather(x.data, dims, dims.map((len, a) => table(len, (c) => c % x.dims[a]!, st[a]!))))];
}

/**
 * Constant Pad that only grows: the fill everywhere, then each input row copied to its place (OREPA
 * pads 1x1 kernels to 3x3: eight of nine values are fill). The same values as the gather.
 */
function padConstant(x: Value, dims: readonly number[], before: readonly number[], fill: number): Float64Array {
  const out = newData(sizeOf(dims), false).fill(fill);
  const r = dims.length;
  if (r === 0) {
    out[0] = x.data[0]!;
    return out;
  }
  const outSt = stridesOf(dims);
  const row = x.dims[r - 1]!;
  const idx = new Array<number>(r).fill(0);
  let off = 0;
  for (let a = 0; a < r; a++) off += before[a]! * outSt[a]!;
  for (let i = 0; i < x.data.length; i += row) {
    for (let j = 0; j < row; j++) out[off + j] = x.data[i + j]!;
    for (let a = r - 2; a >= 0; a--) {
      idx[a]++;
      off += outSt[a]!;
      if (idx[a]! < x.dims[a]!) break;
      off -= outSt[a]! * x.dims[a]!;
      idx[a] = 0;
    }
  }
  return out;
}

export function evalPad(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const x = need(ins[0], "Pad");
  const r = x.dims.length;
  const mode = node.string("mode", "constant");
  let pads: number[] | undefined;
  let fill = 0;
  let axes: number[] | undefined;
  if (opset < 11) {
    pads = node.ints(opset < 2 ? "paddings" : "pads");
    fill = node.float("value", 0);
  } else {
    pads = ins[1] && intsOf(ins[1], "Pad pads");
    if (ins[2]) {
      if (ins[2].dtype !== x.dtype) notEvaluated("Pad constant_value dtype differs from input");
      fill = scalarOf(ins[2], "Pad constant_value");
    }
    if (opset >= 18 && ins[3]) axes = normAxes(intsOf(ins[3], "Pad axes"), r, "Pad axes");
  }
  if (!pads) notEvaluated("Pad without pads");
  axes ??= Array.from({ length: r }, (_, i) => i);
  if (pads.length !== 2 * axes.length) notEvaluated(`Pad has ${pads.length} pads for ${axes.length} axes`);
  const before = new Array<number>(r).fill(0);
  const after = new Array<number>(r).fill(0);
  axes.forEach((a, i) => {
    before[a] = pads![i]!;
    after[a] = pads![i + axes!.length]!;
  });
  const dims = x.dims.map((d, i) => d + before[i]! + after[i]!);
  if (dims.some((d) => d < 0)) notEvaluated(`Pad gives negative dims [${dims}]`);
  if (sizeOf(dims) === 0) return [value(x.dtype, dims, new Float64Array(0))];
  if (!["constant", "reflect", "edge", "wrap"].includes(mode) || (mode === "wrap" && opset < 19)) notEvaluated(`Pad mode ${mode}`);
  if (mode === "constant" && before.every((b) => b >= 0) && after.every((a) => a >= 0) && x.data.length > 0) return [value(x.dtype, dims, padConstant(x, dims, before, fill))];
  const st = stridesOf(x.dims);
  const tables = dims.map((len, a) => {
    const d = x.dims[a]!;
    const b = before[a]!;
    return table(len, (c) => {
      const i = c - b;
      if (i >= 0 && i < d) return i;
      if (d === 0) notEvaluated(`Pad mode ${mode} of an empty axis`);
      switch (mode) {
        case "constant": return -1;
        case "edge": return i < 0 ? 0 : d - 1;
        case "wrap": return ((i % d) + d) % d;
        default: {
          const j = i < 0 ? -i : 2 * (d - 1) - i;
          if (j < 0 || j >= d) notEvaluated(`Pad reflect of ${b} / ${after[a]} on an axis of ${d}`);
          return j;
        }
      }
    }, st[a]!);
  });
  return [value(x.dtype, dims, axisGather(x.data, dims, tables, fill))];
}

// --- gathers and scatters ------------------------------------------------------------------

function index(i: number, d: number, what: string): number {
  const j = i < 0 ? i + d : i;
  if (!Number.isInteger(j) || j < 0 || j >= d) notEvaluated(`${what} index ${i} out of range for size ${d}`);
  return j;
}

function indicesOf(v: Value, what: string): Value {
  if (v.dtype !== DataType.INT64 && v.dtype !== DataType.INT32) notEvaluated(`${what} indices are ${dtypeName(v.dtype)}`);
  return v;
}

export function evalGather(node: Node, ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], "Gather");
  const idx = indicesOf(need(ins[1], "Gather", 1), "Gather");
  const r = x.dims.length;
  if (r === 0) notEvaluated("Gather on a scalar");
  const axis = normAxis(node.int("axis", 0), r, "Gather axis");
  const dims = [...x.dims.slice(0, axis), ...idx.dims, ...x.dims.slice(axis + 1)];
  const out = alloc(x.dtype, dims);
  const outer = product(x.dims, 0, axis);
  const inner = product(x.dims, axis + 1);
  const d = x.dims[axis]!;
  const k = idx.data.length;
  const js = Array.from(idx.data, (i) => index(i, d, "Gather"));
  let o = 0;
  for (let a = 0; a < outer; a++)
    for (let t = 0; t < k; t++) {
      const src = (a * d + js[t]!) * inner;
      out.data.set(x.data.subarray(src, src + inner), o);
      o += inner;
    }
  return [out];
}

/** Coordinates of flat index i in `dims` (written into `coord`). */
function unravel(i: number, dims: readonly number[], coord: number[]): void {
  for (let a = dims.length - 1; a >= 0; a--) {
    const d = dims[a]!;
    coord[a] = i % d;
    i = Math.floor(i / d);
  }
}

export function evalGatherElements(node: Node, ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], "GatherElements");
  const idx = indicesOf(need(ins[1], "GatherElements", 1), "GatherElements");
  const r = x.dims.length;
  if (idx.dims.length !== r || r === 0) notEvaluated("GatherElements rank mismatch");
  const axis = normAxis(node.int("axis", 0), r, "GatherElements axis");
  for (let a = 0; a < r; a++) if (a !== axis && idx.dims[a]! > x.dims[a]!) notEvaluated("GatherElements indices exceed data shape");
  const out = alloc(x.dtype, idx.dims);
  const st = stridesOf(x.dims);
  const coord = new Array<number>(r).fill(0);
  for (let i = 0; i < out.data.length; i++) {
    unravel(i, idx.dims, coord);
    coord[axis] = index(idx.data[i]!, x.dims[axis]!, "GatherElements");
    let off = 0;
    for (let a = 0; a < r; a++) off += coord[a]! * st[a]!;
    out.data[i] = x.data[off]!;
  }
  return [out];
}

export function evalGatherND(node: Node, ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], "GatherND");
  const idx = indicesOf(need(ins[1], "GatherND", 1), "GatherND");
  if (idx.dtype !== DataType.INT64) notEvaluated("GatherND indices must be int64");
  const b = node.int("batch_dims", 0);
  const q = idx.dims.length;
  const r = x.dims.length;
  if (q < 1 || b < 0 || b >= Math.min(q, r)) notEvaluated("GatherND batch_dims out of range");
  const k = idx.dims[q - 1]!;
  if (k < 1 || k > r - b) notEvaluated(`GatherND index depth ${k} for rank ${r}`);
  for (let a = 0; a < b; a++) if (idx.dims[a] !== x.dims[a]) notEvaluated("GatherND batch dims differ");
  const dims = [...idx.dims.slice(0, q - 1), ...x.dims.slice(b + k)];
  const out = alloc(x.dtype, dims);
  const slice = product(x.dims, b + k);
  const st = stridesOf(x.dims);
  const tuples = product(idx.dims, 0, q - 1);
  const perBatch = product(idx.dims, b, q - 1);
  const batchStride = product(x.dims, b);
  for (let t = 0; t < tuples; t++) {
    let off = Math.floor(t / Math.max(perBatch, 1)) * batchStride;
    for (let j = 0; j < k; j++) off += index(idx.data[t * k + j]!, x.dims[b + j]!, "GatherND") * st[b + j]!;
    out.data.set(x.data.subarray(off, off + slice), t * slice);
  }
  return [out];
}

function reducer(node: Node, opset: number): (old: number, u: number) => number {
  const red = opset >= 16 ? node.string("reduction", "none") : "none";
  switch (red) {
    case "none": return (_, u) => u;
    case "add": return (o, u) => o + u;
    case "mul": return (o, u) => o * u;
    case "max": return (o, u) => Math.max(o, u);
    case "min": return (o, u) => Math.min(o, u);
    default: notEvaluated(`scatter reduction ${red}`);
  }
}

export function scatterIsPlain(node: Node, opset: number): boolean {
  return opset < 16 || node.string("reduction", "none") === "none";
}

export function evalScatterND(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const x = need(ins[0], "ScatterND");
  const idx = indicesOf(need(ins[1], "ScatterND", 1), "ScatterND");
  const u = need(ins[2], "ScatterND", 2);
  if (u.dtype !== x.dtype) notEvaluated("ScatterND updates dtype differs");
  const q = idx.dims.length;
  const r = x.dims.length;
  if (q < 1) notEvaluated("ScatterND indices must have rank ≥ 1");
  const k = idx.dims[q - 1]!;
  if (k < 1 || k > r) notEvaluated(`ScatterND index depth ${k} for rank ${r}`);
  const udims = [...idx.dims.slice(0, q - 1), ...x.dims.slice(k)];
  if (!sameDims(udims, u.dims)) notEvaluated(`ScatterND updates shape [${u.dims}], expected [${udims}]`);
  const f = reducer(node, opset);
  const plain = scatterIsPlain(node, opset);
  const out = copy(x);
  const slice = product(x.dims, k);
  const st = stridesOf(x.dims);
  const tuples = product(idx.dims, 0, q - 1);
  const seen = new Set<number>();
  for (let t = 0; t < tuples; t++) {
    let off = 0;
    for (let j = 0; j < k; j++) off += index(idx.data[t * k + j]!, x.dims[j]!, "ScatterND") * st[j]!;
    if (plain) {
      if (seen.has(off)) notEvaluated("ScatterND with duplicate indices (order undefined)");
      seen.add(off);
    }
    for (let e = 0; e < slice; e++) out.data[off + e] = f(out.data[off + e]!, u.data[t * slice + e]!);
  }
  return [out];
}

export function evalScatterElements(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const x = need(ins[0], node.opType);
  const idx = indicesOf(need(ins[1], node.opType, 1), node.opType);
  const u = need(ins[2], node.opType, 2);
  const r = x.dims.length;
  if (u.dtype !== x.dtype) notEvaluated(`${node.opType} updates dtype differs`);
  if (!sameDims(idx.dims, u.dims) || idx.dims.length !== r || r === 0) notEvaluated(`${node.opType} shapes`);
  for (let a = 0; a < r; a++) if (idx.dims[a]! > x.dims[a]!) notEvaluated(`${node.opType} indices exceed data shape`);
  const axis = normAxis(node.int("axis", 0), r, `${node.opType} axis`);
  const f = reducer(node, opset);
  const plain = scatterIsPlain(node, opset);
  const out = copy(x);
  const st = stridesOf(x.dims);
  const coord = new Array<number>(r).fill(0);
  const seen = new Set<number>();
  for (let i = 0; i < idx.data.length; i++) {
    unravel(i, idx.dims, coord);
    coord[axis] = index(idx.data[i]!, x.dims[axis]!, node.opType);
    let off = 0;
    for (let a = 0; a < r; a++) off += coord[a]! * st[a]!;
    if (plain) {
      if (seen.has(off)) notEvaluated(`${node.opType} with duplicate indices (order undefined)`);
      seen.add(off);
    }
    out.data[off] = f(out.data[off]!, u.data[i]!);
  }
  return [out];
}

// --- Trilu / CumSum / NonZero ------------------------------------------------------------------

export function evalTrilu(node: Node, ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], "Trilu");
  const r = x.dims.length;
  if (r < 2) notEvaluated("Trilu on rank < 2");
  const k = ins[1] ? scalarOf(ins[1], "Trilu k") : 0;
  const upper = node.int("upper", 1) === 1;
  const out = copy(x);
  const rows = x.dims[r - 2]!;
  const cols = x.dims[r - 1]!;
  const mats = product(x.dims, 0, r - 2);
  for (let m = 0; m < mats; m++)
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++) {
        const keep = upper ? j - i >= k : j - i <= k;
        if (!keep) out.data[(m * rows + i) * cols + j] = 0;
      }
  return [out];
}

export function evalCumSum(node: Node, ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], "CumSum");
  if (isBool(x.dtype)) notEvaluated("CumSum on bool");
  const r = x.dims.length;
  const axis = normAxis(scalarOf(need(ins[1], "CumSum", 1), "CumSum axis"), r, "CumSum axis");
  const exclusive = node.int("exclusive", 0) === 1;
  const reverse = node.int("reverse", 0) === 1;
  const out = alloc(x.dtype, x.dims);
  const outer = product(x.dims, 0, axis);
  const inner = product(x.dims, axis + 1);
  const d = x.dims[axis]!;
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      let acc = 0;
      for (let s = 0; s < d; s++) {
        const j = reverse ? d - 1 - s : s;
        const at = (o * d + j) * inner + i;
        if (exclusive) {
          out.data[at] = acc;
          acc += x.data[at]!;
        } else {
          acc += x.data[at]!;
          out.data[at] = acc;
        }
        if (isInt(x.dtype) && !Number.isSafeInteger(acc)) notEvaluated("CumSum exceeds 2^53");
      }
    }
  return [out];
}

export function evalNonZero(ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], "NonZero");
  const r = x.dims.length;
  if (r === 0) notEvaluated("NonZero on a scalar");
  const hits: number[] = [];
  for (let i = 0; i < x.data.length; i++) if (x.data[i] !== 0) hits.push(i);
  const out = alloc(DataType.INT64, [r, hits.length]);
  const coord = new Array<number>(r).fill(0);
  hits.forEach((h, j) => {
    unravel(h, x.dims, coord);
    for (let a = 0; a < r; a++) out.data[a * hits.length + j] = coord[a]!;
  });
  return [out];
}
