// Static shape inference for the ops this tool reasons about. Unknown ops or dims give undefined:
// a pass that needs a shape it cannot get refuses instead of guessing.
import type { Graph, Node } from "./graph.js";
import { toNumber, type ValueInfoProto } from "./proto.js";
import { DataType } from "./dtype.js";

export type Dims = (number | undefined)[];
export interface ShapeInfo {
  dims: Dims | undefined; // undefined: rank unknown
  dtype: number | undefined;
  /**
   * For unknown dims: a name shared by dims known to be equal at run time ("x#0": the batch of
   * graph input x), so `Reshape(t, [Shape(x)[0], -1, …])` still resolves its −1.
   */
  symbols?: (string | undefined)[];
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
  return new ShapeInference(graph, options).shapes;
}

/**
 * Shape inference kept up to date while a graph changes. After a change only the nodes from the
 * first affected one on are inferred again: a node before it reads nothing that changed, so its
 * facts are what a full inference would find (each node writes only its own outputs' facts).
 */
export class ShapeInference {
  readonly shapes: ShapeMap = new Map();
  /**
   * Partially known values of small integer tensors (shape plumbing: Shape → Gather → Div →
   * Concat → Reshape), so a Reshape whose target is computed from a dynamic shape still gets the
   * dims that are static.
   */
  private readonly values: ValueMap = new Map();

  constructor(private readonly graph: Graph, private readonly options: ShapeOptions = {}) {
    const seeds = this.seeds();
    for (const [name, info] of seeds) this.shapes.set(name, info);
    this.inferFrom(0);
  }

  /** Facts known before any node: initializers, then value_info, then graph inputs (later ones win). */
  private seeds(only?: ReadonlySet<string>): Map<string, ShapeInfo> {
    const graph = this.graph, options = this.options;
    const seeds = new Map<string, ShapeInfo>();
    const wanted = (name: string) => !only || only.has(name);
    const elem = (v: ValueInfoProto) => v.type?.tensorType?.elemType ?? undefined;
    for (const [name, t] of graph.initializers) if (wanted(name)) seeds.set(name, { dims: [...t.dims], dtype: t.dtype });
    for (const v of graph.valueInfo) if (wanted(v.name ?? "")) seeds.set(v.name ?? "", { dims: dimsOf(v), dtype: elem(v) });
    for (const v of graph.realInputs()) {
      const name = v.name ?? "";
      if (!wanted(name)) continue;
      const override = options.overrides?.[name];
      let dims = override ? [...override] : dimsOf(v);
      if (dims && !override && options.symbolicDim !== undefined) dims = dims.map((d) => d ?? options.symbolicDim);
      const symbols = dims?.some((d) => d === undefined) ? dims.map((d, i) => (d === undefined ? `${name}#${i}` : undefined)) : undefined;
      seeds.set(name, { dims, dtype: elem(v), symbols });
    }
    return seeds;
  }

  private inferFrom(start: number): void {
    const nodes = this.graph.nodes;
    for (let i = start; i < nodes.length; i++) {
      const node = nodes[i]!;
      try {
        inferNode(node, this.shapes, this.options, this.values);
        inferSymbols(node, this.shapes, this.options, this.values);
        inferValue(node, this.shapes, this.options, this.values);
      } catch {
        // A node we cannot reason about leaves its outputs unknown.
      }
    }
  }

  /**
   * The graph changed: `tensors` were produced, valued or recorded differently (outputs of removed
   * and added nodes, initializers added or dropped, value_info changed) and `nodes` are new or read
   * other inputs. Infers again from the first node that is one of `nodes` or reads or writes one of
   * `tensors`; returns how many nodes were inferred again.
   */
  update(tensors: ReadonlySet<string>, nodes: ReadonlySet<Node>): number {
    const list = this.graph.nodes;
    let first = list.length;
    for (let i = 0; i < list.length && first === list.length; i++) {
      const n = list[i]!;
      if (nodes.has(n) || n.inputs.some((t) => tensors.has(t)) || n.outputs.some((t) => tensors.has(t))) first = i;
    }
    const stale = new Set(tensors);
    for (let i = first; i < list.length; i++) for (const o of list[i]!.outputs) if (o) stale.add(o);
    for (const t of stale) {
      this.shapes.delete(t);
      this.values.delete(t);
    }
    for (const [name, info] of this.seeds(stale)) this.shapes.set(name, info);
    this.inferFrom(first);
    return list.length - first;
  }
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
    // At stride 1 the total pad is (k−1)·d whatever the size; at stride s it depends on size mod s.
    if (size === undefined && strides[i] !== 1) return undefined;
    const total = size === undefined
      ? (kernel[i]! - 1) * dilations[i]!
      : Math.max(0, (Math.ceil(size / strides[i]!) - 1) * strides[i]! + (kernel[i]! - 1) * dilations[i]! + 1 - size);
    const small = Math.floor(total / 2), big = total - small;
    pads[i] = autoPad === "SAME_UPPER" ? small : big;
    pads[i + kernel.length] = autoPad === "SAME_UPPER" ? big : small;
  }
  return pads;
}

/**
 * Entries of small 1-D/scalar integer tensors: a number, a dim symbol (the entry equals that
 * run-time dim: Shape of a tensor with symbolic dims), or undefined where nothing is known.
 */
type Entry = number | string | undefined;
type ValueMap = Map<string, Entry[]>;

const MAX_VALUE_LENGTH = 64;

const num = (e: Entry): number | undefined => (typeof e === "number" ? e : undefined);

function valueOf(name: string | undefined, options: ShapeOptions, values: ValueMap): Entry[] | undefined {
  if (!name) return undefined;
  return values.get(name) ?? options.constant?.(name);
}

/** The entries that are numbers (symbols and unknowns as undefined). */
function numbersOf(name: string | undefined, options: ShapeOptions, values: ValueMap): (number | undefined)[] | undefined {
  return valueOf(name, options, values)?.map(num);
}

/** Symbols of the unknown dims of an output, from its inputs', for ops that keep or move dims. */
function inferSymbols(node: Node, shapes: ShapeMap, options: ShapeOptions, values: ValueMap): void {
  const out = node.outputs[0] ? shapes.get(node.outputs[0]) : undefined;
  if (!out?.dims || out.symbols || !out.dims.some((d) => d === undefined) || !node.isDefaultDomain) return;
  const rank = out.dims.length;
  const input = (i: number) => shapes.get(node.inputs[i] ?? "");
  const x = input(0);
  const xs = x?.symbols, xd = x?.dims;
  let symbols: (string | undefined)[] | undefined;
  const op = node.opType;
  if (SAME_SHAPE.has(op) || op === "Cast") symbols = xd?.length === rank ? xs : undefined;
  else if (BROADCAST.has(op)) {
    // A position keeps a symbol when every input with an unknown dim there carries it and the others have 1.
    symbols = out.dims.map((_, i) => {
      let sym: string | undefined;
      for (let k = 0; k < node.inputs.length; k++) {
        const s = input(k);
        if (!s?.dims) return undefined;
        const j = i - (rank - s.dims.length);
        if (j < 0 || s.dims[j] === 1) continue;
        const here = s.dims[j] === undefined ? s.symbols?.[j] : undefined;
        if (!here || (sym !== undefined && sym !== here)) return undefined;
        sym = here;
      }
      return sym;
    });
  } else if (["Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "Gemm"].includes(op))
    symbols = out.dims.map((_, i) => (i === 0 && node.int("transA", 0) === 0 ? xs?.[0] : undefined));
  else if (op === "MatMul" && xd && xd.length === rank && (input(1)?.dims?.length ?? 0) <= 2)
    symbols = out.dims.map((_, i) => (i < rank - 1 ? xs?.[i] : undefined));
  else if (op === "Transpose" && xd) {
    const perm = node.ints("perm", xd.map((_, i) => xd.length - 1 - i));
    symbols = perm.map((p) => xs?.[p]);
  } else if (op === "Flatten" && xd) {
    const a = node.int("axis", 1), axis = a < 0 ? a + xd.length : a;
    // [N, C, H, W] → [N, C·H·W]: a side keeps the symbol of its one unknown dim when the rest multiply to 1.
    const side = (lo: number, hi: number) => {
      const unknown = xd.slice(lo, hi).map((d, i) => (d === undefined ? xs?.[lo + i] ?? null : undefined)).filter((v) => v !== undefined);
      const rest = xd.slice(lo, hi).reduce<number>((p, d) => p * (d ?? 1), 1);
      return unknown.length === 1 && unknown[0] !== null && rest === 1 ? (unknown[0] as string) : undefined;
    };
    symbols = [side(0, axis), side(axis, xd.length)];
  } else if ((op === "Concat" || op === "Slice" || op === "Gather" || op === "Squeeze" || op === "Unsqueeze") && xd && xd.length === rank) {
    // Same rank and the dim unchanged in value: the symbol stays (Concat: every input carries it).
    symbols = out.dims.map((d, i) => {
      if (d !== undefined || xd[i] !== undefined) return undefined;
      if (op === "Concat" && !node.inputs.every((_, k) => input(k)?.symbols?.[i] === xs?.[i])) return undefined;
      return op === "Concat" || op === "Slice" ? (sliced(node, i, rank, options, values) ? undefined : xs?.[i]) : undefined;
    });
  }
  if (symbols?.some((v) => v !== undefined)) out.symbols = symbols;
}

/**
 * A Slice's starts, ends, axes and steps (inputs from opset 10, attributes before). Axes and steps
 * take their defaults only when absent: present but unknown stays undefined.
 */
function sliceArgs(node: Node, options: ShapeOptions, values: ValueMap) {
  const tensors = node.inputs.length > 1;
  const arg = (i: number, attrName: string) => (tensors ? numbersOf(node.inputs[i], options, values) : node.ints(attrName));
  const starts = arg(1, "starts"), ends = arg(2, "ends");
  const axesGiven = tensors ? !!node.inputs[3] : node.attr("axes") !== undefined;
  const stepsGiven = tensors && !!node.inputs[4];
  const axes = axesGiven ? arg(3, "axes") : starts?.map((_, i) => i);
  const steps = stepsGiven ? numbersOf(node.inputs[4], options, values) : starts?.map(() => 1);
  return { starts, ends, axes, steps };
}

/** Could axis `i` of a Concat/Slice output differ from the input's? (Concat: its axis; Slice: a listed or unknown axis.) */
function sliced(node: Node, i: number, rank: number, options: ShapeOptions, values: ValueMap): boolean {
  if (node.opType === "Concat") {
    const a = node.int("axis", 0);
    return (a < 0 ? a + rank : a) === i;
  }
  const { axes } = sliceArgs(node, options, values);
  return !axes || axes.some((a) => a === undefined || (a < 0 ? a + rank : a) === i);
}

function inferValue(node: Node, shapes: ShapeMap, options: ShapeOptions, values: ValueMap): void {
  if (!node.isDefaultDomain) return;
  const out = node.outputs[0];
  if (!out) return;
  const val = (i: number) => valueOf(node.inputs[i], options, values);
  // Values are flat lists: kept only for scalars and 1-D tensors (a 2-D value sliced or
  // concatenated as if flat would be wrong).
  const rank = shapes.get(out)?.dims?.length;
  const set = (v: Entry[] | undefined) => {
    if (v && v.length <= MAX_VALUE_LENGTH && rank !== undefined && rank <= 1) values.set(out, v);
  };
  switch (node.opType) {
    case "Shape": {
      const info = shapes.get(node.inputs[0] ?? "");
      const dims = info?.dims;
      if (!dims) return;
      const r = dims.length, clamp = (a: number) => Math.min(r, Math.max(0, a < 0 ? a + r : a));
      const entries: Entry[] = dims.map((d, i) => d ?? info.symbols?.[i]);
      return set(entries.slice(clamp(node.int("start", 0)), clamp(node.int("end", r))));
    }
    case "Identity": case "Squeeze": case "Unsqueeze":
      return set(val(0));
    case "Cast": {
      // Followed only where the value survives exactly as computed here: int64, int32 within
      // range, float32 (rounded), double. Narrower types wrap or round: not followed.
      const v = val(0), to = node.int("to", 0);
      const convert = (x: number | string): Entry => {
        if (typeof x === "string") return to === DataType.INT64 ? x : undefined; // a dim stays itself in int64
        if (to === DataType.INT64) return Math.trunc(x);
        if (to === DataType.INT32) return Math.abs(x) < 2 ** 31 ? Math.trunc(x) : undefined;
        if (to === DataType.FLOAT) return Math.fround(x);
        if (to === DataType.DOUBLE) return x;
        return undefined;
      };
      return set(v?.map((x) => (x === undefined ? undefined : convert(x))));
    }
    case "Gather": {
      const v = val(0), idx = numbersOf(node.inputs[1], options, new Map());
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
        const x = num(a[a.length === 1 ? 0 : i]), y = num(b[b.length === 1 ? 0 : i]);
        return x === undefined || y === undefined || (node.opType === "Div" && y === 0) ? undefined : f(x, y);
      }));
    }
    case "Slice": {
      const v = val(0);
      const { starts, ends, axes, steps } = sliceArgs(node, options, values);
      if (!v || !starts || !ends || !axes || !steps || starts.length !== 1 || axes[0] !== 0 && axes[0] !== -1 || steps[0] !== 1) return;
      const n = v.length, clamp = (a: number) => Math.min(n, Math.max(0, a < 0 ? a + n : a));
      if (starts[0] === undefined || ends[0] === undefined) return;
      return set(v.slice(clamp(starts[0]), clamp(ends[0])));
    }
    default:
      return;
  }
}

/**
 * The −1 of a Reshape target: element count ÷ the other entries. With unknown dims on both sides
 * it is still known when the unknown dims are the same symbols (the same run-time dims) on both.
 */
function inferMinusOne(xd: Dims | undefined, xs: (string | undefined)[] | undefined, dims: Dims, symbols: (string | undefined)[], neg: number): number | undefined {
  if (!xd) return undefined;
  let inKnown = 1, outKnown = 1;
  const inSyms: string[] = [], outSyms: string[] = [];
  for (let i = 0; i < xd.length; i++) {
    if (xd[i] !== undefined) inKnown *= xd[i]!;
    else if (xs?.[i]) inSyms.push(xs[i]!);
    else return undefined;
  }
  for (let i = 0; i < dims.length; i++) {
    if (i === neg) continue;
    if (dims[i] !== undefined) outKnown *= dims[i]!;
    else if (symbols[i]) outSyms.push(symbols[i]!);
    else return undefined;
  }
  const same = inSyms.length === outSyms.length && [...inSyms].sort().every((v, i) => v === [...outSyms].sort()[i]);
  if (!same || outKnown === 0 || inKnown % outKnown !== 0) return undefined;
  return inKnown / outKnown;
}

function inferNode(node: Node, shapes: ShapeMap, options: ShapeOptions, values: ValueMap): void {
  const inp = (i: number) => shapes.get(node.inputs[i] ?? "");
  const x = inp(0);
  const set = (dims: Dims | undefined, dtype = x?.dtype, i = 0) => {
    if (node.outputs[i]) shapes.set(node.outputs[i]!, { dims, dtype });
  };
  const op = node.opType;
  if (!node.isDefaultDomain) return;
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
      const xs = x?.symbols;
      // Each target entry: a number (0 copies the input's dim), or a symbol (that run-time dim).
      const copy = (v: Entry, i: number) => v === 0 && !allowZero;
      const dims: Dims = target.map((v, i) => (copy(v, i) ? xd?.[i] : num(v)));
      const symbols = target.map((v, i) => (typeof v === "string" ? v : copy(v, i) && xd?.[i] === undefined ? xs?.[i] : undefined));
      const neg = dims.indexOf(-1);
      if (neg >= 0) dims[neg] = inferMinusOne(xd, xs, dims, symbols, neg);
      set(dims);
      const info = node.outputs[0] ? shapes.get(node.outputs[0]) : undefined;
      if (info && symbols.some((v, i) => v !== undefined && dims[i] === undefined)) info.symbols = symbols.map((v, i) => (dims[i] === undefined ? v : undefined));
      return;
    }
    case "Resize": {
      // Resize-11+ reads (X, roi, scales, sizes). The output keeps X's rank; a dim is known from
      // `sizes` (a number, or a symbol: that run-time dim), or from a scale whose product with a
      // known dim is an integer (no float32 rounding to guess). `axes` and a kept aspect ratio
      // (opset 18) change what `sizes` means, and a two-input Resize-10 is left at rank only.
      if (!xd) return set(undefined);
      const rankOnly = () => set(xd.map(() => undefined));
      const stretch = node.string("keep_aspect_ratio_policy", "stretch") === "stretch";
      if (node.inputs.length < 3 || node.attr("axes") !== undefined || !stretch) return rankOnly();
      const sizes = valueOf(node.inputs[3], options, values);
      if (node.inputs[3] && sizes?.length === xd.length) {
        set(sizes.map(num));
        const info = node.outputs[0] ? shapes.get(node.outputs[0]) : undefined;
        if (info && sizes.some((v) => typeof v === "string")) info.symbols = sizes.map((v) => (typeof v === "string" ? v : undefined));
        return;
      }
      const scales = node.inputs[2] ? options.constant?.(node.inputs[2]) : undefined;
      if (node.inputs[3] || !scales || scales.length !== xd.length || node.string("coordinate_transformation_mode", "half_pixel") === "tf_crop_and_resize") return rankOnly();
      return set(xd.map((d, i) => (d !== undefined && Number.isInteger(d * scales[i]!) ? d * scales[i]! : scales[i] === 1 ? d : undefined)));
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
      const { starts, ends, axes, steps } = sliceArgs(node, options, values);
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
