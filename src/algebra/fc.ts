// Rule 8 (RepMLP locality injection): on a fixed H×W input a conv with zero padding is a matrix on
// the flattened tensor, M[(o,i,j), (c,i',j')] = W[o, c, i'−i·s+p_top, j'−j·s+p_left] (0 outside
// the kernel), and its bias is b[o] at every (o,i,j). Added to a fully connected layer over the
// same flattened input, the conv disappears into the FC's matrix.
import type { LinearMap } from "./linear-map.js";
import { outputSize } from "./linear-map.js";

export interface DenseMatrix {
  rows: number; // O·Ho·Wo
  cols: number; // C·H·W
  data: Float64Array; // row-major [rows, cols]
  bias: Float64Array; // [rows]
}

export function convToMatrix(m: LinearMap, H: number, W: number): DenseMatrix {
  const [sh, sw] = m.stride, [dh, dw] = m.dilation, [pt, pl, pb, pr] = m.pads;
  const Ho = outputSize(H, m.kh, dh, sh, pt, pb), Wo = outputSize(W, m.kw, dw, sw, pl, pr);
  const C = m.inChannels, O = m.outChannels;
  const inPer = C / m.groups, outPer = O / m.groups;
  const rows = O * Ho * Wo, cols = C * H * W;
  const data = new Float64Array(rows * cols);
  const bias = new Float64Array(rows);
  for (let o = 0; o < O; o++) {
    const g = Math.floor(o / outPer);
    for (let i = 0; i < Ho; i++)
      for (let j = 0; j < Wo; j++) {
        const row = (o * Ho + i) * Wo + j;
        bias[row] = m.bias[o]!;
        for (let cl = 0; cl < inPer; cl++) {
          const c = g * inPer + cl;
          for (let u = 0; u < m.kh; u++) {
            const y = i * sh - pt + u * dh;
            if (y < 0 || y >= H) continue; // zero padding contributes nothing
            for (let v = 0; v < m.kw; v++) {
              const x = j * sw - pl + v * dw;
              if (x < 0 || x >= W) continue;
              data[row * cols + (c * H + y) * W + x]! += m.kernel[((o * inPer + cl) * m.kh + u) * m.kw + v]!;
            }
          }
        }
      }
  }
  return { rows, cols, data, bias };
}
