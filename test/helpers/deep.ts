// A deep network shaped like a trained one: `depth` blocks of (3x3 conv + 1x1 conv) → BN → ReLU,
// each BN's running mean and variance set to the statistics its input really has on standard
// normal data (computed here in float64), as training leaves them. Off that distribution (large
// borders, large channel offsets) such a network amplifies float32 rounding layer after layer:
// its own float32 evaluations differ by 1e-4..1e-3 of the output, which is what a proof must tell
// apart from a wrong fold.
import { Net } from "./graphs.js";
import { randomArray, rng } from "./random.js";

export interface DeepNet {
  net: Net;
  /** The last tensor (not yet an output). */
  x: string;
  channels: number;
}

/** conv(x, w) with 'same' padding, one image [c, h, w], float64. */
function conv(x: Float64Array, c: number, h: number, wd: number, w: Float64Array, k: number): Float64Array {
  const out = new Float64Array(c * h * wd);
  const p = (k - 1) / 2;
  for (let o = 0; o < c; o++)
    for (let i = 0; i < c; i++)
      for (let ky = 0; ky < k; ky++)
        for (let kx = 0; kx < k; kx++) {
          const wv = w[((o * c + i) * k + ky) * k + kx]!;
          for (let y = 0; y < h; y++) {
            const sy = y + ky - p;
            if (sy < 0 || sy >= h) continue;
            for (let xx = 0; xx < wd; xx++) {
              const sx = xx + kx - p;
              if (sx < 0 || sx >= wd) continue;
              out[(o * h + y) * wd + xx]! += wv * x[(i * h + sy) * wd + sx]!;
            }
          }
        }
  return out;
}

/** Adds `depth` blocks after input "x" [1, c, size, size]. */
export function deepTrainedNet(depth: number, c = 8, size = 10, seed = 7): DeepNet {
  const net = new Net(seed);
  let x = net.input("x", [1, c, size, size]);
  const r = rng(seed * 31 + 1);
  // Calibration batch: 4 standard-normal images.
  const normal = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  let batch = Array.from({ length: 4 }, () => Float64Array.from({ length: c * size * size }, normal));
  for (let layer = 0; layer < depth; layer++) {
    const w3 = randomArray(net.r, c * c * 9, 0.4);
    const w1 = randomArray(net.r, c * c, 0.4);
    const sum = net.add(
      net.op("Conv", [x, net.constant("w", [c, c, 3, 3], w3)], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }),
      net.op("Conv", [x, net.constant("w", [c, c, 1, 1], w1)], { kernel_shape: [1, 1] }),
    );
    const pre = batch.map((img) => {
      const a = conv(img, c, size, size, w3, 3), b = conv(img, c, size, size, w1, 1);
      return a.map((v, i) => v + b[i]!);
    });
    const hw = size * size;
    const mean = new Float64Array(c), variance = new Float64Array(c);
    for (const img of pre) for (let i = 0; i < img.length; i++) mean[Math.floor(i / hw)]! += img[i]! / (hw * pre.length);
    for (const img of pre) for (let i = 0; i < img.length; i++) variance[Math.floor(i / hw)]! += (img[i]! - mean[Math.floor(i / hw)]!) ** 2 / (hw * pre.length);
    const gamma = randomArray(net.r, c).map((v) => 1 + 0.3 * v), beta = randomArray(net.r, c, 0.3);
    const bn = net.op("BatchNormalization", [sum, net.constant("gamma", [c], gamma), net.constant("beta", [c], beta), net.constant("mean", [c], mean), net.constant("var", [c], variance)], { epsilon: 1e-5 });
    x = net.op("Relu", [bn]);
    batch = pre.map((img) => img.map((v, i) => {
      const ch = Math.floor(i / hw);
      return Math.max(0, ((v - mean[ch]!) / Math.sqrt(variance[ch]! + 1e-5)) * gamma[ch]! + beta[ch]!);
    }));
  }
  return { net, x, channels: c };
}
