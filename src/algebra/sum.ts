// docs/rules.md §7.2: a sum of convs on the same input is one conv, Σ (W_i * x + b_i) = (Σ Ŵ_i) * x + Σ b_i,
// where Ŵ_i is W_i embedded in the union window. Exact only when the branches' output grids are
// identical for every input size: same stride, same dilation (on axes with more than one tap) and
// the same `pad_begin + pad_end − span` per axis, so the windows line up at both borders.
import { kernelArray } from "./scratch.js";
import { gcd, makeMap, refuse, regroup, type KernelData, type LinearMap, type Refusal } from "./linear-map.js";

interface AxisPlan {
  dilation: number;
  padBegin: number;
  padEnd: number;
  taps: number;
  /** Offset (in taps) of each map's kernel inside the union kernel. */
  offsets: number[];
}

function planAxis(maps: LinearMap[], axis: 0 | 1): AxisPlan | Refusal {
  const name = axis === 0 ? "rows" : "columns";
  const k = (m: LinearMap) => (axis === 0 ? m.kh : m.kw);
  const d = (m: LinearMap) => m.dilation[axis];
  const begin = (m: LinearMap) => m.pads[axis];
  const end = (m: LinearMap) => m.pads[axis + 2]!;
  const dilations = new Set(maps.filter((m) => k(m) > 1).map(d));
  if (dilations.size > 1) return refuse(`branches have different dilations along ${name} (${[...dilations].join(", ")})`);
  const dilation = dilations.size ? [...dilations][0]! : 1;
  const span = (m: LinearMap) => (k(m) - 1) * dilation + 1;
  const extra = new Set(maps.map((m) => begin(m) + end(m) - span(m)));
  if (extra.size > 1) return refuse(`branch windows do not line up along ${name} (pads and kernel sizes give different output grids)`);
  const padBegin = Math.max(...maps.map(begin));
  const padEnd = Math.max(...maps.map(end));
  const unionSpan = padBegin + padEnd - [...extra][0]!;
  const offsets: number[] = [];
  for (const m of maps) {
    const shift = padBegin - begin(m);
    if (shift % dilation !== 0) return refuse(`branch offset along ${name} is not a multiple of the dilation ${dilation}`);
    offsets.push(shift / dilation);
  }
  return { dilation, padBegin, padEnd, taps: (unionSpan - 1) / dilation + 1, offsets };
}

export function sumMaps(maps: LinearMap[]): LinearMap | Refusal {
  if (maps.length === 0) throw new Error("sum of no maps");
  if (maps.length === 1) return maps[0]!;
  const [first] = maps as [LinearMap];
  for (const m of maps) {
    if (m.outChannels !== first.outChannels || m.inChannels !== first.inChannels)
      return refuse(`branches have different channel counts (${first.inChannels}→${first.outChannels} vs ${m.inChannels}→${m.outChannels})`);
    if (m.stride[0] !== first.stride[0] || m.stride[1] !== first.stride[1])
      return refuse(`branches have different strides (${first.stride} vs ${m.stride})`);
  }
  const rows = planAxis(maps, 0);
  if ("refused" in rows) return rows;
  const cols = planAxis(maps, 1);
  if ("refused" in cols) return cols;
  // Coarsest common grouping: equal groups stay grouped; a grouped + dense sum becomes dense.
  const groups = maps.map((m) => m.groups).reduce(gcd);
  const out = makeMap({
    outChannels: first.outChannels, inChannels: first.inChannels, groups,
    kh: rows.taps, kw: cols.taps, stride: [...first.stride],
    pads: [rows.padBegin, cols.padBegin, rows.padEnd, cols.padEnd],
    dilation: [rows.dilation, cols.dilation],
  });
  addInto(out, maps.map((m) => regroup(m, groups)), rows.offsets, cols.offsets);
  return out;
}

/** Accumulate each map's kernel at its (row, col) tap offset inside `out`'s kernel; add biases. */
function addInto(out: LinearMap, maps: LinearMap[], rowOffsets: number[], colOffsets: number[]): void {
  for (let idx = 0; idx < maps.length; idx++) {
    const m = maps[idx]!;
    for (let o = 0; o < m.outChannels; o++) out.bias[o] = out.bias[o]! + m.bias[o]!;
    addKernel(out.kernel, out.kh | 0, out.kw | 0, m.kernel, m.kh | 0, m.kw | 0, (m.outChannels * (out.inChannels / out.groups)) | 0, rowOffsets[idx]! | 0, colOffsets[idx]! | 0);
  }
}

// A monomorphic hot loop on integers (divisions would make doubles and slow V8's indexing).
function addKernel(dst: KernelData, OH: number, OW: number, src: KernelData, KH: number, KW: number, rows: number, dy: number, dx: number): void {
  if (KH === OH && KW === OW) {
    for (let i = 0; i < src.length; i++) dst[i] = dst[i]! + src[i]!;
    return;
  }
  const srcStride = (KH * KW) | 0, dstStride = (OH * OW) | 0;
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < KH; i++) {
      const s0 = (r * srcStride + i * KW) | 0;
      const d0 = (r * dstStride + (i + dy) * OW + dx) | 0;
      for (let j = 0; j < KW; j++) dst[d0 + j] = dst[d0 + j]! + src[s0 + j]!;
    }
  }
}

/** −map: for Sub(a, b) = a + (−b). */
export function negate(m: LinearMap): LinearMap {
  const kernel = kernelArray(m.kernel.length);
  for (let i = 0; i < kernel.length; i++) kernel[i] = -m.kernel[i]!;
  return { ...m, kernel, bias: m.bias.map((v) => -v) };
}
