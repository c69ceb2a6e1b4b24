// Brute-force float64 convolution: the ground truth the algebra is tested against. Slow on purpose
// (no cleverness to share bugs with the code under test); pad value per channel supported.
import type { LinearMap } from "./linear-map.js";

export interface Image {
  channels: number;
  height: number;
  width: number;
  data: Float64Array; // [C, H, W]
}

export function applyMap(m: LinearMap, x: Image, padValue?: Float64Array): Image {
  const [sh, sw] = m.stride, [dh, dw] = m.dilation, [pt, pl, pb, pr] = m.pads;
  const H = Math.floor((x.height + pt + pb - ((m.kh - 1) * dh + 1)) / sh) + 1;
  const W = Math.floor((x.width + pl + pr - ((m.kw - 1) * dw + 1)) / sw) + 1;
  const out = new Float64Array(m.outChannels * H * W);
  const inPer = m.inChannels / m.groups, outPer = m.outChannels / m.groups;
  for (let o = 0; o < m.outChannels; o++) {
    const g = Math.floor(o / outPer);
    for (let i = 0; i < H; i++)
      for (let j = 0; j < W; j++) {
        let acc = m.bias[o]!;
        for (let cl = 0; cl < inPer; cl++) {
          const c = g * inPer + cl;
          for (let u = 0; u < m.kh; u++)
            for (let v = 0; v < m.kw; v++) {
              const y = i * sh - pt + u * dh, xx = j * sw - pl + v * dw;
              const inside = y >= 0 && y < x.height && xx >= 0 && xx < x.width;
              const val = inside ? x.data[(c * x.height + y) * x.width + xx]! : padValue ? padValue[c]! : 0;
              acc += m.kernel[((o * inPer + cl) * m.kh + u) * m.kw + v]! * val;
            }
        }
        out[(o * H + i) * W + j] = acc;
      }
  }
  return { channels: m.outChannels, height: H, width: W, data: out };
}

export function addImages(a: Image, b: Image): Image {
  if (a.channels !== b.channels || a.height !== b.height || a.width !== b.width) throw new Error("shape mismatch");
  return { ...a, data: a.data.map((v, i) => v + b.data[i]!) };
}

export function maxAbsDiff(a: Image, b: Image): number {
  if (a.data.length !== b.data.length || a.height !== b.height) return Infinity;
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i]! - b.data[i]!));
  return m;
}
