// docs/rules.md §7.2: a sum of convs on the same input is one conv, Σ (W_i * x + b_i) = (Σ Ŵ_i) * x + Σ b_i,
// where Ŵ_i is W_i embedded in the union window. Exact only when the branches' output grids are
// identical for every input size: same stride, same dilation (on axes with more than one tap) and
// the same `pad_begin + pad_end − span` per axis, so the windows line up at both borders.
import { scaledView } from "./affine.js";
import { kernelArray } from "./scratch.js";
import { channelRows, gcd, refuse, rowLength, rowMap, type ChannelRows, type KernelData, type LinearMap, type MapGeometry, type Refusal } from "./linear-map.js";

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
  const geometry = {
    outChannels: first.outChannels, inChannels: first.inChannels, groups,
    kh: rows.taps, kw: cols.taps, stride: [...first.stride] as [number, number],
    pads: [rows.padBegin, cols.padBegin, rows.padEnd, cols.padEnd] as [number, number, number, number],
    dilation: [rows.dilation, cols.dilation] as [number, number],
  };
  // makeMap's normalization (dilation along a one-tap axis is 1), without allocating a kernel.
  if (geometry.kh === 1) geometry.dilation = [1, geometry.dilation[1]];
  if (geometry.kw === 1) geometry.dilation = [geometry.dilation[0], 1];
  return rowMap(geometry, sumRows(geometry, maps, rows.offsets, cols.offsets), maps);
}

/**
 * Each map's kernel at its (row, col) tap offset inside the union kernel, one output channel at a
 * time; biases added. A map with finer groups than the union adds its block of input channels (the
 * zeros regrouping would put around it add nothing: a row starts at +0 and a sum of terms that
 * starts at +0 is never −0, so adding +0 leaves it as it is).
 */
function sumRows(out: MapGeometry, maps: LinearMap[], rowOffsets: number[], colOffsets: number[]): ChannelRows {
  const OH = out.kh | 0, OW = out.kw | 0, per = rowLength(out);
  const outPerGroup = (out.outChannels / out.groups) | 0, inPerGroup = (out.inChannels / out.groups) | 0;
  let scratch: Float64Array | undefined;
  return {
    row(o, row) {
      row.fill(0);
      const group = Math.floor(o / outPerGroup);
      for (let idx = 0; idx < maps.length; idx++) {
        const m = maps[idx]!;
        const mPer = rowLength(m);
        const mInPer = (m.inChannels / m.groups) | 0;
        // The input channels of m's row for o, as a channel offset inside the union row.
        const channel0 = (Math.floor(o / (m.outChannels / m.groups)) * mInPer - group * inPerGroup) | 0;
        const scaled = scaledView(m);
        if (scaled) {
          // base · s added straight from base's kernel (or its row): the products the scaled row would hold.
          const baseRows = channelRows(scaled.base);
          if (!baseRows) {
            addRow(row, OH, OW, scaled.base.kernel, (o * mPer) | 0, m.kh | 0, m.kw | 0, mInPer, channel0 * OH * OW, rowOffsets[idx]! | 0, colOffsets[idx]! | 0, scaled.scale[o]!);
            continue;
          }
          if (!scratch || scratch.length < mPer) scratch = new Float64Array(Math.max(mPer, per));
          const baseRow = scratch.subarray(0, mPer);
          baseRows.row(o, baseRow);
          addRow(row, OH, OW, baseRow, 0, m.kh | 0, m.kw | 0, mInPer, channel0 * OH * OW, rowOffsets[idx]! | 0, colOffsets[idx]! | 0, scaled.scale[o]!);
          continue;
        }
        const inner = channelRows(m);
        let src: KernelData, from: number;
        if (inner) {
          if (!scratch || scratch.length < mPer) scratch = new Float64Array(Math.max(mPer, per));
          src = scratch.subarray(0, mPer);
          inner.row(o, src as Float64Array);
          from = 0;
        } else {
          src = m.kernel;
          from = (o * mPer) | 0;
        }
        addRow(row, OH, OW, src, from, m.kh | 0, m.kw | 0, mInPer, channel0 * OH * OW, rowOffsets[idx]! | 0, colOffsets[idx]! | 0, 1);
      }
    },
    bias() {
      const bias = new Float64Array(out.outChannels);
      for (const m of maps) {
        const inner = channelRows(m);
        const b = inner ? inner.bias() : m.bias;
        for (let o = 0; o < out.outChannels; o++) bias[o] = bias[o]! + b[o]!;
      }
      return bias;
    },
  };
}

/**
 * Add src · s into dst at a (dy, dx) tap offset. Each product is a double, then added (JavaScript
 * has no fused multiply-add); s = 1 adds src itself (x · 1 = x for every double, ±0 included).
 * A monomorphic hot loop on integers (divisions would make doubles and slow V8's indexing).
 */
function addRow(dst: Float64Array, OH: number, OW: number, src: KernelData, from: number, KH: number, KW: number, channels: number, at: number, dy: number, dx: number, s: number): void {
  if (src instanceof Float32Array) addRow32(dst, OH, OW, src, from, KH, KW, channels, at, dy, dx, s);
  else addRow64(dst, OH, OW, src, from, KH, KW, channels, at, dy, dx, s);
}

// The same loop twice, one per source type: a stored float32 weight and a computed float64 row
// through one loop make its reads polymorphic (several times slower).
function addRow32(dst: Float64Array, OH: number, OW: number, src: Float32Array, from: number, KH: number, KW: number, channels: number, at: number, dy: number, dx: number, s: number): void {
  if (KH === OH && KW === OW) {
    const n = (channels * KH * KW) | 0;
    for (let i = 0; i < n; i++) dst[at + i] = dst[at + i]! + src[from + i]! * s;
    return;
  }
  const srcStride = (KH * KW) | 0, dstStride = (OH * OW) | 0;
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < KH; i++) {
      const s0 = (from + c * srcStride + i * KW) | 0;
      const d0 = (at + c * dstStride + (i + dy) * OW + dx) | 0;
      for (let j = 0; j < KW; j++) dst[d0 + j] = dst[d0 + j]! + src[s0 + j]! * s;
    }
  }
}

function addRow64(dst: Float64Array, OH: number, OW: number, src: Float64Array, from: number, KH: number, KW: number, channels: number, at: number, dy: number, dx: number, s: number): void {
  if (KH === OH && KW === OW) {
    const n = (channels * KH * KW) | 0;
    for (let i = 0; i < n; i++) dst[at + i] = dst[at + i]! + src[from + i]! * s;
    return;
  }
  const srcStride = (KH * KW) | 0, dstStride = (OH * OW) | 0;
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < KH; i++) {
      const s0 = (from + c * srcStride + i * KW) | 0;
      const d0 = (at + c * dstStride + (i + dy) * OW + dx) | 0;
      for (let j = 0; j < KW; j++) dst[d0 + j] = dst[d0 + j]! + src[s0 + j]! * s;
    }
  }
}

/** −map: for Sub(a, b) = a + (−b). */
export function negate(m: LinearMap): LinearMap {
  const kernel = kernelArray(m.kernel.length);
  for (let i = 0; i < kernel.length; i++) kernel[i] = -m.kernel[i]!;
  return { ...m, kernel, bias: m.bias.map((v) => -v) };
}
