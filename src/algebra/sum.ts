// Rule 2: a sum of convs on the same input is one conv, Σ (W_i * x + b_i) = (Σ Ŵ_i) * x + Σ b_i,
// where Ŵ_i is W_i embedded in the union window. Exact only when the branches' output grids are
// identical for every input size: same stride, same dilation (on axes with more than one tap) and
// the same `pad_begin + pad_end − span` per axis, so the windows line up at both borders.
import { gcd, makeMap, refuse, regroup, type LinearMap, type Refusal } from "./linear-map.js";

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
  const perOut = (out.inChannels / groups);
  maps.forEach((original, idx) => {
    const m = regroup(original, groups);
    const dy = rows.offsets[idx]!, dx = cols.offsets[idx]!;
    for (let o = 0; o < m.outChannels; o++) {
      out.bias[o]! += m.bias[o]!;
      for (let c = 0; c < perOut; c++)
        for (let i = 0; i < m.kh; i++)
          for (let j = 0; j < m.kw; j++) {
            const src = ((o * perOut + c) * m.kh + i) * m.kw + j;
            const dst = ((o * perOut + c) * out.kh + i + dy) * out.kw + j + dx;
            out.kernel[dst]! += m.kernel[src]!;
          }
    }
  });
  return out;
}

/** −map: for Sub(a, b) = a + (−b). */
export function negate(m: LinearMap): LinearMap {
  return { ...m, kernel: m.kernel.map((v) => -v), bias: m.bias.map((v) => -v) };
}
