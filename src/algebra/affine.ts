// docs/rules.md §7.1: BatchNormalization (inference), Mul/Div/Add/Sub by per-channel or scalar constants are
// all the affine map y = s ⊙ x + t. Normalize them to (s, t), then fold into a LinearMap.
import { kernelArray } from "./scratch.js";
import { geometryOf, isPending, lazyMap, type LinearMap } from "./linear-map.js";

export interface Affine {
  scale: Float64Array;
  shift: Float64Array;
}

/** BN(y) = γ (y − mean) / sqrt(var + ε) + β  =  s ⊙ y + t. */
export function batchNormAffine(gamma: Float64Array, beta: Float64Array, mean: Float64Array, variance: Float64Array, epsilon: number): Affine {
  const n = gamma.length;
  const scale = new Float64Array(n), shift = new Float64Array(n);
  for (let c = 0; c < n; c++) {
    scale[c] = gamma[c]! / Math.sqrt(variance[c]! + epsilon);
    shift[c] = beta[c]! - mean[c]! * scale[c]!;
  }
  return { scale, shift };
}

/** Broadcast a per-channel-or-scalar vector to `channels` entries. */
export function perChannel(values: Float64Array, channels: number): Float64Array {
  if (values.length === channels) return values;
  if (values.length === 1) return new Float64Array(channels).fill(values[0]!);
  throw new Error(`vector of ${values.length} values for ${channels} channels`);
}

/** y = s ⊙ map(x) + t: scales output channel o of the kernel and bias (exact for any pads). */
export function affineAfter(m: LinearMap, a: Affine): LinearMap {
  // After a composition not computed yet, stay lazy: the region may still be refused for its cost.
  if (isPending(m)) return lazyMap(geometryOf(m), () => affineAfterNow(m, a), [m]);
  return affineAfterNow(m, a);
}

function affineAfterNow(m: LinearMap, a: Affine): LinearMap {
  const s = perChannel(a.scale, m.outChannels), t = perChannel(a.shift, m.outChannels);
  const per = (m.kernel.length / m.outChannels) | 0; // integer: keeps typed-array access fast
  const kernel = kernelArray(m.kernel.length);
  const bias = new Float64Array(m.outChannels);
  const src = m.kernel;
  for (let o = 0; o < m.outChannels; o++) {
    const so = s[o]!;
    const end = ((o + 1) * per) | 0;
    for (let i = (o * per) | 0; i < end; i++) kernel[i] = src[i]! * so;
    bias[o] = m.bias[o]! * s[o]! + t[o]!;
  }
  return { ...m, kernel, bias };
}
