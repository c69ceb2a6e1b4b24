// The wasm gradient kernels composed from forward kernels (src/trainer/kernels.ts), checked against
// the cpu backend's reference kernels: dense and depthwise, strides 1 and 2, explicit asymmetric
// pads, odd sizes, non-square kernels.
import { beforeAll, describe, expect, it } from "vitest";
import { selectBackend, tf } from "../src/trainer/backend.js";
import { Rng } from "../src/trainer/rng.js";

function rand(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.next() - 0.5);
}

interface Case {
  n: number; h: number; w: number; c: number; o: number; kh: number; kw: number;
  stride: [number, number]; pads: [number, number, number, number]; depthwise?: boolean;
}

/** Gradients of Σ r ⊙ conv(x, W) with respect to x and W on the named backend. */
async function grads(backend: string, k: Case): Promise<{ y: Float32Array; dx: Float32Array; dw: Float32Array }> {
  await tf.setBackend(backend);
  const [pt, pl, pb, pr] = k.pads;
  const pad: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [pt, pb], [pl, pr], [0, 0]];
  const wShape: [number, number, number, number] = k.depthwise ? [k.kh, k.kw, k.c, 1] : [k.kh, k.kw, k.c, k.o];
  return tf.tidy(() => {
    const x = tf.tensor4d(rand(k.n * k.h * k.w * k.c, 1), [k.n, k.h, k.w, k.c]);
    const w = tf.tensor4d(rand(wShape.reduce((a, b) => a * b), 2), wShape);
    const conv = (a: tf.Tensor4D, b: tf.Tensor4D) => (k.depthwise ? tf.depthwiseConv2d(a, b, k.stride, pad) : tf.conv2d(a, b, k.stride, pad));
    const y = conv(x, w);
    const r = tf.tensor(rand(y.size, 3), y.shape);
    const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(conv(a as tf.Tensor4D, b as tf.Tensor4D), r)));
    const [dx, dw] = g([x, w]);
    return { y: y.dataSync() as Float32Array, dx: dx!.dataSync() as Float32Array, dw: dw!.dataSync() as Float32Array };
  });
}

function maxRel(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let scale = 1e-6, diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]!));
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  }
  return diff / scale;
}

const CASES: [string, Case][] = [
  ["3x3 s1 p1", { n: 2, h: 7, w: 6, c: 3, o: 4, kh: 3, kw: 3, stride: [1, 1], pads: [1, 1, 1, 1] }],
  ["3x3 s2 p1 odd", { n: 3, h: 9, w: 7, c: 2, o: 5, kh: 3, kw: 3, stride: [2, 2], pads: [1, 1, 1, 1] }],
  ["3x3 s2 p1 even (drops a row)", { n: 2, h: 8, w: 8, c: 3, o: 3, kh: 3, kw: 3, stride: [2, 2], pads: [1, 1, 1, 1] }],
  ["1x1 s2 p0", { n: 2, h: 7, w: 8, c: 4, o: 3, kh: 1, kw: 1, stride: [2, 2], pads: [0, 0, 0, 0] }],
  ["1x3 asymmetric pads", { n: 2, h: 5, w: 6, c: 3, o: 2, kh: 1, kw: 3, stride: [1, 1], pads: [0, 1, 0, 1] }],
  ["3x1 s2", { n: 1, h: 7, w: 5, c: 2, o: 3, kh: 3, kw: 1, stride: [2, 2], pads: [1, 0, 1, 0] }],
  ["5x5 s1 p2 pad bottom 0", { n: 2, h: 6, w: 7, c: 2, o: 2, kh: 5, kw: 5, stride: [1, 1], pads: [2, 2, 0, 1] }],
  ["3x3 s3 p0 (skips columns)", { n: 2, h: 10, w: 11, c: 2, o: 2, kh: 3, kw: 3, stride: [3, 3], pads: [0, 0, 0, 0] }],
  ["3x3 pad beyond kernel span at the bottom", { n: 1, h: 5, w: 5, c: 2, o: 2, kh: 2, kw: 2, stride: [2, 2], pads: [0, 0, 3, 3] }],
  ["dw 3x3 s1 p1", { n: 2, h: 7, w: 6, c: 4, o: 4, kh: 3, kw: 3, stride: [1, 1], pads: [1, 1, 1, 1], depthwise: true }],
  ["dw 3x3 s2 p1 odd", { n: 3, h: 9, w: 7, c: 3, o: 3, kh: 3, kw: 3, stride: [2, 2], pads: [1, 1, 1, 1], depthwise: true }],
  ["dw 3x3 s2 p1 even", { n: 2, h: 8, w: 6, c: 2, o: 2, kh: 3, kw: 3, stride: [2, 2], pads: [1, 1, 1, 1], depthwise: true }],
  ["dw 1x1 s2", { n: 2, h: 7, w: 7, c: 3, o: 3, kh: 1, kw: 1, stride: [2, 2], pads: [0, 0, 0, 0], depthwise: true }],
  ["dw 5x3 asymmetric", { n: 2, h: 8, w: 7, c: 2, o: 2, kh: 5, kw: 3, stride: [1, 2], pads: [2, 1, 1, 0], depthwise: true }],
];

describe("wasm gradient kernels match the cpu backend", () => {
  beforeAll(async () => {
    const info = await selectBackend("wasm");
    expect(info.registered).toEqual(expect.arrayContaining(["Conv2DBackpropFilter", "Conv2DBackpropInput", "DepthwiseConv2dNativeBackpropFilter", "DepthwiseConv2dNativeBackpropInput", "AvgPoolGrad"]));
  });

  for (const [name, k] of CASES) {
    it(name, async () => {
      const ref = await grads("cpu", k);
      const got = await grads("wasm", k);
      expect(maxRel(got.y, ref.y)).toBeLessThan(1e-5);
      expect(maxRel(got.dx, ref.dx)).toBeLessThan(1e-5);
      expect(maxRel(got.dw, ref.dw)).toBeLessThan(1e-5);
    });
  }

  for (const [name, k, s, h, w] of [["avg 3x3 s1", 3, 1, 7, 6], ["avg 3x3 s2 odd", 3, 2, 9, 7], ["avg 3x3 s2 even", 3, 2, 8, 8], ["avg 2x2 s2", 2, 2, 6, 5]] as const) {
    it(`AvgPoolGrad ${name} (valid)`, async () => {
      const run = async (backend: string) => {
        await tf.setBackend(backend);
        return tf.tidy(() => {
          const x = tf.tensor4d(rand(2 * h * w * 3, 7), [2, h, w, 3]);
          const y = tf.avgPool(x, k, s, "valid");
          const r = tf.tensor(rand(y.size, 8), y.shape);
          return tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.avgPool(a as tf.Tensor4D, k, s, "valid"), r)))(x).dataSync() as Float32Array;
        });
      };
      expect(maxRel(await run("wasm"), await run("cpu"))).toBeLessThan(1e-5);
    });
  }

  it("leaks no tensors", async () => {
    await tf.setBackend("wasm");
    const before = tf.memory().numTensors;
    await grads("wasm", CASES[1]![1]);
    await grads("wasm", CASES[10]![1]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
