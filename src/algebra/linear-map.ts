// One representation for "a conv-like linear map" (docs/rules.md §5): y = W * x + b with stride,
// pads, dilation and groups. Every fold builds, combines and emits these; all values are float64.
import { kernelArray } from "./scratch.js";

export type Pair = [number, number];
/** ONNX order for 2-D: [top, left, bottom, right]. */
export type Pads = [number, number, number, number];

/**
 * Kernel values. Inputs may be float32 views of a model's weights (read, never written: reading a
 * float32 into float64 arithmetic is exact, and it saves a decoded copy of every weight); every
 * kernel the algebra computes is float64.
 */
export type KernelData = Float64Array | Float32Array;

export interface LinearMap {
  outChannels: number;
  inChannels: number;
  groups: number;
  /** Kernel taps per axis. */
  kh: number;
  kw: number;
  /** [outChannels, inChannels/groups, kh, kw], row-major. */
  kernel: KernelData;
  bias: Float64Array;
  stride: Pair;
  pads: Pads;
  dilation: Pair;
}

/** A reason a rule does not apply: data, not a silent null (feeds --explain and the tests). */
export interface Refusal {
  refused: string;
  /** Not a candidate at all (a Relu, an integer index tensor): nothing worth explaining. */
  quiet?: boolean;
}

export function isRefusal(x: unknown): x is Refusal {
  return typeof x === "object" && x !== null && "refused" in x;
}

export const refuse = (reason: string): Refusal => ({ refused: reason });
export const notCandidate = (reason: string): Refusal => ({ refused: reason, quiet: true });

export function kernelIndex(m: LinearMap, o: number, c: number, i: number, j: number): number {
  return ((o * (m.inChannels / m.groups) + c) * m.kh + i) * m.kw + j;
}

/** Everything about a map but its numbers. */
export type MapGeometry = Omit<LinearMap, "kernel" | "bias">;

/**
 * A map whose kernel and bias are computed on first read (then kept). Its geometry is known now;
 * the computed map must agree with it.
 */
export function lazyMap(geometry: MapGeometry, compute: () => LinearMap, inputs: LinearMap[] = []): LinearMap {
  let done: LinearMap | undefined;
  const force = (): LinearMap => {
    if (!done) {
      computeInputsFirst(m);
      done = compute();
      pending.delete(m);
      for (const k of ["outChannels", "inChannels", "groups", "kh", "kw"] as const)
        if (done[k] !== geometry[k]) throw new Error(`lazy map: computed ${k} ${done[k]} differs from the planned ${geometry[k]}`);
    }
    return done;
  };
  const m = { ...geometry } as LinearMap;
  Object.defineProperty(m, "kernel", { enumerable: true, get: () => force().kernel });
  Object.defineProperty(m, "bias", { enumerable: true, get: () => force().bias });
  pending.add(m);
  if (inputs.length > 0) lazyInputs.set(m, inputs);
  return m;
}

/** Lazy maps not computed yet. */
const pending = new WeakSet<LinearMap>();
/** The maps a lazy map's computation reads (so they can be computed before it). */
const lazyInputs = new WeakMap<LinearMap, LinearMap[]>();

/**
 * Compute the pending maps `m` reads, deepest first, with an explicit stack: a region's lazy maps
 * chain as long as the region, and computing each one inside its reader's would recurse that deep.
 */
function computeInputsFirst(m: LinearMap): void {
  const stack: { map: LinearMap; at: number }[] = [{ map: m, at: 0 }];
  const seen = new Set<LinearMap>([m]);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const inputs = lazyInputs.get(top.map) ?? [];
    if (top.at < inputs.length) {
      const next = inputs[top.at++]!;
      if (pending.has(next) && !seen.has(next)) {
        seen.add(next);
        stack.push({ map: next, at: 0 });
      }
      continue;
    }
    stack.pop();
    if (top.map !== m) void top.map.kernel; // its inputs are computed: this reads no deeper
  }
}

/**
 * A map whose kernel can be computed one output channel at a time (affine.ts, sum.ts): a region's
 * kernel is then written channel by channel into its stored dtype (rules/linear/emit.ts), so no
 * kernel-sized float64 array is made for it. The whole kernel, when read, is the same rows.
 */
export interface ChannelRows {
  /** The kernel values of output channel `o` (kernel.length / outChannels of them) into `row`. */
  row(o: number, row: Float64Array): void;
  /** The bias (reads no kernel). */
  bias(): Float64Array;
}

const rowSources = new WeakMap<LinearMap, ChannelRows & { depth: number }>();

/**
 * How deep a row computation may call into its inputs' rows (a chain of affines as long as the
 * graph would recurse as deep): past it, the inputs are computed whole first, as a kernel each.
 */
const MAX_ROW_DEPTH = 16;

/** A lazy map computed by rows: reading its kernel computes every row (in a kernel-sized array). */
export function rowMap(geometry: MapGeometry, rows: ChannelRows, inputs: LinearMap[]): LinearMap {
  let depth = 1 + Math.max(0, ...inputs.map((i) => channelRows(i)?.depth ?? 0));
  if (depth > MAX_ROW_DEPTH) {
    for (const i of inputs) if (channelRows(i)) void i.kernel;
    depth = 1;
  }
  const m = lazyMap(geometry, () => {
    const size = geometry.outChannels * (geometry.inChannels / geometry.groups) * geometry.kh * geometry.kw;
    const per = (size / geometry.outChannels) | 0;
    const kernel = kernelArray(size);
    for (let o = 0; o < geometry.outChannels; o++) rows.row(o, kernel.subarray(o * per, (o + 1) * per));
    return { ...geometry, kernel, bias: rows.bias() };
  }, inputs);
  rowSources.set(m, { row: rows.row, bias: rows.bias, depth });
  return m;
}

/** The rows of a map not computed yet, if it is computed by rows (once computed: read its kernel). */
export function channelRows(m: LinearMap): (ChannelRows & { depth: number }) | undefined {
  return pending.has(m) ? rowSources.get(m) : undefined;
}

/** Kernel values per output channel. */
export function rowLength(m: MapGeometry): number {
  return ((m.inChannels / m.groups) * m.kh * m.kw) | 0;
}

/** A lazy map not computed yet (so work on it can be deferred too). */
export function isPending(m: LinearMap): boolean {
  return pending.has(m);
}

/** The geometry of a map (plain fields: reading them never computes a lazy map). */
export function geometryOf(m: LinearMap): MapGeometry {
  return { outChannels: m.outChannels, inChannels: m.inChannels, groups: m.groups, kh: m.kh, kw: m.kw, stride: m.stride, pads: m.pads, dilation: m.dilation };
}

export function makeMap(p: Omit<LinearMap, "kernel" | "bias"> & Partial<Pick<LinearMap, "kernel" | "bias">>): LinearMap {
  const size = p.outChannels * (p.inChannels / p.groups) * p.kh * p.kw;
  const m: LinearMap = { ...p, kernel: p.kernel ?? kernelArray(size), bias: p.bias ?? new Float64Array(p.outChannels) };
  if (m.kernel.length !== size) throw new Error(`kernel has ${m.kernel.length} values, expected ${size}`);
  // Dilation along a one-tap axis means nothing: normalize so such maps combine freely.
  if (m.kh === 1) m.dilation = [1, m.dilation[1]];
  if (m.kw === 1) m.dilation = [m.dilation[0], 1];
  return m;
}

/** docs/rules.md §7.3: x = I * x, a depthwise 1x1 kernel of ones (grouping as fine as possible). */
export function identityMap(channels: number): LinearMap {
  return makeMap({
    outChannels: channels, inChannels: channels, groups: channels, kh: 1, kw: 1,
    kernel: new Float64Array(channels).fill(1), stride: [1, 1], pads: [0, 0, 0, 0], dilation: [1, 1],
  });
}

export function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Re-express a map with `groups` groups using a coarser grouping `g` (g divides groups): the
 * block-diagonal kernel is expanded with zeros. Exact; used only when branches disagree.
 */
export function regroup(m: LinearMap, g: number): LinearMap {
  if (g === m.groups) return m;
  if (m.groups % g !== 0) throw new Error(`cannot regroup ${m.groups} groups into ${g}`);
  const outPerOld = (m.outChannels / m.groups) | 0, inPerOld = (m.inChannels / m.groups) | 0;
  const outPerNew = (m.outChannels / g) | 0, inPerNew = (m.inChannels / g) | 0;
  const taps = (m.kh * m.kw) | 0;
  const kernel = kernelArray(m.outChannels * inPerNew * taps);
  for (let o = 0; o < m.outChannels; o++) {
    const oldGroup = Math.floor(o / outPerOld);
    const newGroup = Math.floor(o / outPerNew);
    for (let cl = 0; cl < inPerOld; cl++) {
      const c = oldGroup * inPerOld + cl; // global input channel
      const newLocal = c - newGroup * inPerNew;
      const src = (o * inPerOld + cl) * taps;
      const dst = (o * inPerNew + newLocal) * taps;
      for (let t = 0; t < taps; t++) kernel[dst + t] = m.kernel[src + t]!;
    }
  }
  return { ...m, groups: g, kernel };
}

/** Multiply-accumulates per output pixel per image (for cost reports). */
export function macsPerPixel(m: LinearMap): number {
  return m.outChannels * (m.inChannels / m.groups) * m.kh * m.kw;
}

export function outputSize(inSize: number, k: number, d: number, s: number, padBegin: number, padEnd: number): number {
  return Math.floor((inSize + padBegin + padEnd - ((k - 1) * d + 1)) / s) + 1;
}
