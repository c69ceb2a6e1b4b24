// Fast training-mode BatchNorm for the wasm backend. tfjs's own BatchNorm gradient tiles the
// per-channel statistics to the full tensor (wasm Tile: ~85 ms for 64×28×28×16) and its axis
// reductions transpose; here every per-channel sum is a global average pool plus a tiny GEMV
// (channelSum) and the per-channel affine maps are a matmul with a diagonal matrix (bias fused) for
// narrow layers, multiply-add otherwise.
//
// Forward (z: [M, C] = NHWC flattened, M = N·H·W):
//   μ = Σz/M, σ² = Σz²/M − μ², a = γ/√(σ²+ε), b = β − μ·a, y = a⊙z + b
// Backward (the textbook BN gradient, rearranged into per-channel coefficients):
//   dβ = Σdy, dγ = (Σ dy⊙z − μ·dβ)/√(σ²+ε)
//   dz = a⊙dy + q⊙z + r,  q = −a·dγ/(M·√(σ²+ε)),  r = −a·dβ/M − q·μ
// Checked against tf.batchNorm + tf.moments gradients in test/trainer.test.ts.
import { tf } from "./backend.js";

const onesCache = new Map<number, tf.Tensor2D>();

function onesRow(m: number): tf.Tensor2D {
  let t = onesCache.get(m);
  if (!t || t.isDisposed) {
    t = tf.keep(tf.ones([1, m]));
    onesCache.set(m, t);
  }
  return t;
}

/**
 * Σ over N, H, W of an NHWC tensor → [C]: a global average pool (XNNPACK streams it) to [N, C],
 * then a GEMV with ones over N. A GEMV over all N·H·W rows would make XNNPACK pack the whole
 * tensor as its weight matrix first (~3 ms for 64×28×28×16); Sum over non-inner axes transposes.
 */
export function channelSum(x: tf.Tensor4D): tf.Tensor1D {
  const [n, h, w, c] = x.shape;
  const pooled = h * w === 1 ? x : tf.avgPool(x, [h, w], 1, "valid");
  return tf.reshape(tf.mul(tf.matMul(onesRow(n), tf.reshape(pooled, [n, c])), h * w), [c]) as tf.Tensor1D;
}

/** y = a⊙x + b per channel (last axis) of [M, C]. */
export function channelAffine(x2: tf.Tensor2D, a: tf.Tensor1D, b: tf.Tensor1D): tf.Tensor2D {
  const c = x2.shape[1];
  if (c <= 64) return tf.fused.matMul({ a: x2, b: tf.diag(a) as tf.Tensor2D, bias: b }) as tf.Tensor2D;
  return tf.add(tf.mul(x2, a), b) as tf.Tensor2D;
}

export interface BnStats {
  mean: tf.Tensor1D;
  variance: tf.Tensor1D;
}

/**
 * Training-mode BN of x (NHWC) with batch statistics; `onStats` receives the batch mean and biased
 * variance (kept tensors: the caller disposes them) for the running statistics.
 */
export function batchNormTrain(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number, onStats: (s: BnStats) => void): tf.Tensor4D {
  const shape = x.shape;
  const c = shape[3];
  const m = shape[0] * shape[1] * shape[2];
  const op = tf.customGrad(((xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    const z = tf.reshape(xi, [m, c]) as tf.Tensor2D;
    const mean = tf.div(channelSum(xi as tf.Tensor4D), m) as tf.Tensor1D;
    const meanSq = tf.div(channelSum(tf.square(xi) as tf.Tensor4D), m);
    const variance = tf.relu(tf.sub(meanSq, tf.square(mean))) as tf.Tensor1D;
    const rstd = tf.rsqrt(tf.add(variance, eps)) as tf.Tensor1D;
    const a = tf.mul(g, rstd) as tf.Tensor1D;
    const shift = tf.sub(b, tf.mul(mean, a)) as tf.Tensor1D;
    const y = tf.reshape(channelAffine(z, a, shift), shape);
    onStats({ mean: tf.keep(mean.clone()), variance: tf.keep(variance.clone()) });
    save([z, mean, rstd, a]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [zs, mu, rs, as] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D];
        const dy2 = tf.reshape(dy, [m, c]) as tf.Tensor2D;
        const dBeta = channelSum(dy as tf.Tensor4D);
        const sdz = channelSum(tf.reshape(tf.mul(dy2, zs), shape) as tf.Tensor4D);
        const dGamma = tf.mul(tf.sub(sdz, tf.mul(mu, dBeta)), rs) as tf.Tensor1D;
        const q = tf.div(tf.mul(tf.neg(as), tf.mul(dGamma, rs)), m) as tf.Tensor1D;
        const r = tf.sub(tf.div(tf.mul(tf.neg(as), dBeta), m), tf.mul(q, mu)) as tf.Tensor1D;
        const dz = tf.add(channelAffine(dy2, as, r), tf.mul(zs, q));
        return [tf.reshape(dz, shape), dGamma, dBeta];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x, gamma, beta) as tf.Tensor4D;
}

/** Inference-mode BN (running statistics) as one per-channel affine map. */
export function batchNormInfer(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, mean: tf.Tensor1D, variance: tf.Tensor1D, eps: number): tf.Tensor4D {
  return tf.batchNorm4d(x, mean, variance, beta, gamma, eps);
}

export function disposeOpCaches(): void {
  for (const t of onesCache.values()) t.dispose();
  onesCache.clear();
}
