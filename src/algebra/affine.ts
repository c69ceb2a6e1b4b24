// docs/rules.md §7.1: BatchNormalization (inference), Mul/Div/Add/Sub by per-channel or scalar constants are
// all the affine map y = s ⊙ x + t. Normalize them to (s, t), then fold into a LinearMap.
import { channelRows, geometryOf, rowLength, rowMap, type LinearMap } from "./linear-map.js";

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

/**
 * y = s ⊙ map(x) + t: scales output channel o of the kernel and bias (exact for any pads). Lazy, by
 * rows: a branch sum or the writer reads the scaled rows without a scaled copy of the whole kernel,
 * and after a composition not computed yet nothing is computed until the region is emitted (it
 * may still be refused for its cost).
 */
export function affineAfter(m: LinearMap, a: Affine): LinearMap {
  const s = perChannel(a.scale, m.outChannels), t = perChannel(a.shift, m.outChannels);
  const per = rowLength(m);
  const scaled = rowMap(geometryOf(m), {
    row(o, row) {
      const so = s[o]!;
      const inner = channelRows(m);
      if (inner) {
        // Scaled after the map's own row is computed: the same products as scaling its kernel.
        inner.row(o, row);
        for (let i = 0; i < per; i++) row[i] = row[i]! * so;
        return;
      }
      const src = m.kernel;
      const from = (o * per) | 0;
      for (let i = 0; i < per; i++) row[i] = src[from + i]! * so;
    },
    bias() {
      const inner = channelRows(m);
      const b = inner ? inner.bias() : m.bias;
      const bias = new Float64Array(m.outChannels);
      for (let o = 0; o < m.outChannels; o++) bias[o] = b[o]! * s[o]! + t[o]!;
      return bias;
    },
  }, [m]);
  scaledMaps.set(scaled, { base: m, scale: s });
  return scaled;
}

const scaledMaps = new WeakMap<LinearMap, { base: LinearMap; scale: Float64Array }>();

/**
 * A map affineAfter made and not computed yet, as the map it scales and the per-channel scale: a
 * branch sum adds `base · s` in one pass (each product rounded once, as the scaled row holds it).
 */
export function scaledView(m: LinearMap): { base: LinearMap; scale: Float64Array } | undefined {
  return channelRows(m) ? scaledMaps.get(m) : undefined;
}
