// Values the evaluator works on: every numeric ONNX dtype held as float64, plus the checks that
// keep that exact (size limits before any allocation, integer ranges, float rounding per dtype).
import { DataType, bfloat16ToFloat, dtypeName, floatToBfloat16, floatToHalf, halfToFloat } from "../ir/dtype.js";
import type { Refusal } from "../algebra/linear-map.js";
import { Tensor, type TensorData } from "../ir/tensor.js";

/** A tensor value: `data` holds every element as float64 (bool as 0/1, int64 exact up to 2^53). */
export interface Value {
  dtype: number;
  dims: number[];
  data: Float64Array;
}

/** One value per node output, or a Refusal saying why the node was not evaluated. */
export type EvalResult = Value[] | Refusal;

/** Largest number of elements any output (or intermediate) may have; larger ones are refused before allocating. */
export const MAX_ELEMENTS = 2 ** 26;

/** Largest number of multiply-adds (or comparable inner steps) one node may take. */
export const MAX_WORK = 2 ** 28;

/** int64 values INT64_MAX / INT64_MIN are held as ±2^63 (exact in float64); other values beyond 2^53 as NaN. */
export const INT64_MAX_VALUE = 2 ** 63;
const I64_MAX = 0x7fffffffffffffffn;
const I64_MIN = -0x8000000000000000n;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const NEAR_LIMIT = 2n ** 62n;

/**
 * Thrown inside the evaluator only; evaluateNode catches it and returns a Refusal with its reason,
 * so no caller outside src/eval ever sees it. A throw is the sane path here: the reasons arise deep
 * in shared helpers (sizeOf, normAxis, finalize, index loops) that return values, and threading a
 * Refusal back through each of them would bury the arithmetic.
 */
export class NotEvaluated extends Error {}

/** Stops the evaluation of the current node: evaluateNode returns `refuse(reason)`. Never returns. */
export function notEvaluated(reason: string): never {
  throw new NotEvaluated(reason);
}

// --- dtypes --------------------------------------------------------------------------------

const INT_RANGE: Record<number, readonly [number, number]> = {
  [DataType.UINT8]: [0, 255],
  [DataType.INT8]: [-128, 127],
  [DataType.UINT16]: [0, 65535],
  [DataType.INT16]: [-32768, 32767],
  [DataType.INT32]: [-(2 ** 31), 2 ** 31 - 1],
  [DataType.UINT32]: [0, 2 ** 32 - 1],
  [DataType.INT64]: [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  [DataType.UINT64]: [0, Number.MAX_SAFE_INTEGER],
};

export function isFloat(dtype: number): boolean {
  return dtype === DataType.FLOAT || dtype === DataType.DOUBLE || dtype === DataType.FLOAT16 || dtype === DataType.BFLOAT16;
}

export function isInt(dtype: number): boolean {
  return INT_RANGE[dtype] !== undefined;
}

export function isBool(dtype: number): boolean {
  return dtype === DataType.BOOL;
}

/** Numeric and bool dtypes the evaluator handles (not string, complex, float8, int4, ...). */
export function isEvaluableDtype(dtype: number): boolean {
  return isFloat(dtype) || isInt(dtype) || isBool(dtype);
}

/** Round one float64 to the nearest value of a float dtype. */
export function roundFloat(dtype: number, x: number): number {
  switch (dtype) {
    case DataType.FLOAT: return Math.fround(x);
    case DataType.FLOAT16: return halfToFloat(floatToHalf(x));
    case DataType.BFLOAT16: return bfloat16ToFloat(floatToBfloat16(x));
    default: return x;
  }
}

/**
 * Arrays a kernel has already rounded to float32 as it wrote them (stridedBinary): finalize skips
 * them, once. newData forgets an array it hands out again.
 */
const roundedToFloat32 = new WeakSet<Float64Array>();

/**
 * Brings computed data to what a tensor of `v.dtype` holds: floats rounded to their type (so a
 * float32 result is what the float32 op gives, for add/sub/mul/div/sqrt bit for bit), integers
 * checked to be integral and in range (anything else would wrap or lose precision: refused), bool
 * normalised to 0/1. `sentinels`: int64 ±2^63 (INT64_MAX/MIN) may pass through (data-movement ops).
 */
export function finalize(v: Value, sentinels: boolean): Value {
  const d = v.data;
  if (d.length !== sizeOf(v.dims)) throw new Error(`internal: ${d.length} values for shape [${v.dims}]`);
  const t = v.dtype;
  if (t === DataType.DOUBLE) return v;
  if (t === DataType.FLOAT) {
    if (roundedToFloat32.delete(d)) return v;
    for (let i = 0; i < d.length; i++) d[i] = Math.fround(d[i]!);
  } else if (t === DataType.FLOAT16 || t === DataType.BFLOAT16) {
    for (let i = 0; i < d.length; i++) d[i] = roundFloat(t, d[i]!);
  } else if (t === DataType.BOOL) {
    for (let i = 0; i < d.length; i++) d[i] = d[i] !== 0 ? 1 : 0;
  } else {
    const range = INT_RANGE[t];
    if (!range) notEvaluated(`dtype ${dtypeName(t)} is not evaluated`);
    const [lo, hi] = range;
    const allowSentinel = sentinels && t === DataType.INT64;
    for (let i = 0; i < d.length; i++) {
      const x = d[i]!;
      if (Number.isInteger(x) && x >= lo && x <= hi) {
        if (x === 0) d[i] = 0; // no -0 in integer types
        continue;
      }
      if (allowSentinel && (x === INT64_MAX_VALUE || x === -INT64_MAX_VALUE)) continue;
      if (!Number.isInteger(x)) notEvaluated(`result ${x} is not an integer for ${dtypeName(t)}`);
      notEvaluated(`result ${x} is out of the exact range of ${dtypeName(t)}${t === DataType.INT64 || t === DataType.UINT64 ? " (2^53)" : ""}`);
    }
  }
  return v;
}

// --- sizes ---------------------------------------------------------------------------------

/** Element count of a shape; refuses invalid dims and anything beyond MAX_ELEMENTS (checked as it multiplies). */
export function sizeOf(dims: readonly number[], what = "output"): number {
  let n = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) notEvaluated(`${what} dimension ${d} is not a valid size`);
    n *= d;
    if (n > MAX_ELEMENTS) notEvaluated(`${what} of shape [${dims}] would exceed ${MAX_ELEMENTS} elements`);
  }
  return n;
}

export function checkWork(work: number, what: string, limit = MAX_WORK): void {
  if (!(work <= limit)) notEvaluated(`${what} needs ${work} steps, more than the ${limit} evaluated`);
}

export function alloc(dtype: number, dims: readonly number[]): Value {
  return { dtype, dims: [...dims], data: newData(sizeOf(dims)) };
}

// --- reusing dead buffers --------------------------------------------------------------------

/** Buffers shorter than this are left to the allocator (small typed arrays are cheap). */
const MIN_RECYCLED = 1 << 12;
/** Most bytes of dead buffers kept for reuse, and most buffers of one length; the oldest go first. */
const MAX_RECYCLED_BYTES = 32 << 20;
const MAX_RECYCLED_PER_LENGTH = 4;

/**
 * Float64Arrays their owner knows are dead, kept for the next allocation of the same length
 * instead of left to the garbage collector. A constant region (OREPA: the same kernel size over
 * and over, a dozen full-size intermediates per block) otherwise leaves hundreds of MB of dead
 * kernels waiting for a collection: most of the evaluator's peak memory.
 */
class BufferPool {
  private readonly byLength = new Map<number, Float64Array[]>();
  private readonly order: Float64Array[] = [];
  private bytes = 0;

  give(data: Float64Array): void {
    if (data.length < MIN_RECYCLED || data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) return;
    if (!(data.buffer instanceof ArrayBuffer) || this.order.includes(data)) return;
    let list = this.byLength.get(data.length);
    if (!list) this.byLength.set(data.length, (list = []));
    list.push(data);
    this.order.push(data);
    this.bytes += data.byteLength;
    while (this.bytes > MAX_RECYCLED_BYTES || list.length > MAX_RECYCLED_PER_LENGTH) {
      const old = list.length > MAX_RECYCLED_PER_LENGTH ? list[0]! : this.order[0]!;
      this.order.splice(this.order.indexOf(old), 1);
      const same = this.byLength.get(old.length)!;
      same.splice(same.indexOf(old), 1);
      this.bytes -= old.byteLength;
    }
  }

  take(n: number): Float64Array | undefined {
    const data = this.byLength.get(n)?.pop();
    if (!data) return undefined;
    this.order.splice(this.order.indexOf(data), 1);
    this.bytes -= data.byteLength;
    return data;
  }
}

let pool: BufferPool | undefined;

/**
 * Runs `fn` with buffer reuse on: arrays passed to `recycle` inside it are handed out again by
 * newData (the evaluator's allocations). The caller guarantees a recycled array is referenced by
 * nothing it will read again. Outside, recycle does nothing and newData allocates.
 */
export function withRecycling<T>(fn: () => T): T {
  const outer = pool;
  pool = new BufferPool();
  try {
    return fn();
  } finally {
    pool = outer;
  }
}

/**
 * Inputs of the node being evaluated whose data its output may take over (evaluateNode's
 * `overwritable`): each is read for the last time by this node, and an op writing element i of
 * its output after reading element i of such an input (same shape, same layout) may write in place.
 */
let overwritable: Set<Value> | undefined;

export function withOverwritable<T>(vs: Iterable<Value> | undefined, fn: () => T): T {
  const outer = overwritable;
  overwritable = vs ? new Set(vs) : undefined;
  try {
    return fn();
  } finally {
    overwritable = outer;
  }
}

/** `v`'s data as the output of shape `dims`, when `v` may be overwritten and has that shape (once). */
export function takeOverwritable(v: Value, dims: readonly number[]): Float64Array | undefined {
  if (!overwritable?.has(v) || !sameDims(v.dims, dims)) return undefined;
  overwritable.delete(v);
  roundedToFloat32.delete(v.data);
  return v.data;
}

/** `data` is dead: its owner will not read it again and nothing else refers to it. */
export function recycle(data: Float64Array): void {
  pool?.give(data);
}

/** A Float64Array of `n` elements, zero-filled unless `zeroed` is false (the caller writes every element). */
export function newData(n: number, zeroed = true): Float64Array {
  const reused = n >= MIN_RECYCLED ? pool?.take(n) : undefined;
  if (!reused) return new Float64Array(n);
  roundedToFloat32.delete(reused);
  if (zeroed) reused.fill(0);
  return reused;
}

export function value(dtype: number, dims: readonly number[], data: Float64Array): Value {
  return { dtype, dims: [...dims], data };
}

export function scalar(dtype: number, x: number): Value {
  return { dtype, dims: [], data: Float64Array.of(x) };
}

export { product } from "../ir/tensor.js";

export function stridesOf(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= dims[i]!;
  }
  return s;
}

export function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Normalises an axis into [0, rank); refuses out of range. */
export function normAxis(axis: number, rank: number, what = "axis"): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) notEvaluated(`${what} ${axis} is out of range for rank ${rank}`);
  return axis < 0 ? axis + rank : axis;
}

export function normAxes(axes: readonly number[], rank: number, what = "axes"): number[] {
  const out = axes.map((a) => normAxis(a, rank, what));
  if (new Set(out).size !== out.length) notEvaluated(`${what} [${axes}] repeat an axis`);
  return out;
}

// --- broadcasting and strided gathers --------------------------------------------------------

/** numpy multidirectional broadcasting. */
export function broadcastDims(shapes: readonly (readonly number[])[]): number[] {
  const r = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(r).fill(1);
  for (const s of shapes)
    for (let i = 0; i < s.length; i++) {
      const o = r - s.length + i;
      const d = s[i]!;
      if (d === out[o] || d === 1) continue;
      if (out[o] === 1) out[o] = d;
      else notEvaluated(`shapes ${shapes.map((x) => `[${x}]`).join(", ")} do not broadcast`);
    }
  return out;
}

/**
 * out[i] = src[sum over axes of tables[ax][coord_ax]], or `fill` where any table entry is -1.
 * Transpose, Slice, Expand, Tile and Pad are all this. Callers size-check `outDims` first.
 */
export function axisGather(src: Float64Array, outDims: readonly number[], tables: readonly Int32Array[], fill = 0, base = 0): Float64Array {
  const n = sizeOf(outDims);
  const out = newData(n, false);
  if (n === 0) return out;
  const r = outDims.length;
  if (r === 0) {
    out[0] = src[base]!;
    return out;
  }
  const idx = new Int32Array(r);
  let off = base;
  let pads = 0;
  for (let ax = 0; ax < r; ax++) {
    const t = tables[ax]![0]!;
    if (t < 0) pads++;
    else off += t;
  }
  const last = r - 1;
  const lastTable = tables[last]!;
  const lastDim = outDims[last]!;
  let i = 0;
  while (i < n) {
    // Inner axis in a tight loop.
    const o0 = off - (lastTable[0]! < 0 ? 0 : lastTable[0]!);
    const p0 = pads - (lastTable[0]! < 0 ? 1 : 0);
    for (let c = 0; c < lastDim; c++) {
      const t = lastTable[c]!;
      out[i++] = p0 > 0 || t < 0 ? fill : src[o0 + t]!;
    }
    // Advance the outer axes (odometer).
    for (let ax = last - 1; ax >= 0; ax--) {
      const t = tables[ax]!;
      const old = t[idx[ax]!]!;
      if (old < 0) pads--;
      else off -= old;
      let c = idx[ax]! + 1;
      if (c === outDims[ax]) c = 0;
      idx[ax] = c;
      const nw = t[c]!;
      if (nw < 0) pads++;
      else off += nw;
      if (c !== 0) break;
    }
  }
  return out;
}

/** Table for one output axis: entry c = stride * map(c). */
export function table(len: number, map: (c: number) => number, stride: number): Int32Array {
  const t = new Int32Array(len);
  for (let c = 0; c < len; c++) {
    const m = map(c);
    t[c] = m < 0 ? -1 : m * stride;
  }
  return t;
}

/** `v`'s data broadcast to `dims` (the same array when the shape already matches). */
export function expandData(v: Value, dims: readonly number[]): Float64Array {
  if (sameDims(v.dims, dims)) return v.data;
  if (sizeOf(dims) === 0) return new Float64Array(0);
  const r = dims.length;
  const st = stridesOf(v.dims);
  const tables: Int32Array[] = [];
  for (let ax = 0; ax < r; ax++) {
    const i = ax - (r - v.dims.length);
    const len = dims[ax]!;
    if (i < 0 || v.dims[i] === 1) tables.push(new Int32Array(len));
    else tables.push(table(len, (c) => c, st[i]!));
  }
  return axisGather(v.data, dims, tables);
}

/** What stridedBinary computes per element: the common ones run inline, anything else is called. */
export type Combine = "add" | "sub" | "mul" | "div" | "zeroPlusProduct" | ((x: number, y: number) => number);

/**
 * out[i] = combine(a[Σ idx·aStrides], b[Σ idx·bStrides]) over `dims` in row-major order: a
 * broadcasting binary op that reads both operands in place (stride 0 where one broadcasts) instead
 * of expanding them to full size first. Axes along which both operands move as one contiguous run
 * are merged, so the inner loop covers long stretches. Same operation per element, same result.
 */
export function stridedBinary(
  out: Float64Array, dims: readonly number[], a: Float64Array, aStrides: readonly number[], b: Float64Array, bStrides: readonly number[],
  combine: Combine, roundToFloat32 = false,
): void {
  const d: number[] = [], sa: number[] = [], sb: number[] = [];
  for (let i = 0; i < dims.length; i++) {
    const n = dims[i]!;
    if (n === 1) continue;
    const k = d.length - 1;
    if (k >= 0 && sa[k] === aStrides[i]! * n && sb[k] === bStrides[i]! * n) {
      d[k]! *= n;
      sa[k] = aStrides[i]!;
      sb[k] = bStrides[i]!;
    } else {
      d.push(n);
      sa.push(aStrides[i]!);
      sb.push(bStrides[i]!);
    }
  }
  const total = out.length;
  if (total === 0) return;
  if (d.length === 0) {
    d.push(1);
    sa.push(0);
    sb.push(0);
  }
  const r = d.length;
  const inner = d[r - 1]!, ia = sa[r - 1]!, ib = sb[r - 1]!;
  const idx = new Array<number>(r).fill(0);
  let ao = 0, bo = 0;
  for (let o = 0; o < total; o += inner) {
    const end = o + inner;
    let i = o, x = ao, y = bo;
    // Rounding inside the expression costs nothing; a pass of its own would cost half the op.
    if (roundToFloat32) {
      const f = Math.fround;
      switch (combine) {
        case "add": for (; i < end; i++, x += ia, y += ib) out[i] = f(a[x]! + b[y]!); break;
        case "sub": for (; i < end; i++, x += ia, y += ib) out[i] = f(a[x]! - b[y]!); break;
        case "mul": for (; i < end; i++, x += ia, y += ib) out[i] = f(a[x]! * b[y]!); break;
        case "div": for (; i < end; i++, x += ia, y += ib) out[i] = f(a[x]! / b[y]!); break;
        case "zeroPlusProduct": for (; i < end; i++, x += ia, y += ib) out[i] = f(0 + a[x]! * b[y]!); break;
        default: for (; i < end; i++, x += ia, y += ib) out[i] = f(combine(a[x]!, b[y]!));
      }
    } else {
      switch (combine) {
        case "add": for (; i < end; i++, x += ia, y += ib) out[i] = a[x]! + b[y]!; break;
        case "sub": for (; i < end; i++, x += ia, y += ib) out[i] = a[x]! - b[y]!; break;
        case "mul": for (; i < end; i++, x += ia, y += ib) out[i] = a[x]! * b[y]!; break;
        case "div": for (; i < end; i++, x += ia, y += ib) out[i] = a[x]! / b[y]!; break;
        case "zeroPlusProduct": for (; i < end; i++, x += ia, y += ib) out[i] = 0 + a[x]! * b[y]!; break;
        default: for (; i < end; i++, x += ia, y += ib) out[i] = combine(a[x]!, b[y]!);
      }
    }
    for (let ax = r - 2; ax >= 0; ax--) {
      idx[ax]++;
      ao += sa[ax]!;
      bo += sb[ax]!;
      if (idx[ax]! < d[ax]!) break;
      ao -= sa[ax]! * d[ax]!;
      bo -= sb[ax]! * d[ax]!;
      idx[ax] = 0;
    }
  }
  if (roundToFloat32) roundedToFloat32.add(out);
}

/** Flat offsets of every element of `outDims` under per-axis `strides` (used for batch loops). */
export function offsets(outDims: readonly number[], strides: readonly number[]): Float64Array {
  const n = sizeOf(outDims);
  const out = new Float64Array(n);
  const r = outDims.length;
  const idx = new Array<number>(r).fill(0);
  let off = 0;
  for (let i = 0; i < n; i++) {
    out[i] = off;
    for (let ax = r - 1; ax >= 0; ax--) {
      idx[ax]++;
      off += strides[ax]!;
      if (idx[ax]! < outDims[ax]!) break;
      off -= strides[ax]! * idx[ax]!;
      idx[ax] = 0;
    }
  }
  return out;
}

/** Broadcast strides of `dims` inside `outDims` (0 where broadcast), elements scaled by `unit`. */
export function broadcastStrides(dims: readonly number[], outDims: readonly number[], unit = 1): number[] {
  const r = outDims.length;
  const st = new Array<number>(r).fill(0);
  let acc = unit;
  for (let i = dims.length - 1; i >= 0; i--) {
    const o = r - dims.length + i;
    st[o] = dims[i] === 1 ? 0 : acc;
    acc *= dims[i]!;
  }
  return st;
}

// --- reading integer inputs ------------------------------------------------------------------

/** An integer list from an int32/int64 tensor (may hold ±2^63 for INT64_MAX/MIN). */
export function intsOf(v: Value, what: string): number[] {
  if (!isInt(v.dtype)) notEvaluated(`${what} must be an integer tensor, got ${dtypeName(v.dtype)}`);
  if (v.dims.length > 1) notEvaluated(`${what} must be 1-D, got shape [${v.dims}]`);
  return Array.from(v.data);
}

export function scalarOf(v: Value, what: string): number {
  if (v.data.length !== 1) notEvaluated(`${what} must hold one value, got shape [${v.dims}]`);
  return v.data[0]!;
}

// --- tensors ---------------------------------------------------------------------------------

/** Why a tensor cannot become a Value, or undefined when it can. */
export function tensorUnsupported(t: Tensor): string | undefined {
  if (!isEvaluableDtype(t.dtype)) return `dtype ${dtypeName(t.dtype)} is not evaluated`;
  if (t.dims.some((d) => !Number.isSafeInteger(d) || d < 0)) return `invalid shape [${t.dims}]`;
  if (t.size > MAX_ELEMENTS) return `tensor of shape [${t.dims}] exceeds ${MAX_ELEMENTS} elements`;
  return undefined;
}

/** Decode a tensor exactly. Throws (NotEvaluated) for string/complex tensors or ones beyond MAX_ELEMENTS. */
export function valueFromTensor(t: Tensor): Value {
  const why = tensorUnsupported(t);
  if (why) notEvaluated(`tensor '${t.name}': ${why}`);
  const dims = [...t.dims];
  const raw = t.data();
  const out = newData(raw.length, false);
  if (raw instanceof BigInt64Array || raw instanceof BigUint64Array) {
    for (let i = 0; i < raw.length; i++) {
      const b = raw[i]!;
      if (b >= -SAFE && b <= SAFE) out[i] = Number(b);
      // Exporters write "open" slice bounds as INT64_MAX or INT64_MIN(+1): values this close to the
      // int64 limits are taken as the ±2^63 sentinels, which only bound-like ops accept.
      else if (raw instanceof BigInt64Array && b >= NEAR_LIMIT) out[i] = INT64_MAX_VALUE;
      else if (raw instanceof BigInt64Array && b <= -NEAR_LIMIT) out[i] = -INT64_MAX_VALUE;
      else out[i] = NaN; // not exact as float64: any op that reads it refuses
    }
  } else if (t.dtype === DataType.BOOL) {
    for (let i = 0; i < raw.length; i++) out[i] = raw[i] !== 0 ? 1 : 0;
  } else if (t.dtype === DataType.FLOAT16) {
    for (let i = 0; i < raw.length; i++) out[i] = halfToFloat(raw[i] as number);
  } else if (t.dtype === DataType.BFLOAT16) {
    for (let i = 0; i < raw.length; i++) out[i] = bfloat16ToFloat(raw[i] as number);
  } else {
    out.set(raw as ArrayLike<number>);
  }
  return { dtype: t.dtype, dims, data: out };
}

function intData(name: string, v: Value, make: (n: number) => TensorData & { [i: number]: number }): TensorData {
  const range = INT_RANGE[v.dtype]!;
  const out = make(v.data.length);
  for (let i = 0; i < v.data.length; i++) {
    const x = v.data[i]!;
    if (!Number.isInteger(x) || x < range[0] || x > range[1]) throw new RangeError(`tensor '${name}': ${x} is not an exact ${dtypeName(v.dtype)}`);
    out[i] = x;
  }
  return out;
}

/** Store a value as a tensor of its dtype: floats rounded to it, integers stored exactly (a non-integral or out-of-range integer throws RangeError), bool as 0/1. */
export function tensorFromValue(name: string, v: Value): Tensor {
  const d = v.data;
  let data: TensorData;
  switch (v.dtype) {
    // TypedArray#set converts natively, with the same rounding as Float32Array.from.
    case DataType.FLOAT: data = new Float32Array(d.length); data.set(d); break;
    case DataType.DOUBLE: data = new Float64Array(d.length); data.set(d); break;
    case DataType.FLOAT16: data = Uint16Array.from(d, floatToHalf); break;
    case DataType.BFLOAT16: data = Uint16Array.from(d, floatToBfloat16); break;
    case DataType.BOOL: data = Uint8Array.from(d, (x) => (x !== 0 ? 1 : 0)); break;
    case DataType.INT8: data = intData(name, v, (n) => new Int8Array(n)); break;
    case DataType.UINT8: data = intData(name, v, (n) => new Uint8Array(n)); break;
    case DataType.INT16: data = intData(name, v, (n) => new Int16Array(n)); break;
    case DataType.UINT16: data = intData(name, v, (n) => new Uint16Array(n)); break;
    case DataType.INT32: data = intData(name, v, (n) => new Int32Array(n)); break;
    case DataType.UINT32: data = intData(name, v, (n) => new Uint32Array(n)); break;
    case DataType.INT64: {
      const out = new BigInt64Array(d.length);
      for (let i = 0; i < d.length; i++) {
        const x = d[i]!;
        if (x === INT64_MAX_VALUE) out[i] = I64_MAX;
        else if (x === -INT64_MAX_VALUE) out[i] = I64_MIN;
        else if (Number.isSafeInteger(x)) out[i] = BigInt(x);
        else throw new RangeError(`tensor '${name}': ${x} is not an exact int64`);
      }
      data = out;
      break;
    }
    case DataType.UINT64: {
      const out = new BigUint64Array(d.length);
      for (let i = 0; i < d.length; i++) {
        const x = d[i]!;
        if (!Number.isSafeInteger(x) || x < 0) throw new RangeError(`tensor '${name}': ${x} is not an exact uint64`);
        out[i] = BigInt(x);
      }
      data = out;
      break;
    }
    default:
      throw new RangeError(`tensor '${name}': cannot store dtype ${dtypeName(v.dtype)}`);
  }
  return Tensor.fromData(name, v.dtype, v.dims, data);
}
