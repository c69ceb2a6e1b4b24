// How two evaluations of one output are compared (README "Guarantees"). Two parts:
//  - the finite-value contract: an element where the reference is NaN or ±Inf is outside the
//    contract (counted, never compared); an element where the reference is finite and the
//    candidate is not is a NaN/Inf mismatch, reported apart from the numeric error;
//  - the criterion: by default, per channel c (sliceLayout; per image and channel on a packed input
//    set, whose batch carries the input patterns as its images), the candidate's largest error must be
//    within max(NOISE_FACTOR·N_c, NOISE_FACTOR·(N/S)·max(S_c, S/10), FLOOR_ULPS·ulp·S_c), N_c the
//    reference's own rounding noise in that channel (measured on every input set, see noise.ts),
//    N and S the output's largest noise and magnitude (verify.ts judge); with user tolerances (atol, rtol, tolerance)
//    every element must satisfy |c − r| ≤ atol + rtol·|r| + tolerance·S, as numpy.isclose does
//    plus a term relative to the output's scale.

/** Tolerances a user gave; any one given replaces the calibrated default. */
export interface UserCriterion {
  atol: number;
  rtol: number;
  /** Relative to the output's largest finite reference magnitude. */
  tolerance: number;
}

/** Statistics of one output on one input set. */
export interface RunStats {
  /** Largest |c − r| over elements where both are finite. */
  maxAbs: number;
  /** Largest finite |r|. */
  scale: number;
  /** Elements where the reference is NaN/±Inf: outside the contract, not compared. */
  referenceNonFinite: number;
  /** Elements where the reference is finite and the candidate is NaN/±Inf. */
  candidateNonFinite: number;
  /** The first such element, e.g. "element 3: reference 0, candidate NaN". */
  firstNonFinite?: string;
  /** Elements outside the user criterion (user criterion only). */
  exceeding: number;
  /** First element outside the user criterion. */
  firstExceeding?: string;
  /** Elements compared (reference finite). */
  compared: number;
  /** Per slice (sliceLayout: channels along axis 1, per image on a packed set; one slice below rank 2): largest |c − r| where both are finite. */
  sliceMaxAbs: Float64Array;
  /** Per slice: largest finite |r|. */
  sliceScale: Float64Array;
  /** Images the slices are grouped in (1, or the batch of a packed set): image b holds slices [b·count/images, (b+1)·count/images). */
  images: number;
}

/**
 * Slices of an output: along axis 1 (its channels, or classes of [N, K] logits), and on a packed
 * input set (its batch of `images` images carries the input patterns, one per image) along axis 0
 * too, image-major, when the output's axis 0 is that batch: count, the elements per block, images.
 */
export interface SliceLayout {
  count: number;
  /** Consecutive elements of one slice (the product of dims after axis 1). */
  inner: number;
  /** Images (1 unless packed): each has count/images slices, contiguous. */
  images: number;
}

export function sliceLayout(dims: readonly number[], images = 1): SliceLayout {
  const packed = images > 1 && dims.length >= 1 && dims[0] === images;
  if (packed && dims.length === 1) return { count: images, inner: 1, images };
  if (dims.length < 2 || dims[1]! < 1) return { count: 1, inner: 1, images: 1 };
  let inner = 1;
  for (const d of dims.slice(2)) inner *= d;
  return packed ? { count: images * dims[1]!, inner: Math.max(inner, 1), images } : { count: dims[1]!, inner: Math.max(inner, 1), images: 1 };
}

/** The largest value of each image's slices (count/images consecutive entries per image). */
export function perImage(values: Float64Array, images: number): Float64Array {
  const per = values.length / images;
  const out = new Float64Array(images);
  for (let b = 0; b < images; b++) for (let c = b * per; c < (b + 1) * per; c++) out[b] = Math.max(out[b]!, values[c]!);
  return out;
}

function sliceOf(i: number, layout: SliceLayout): number {
  return layout.count === 1 ? 0 : Math.floor(i / layout.inner) % layout.count;
}

export function compareValues(ref: Float64Array, cand: Float64Array, user?: UserCriterion, layout: SliceLayout = { count: 1, inner: 1, images: 1 }): RunStats {
  let maxAbs = 0, scale = 0, referenceNonFinite = 0, candidateNonFinite = 0;
  let firstNonFinite: string | undefined;
  const sliceMaxAbs = new Float64Array(layout.count), sliceScale = new Float64Array(layout.count);
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i]!, c = cand[i]!;
    if (!Number.isFinite(r)) {
      referenceNonFinite++;
      continue;
    }
    const s = sliceOf(i, layout);
    const a = Math.abs(r);
    if (a > scale) scale = a;
    if (a > sliceScale[s]!) sliceScale[s] = a;
    if (!Number.isFinite(c)) {
      candidateNonFinite++;
      firstNonFinite ??= `element ${i}: reference ${r}, candidate ${c}`;
      continue;
    }
    const d = Math.abs(r - c);
    if (d > maxAbs) maxAbs = d;
    if (d > sliceMaxAbs[s]!) sliceMaxAbs[s] = d;
  }
  const stats: RunStats = { maxAbs, scale, referenceNonFinite, candidateNonFinite, exceeding: 0, compared: ref.length - referenceNonFinite, sliceMaxAbs, sliceScale, images: layout.images };
  if (firstNonFinite) stats.firstNonFinite = firstNonFinite;
  if (user) {
    // The scale-relative term is each image's own on a packed set (as if each image were its own set).
    const bases = Array.from(perImage(sliceScale, layout.images), (s) => user.atol + user.tolerance * s);
    const imageElements = ref.length / layout.images;
    for (let i = 0; i < ref.length; i++) {
      const r = ref[i]!, c = cand[i]!;
      if (!Number.isFinite(r) || !Number.isFinite(c)) continue;
      const base = bases[layout.images === 1 ? 0 : Math.floor(i / imageElements)]!;
      if (!(Math.abs(r - c) <= base + user.rtol * Math.abs(r))) {
        stats.exceeding++;
        stats.firstExceeding ??= `element ${i}: reference ${r}, candidate ${c}`;
      }
    }
  }
  return stats;
}

/**
 * Per slice (sliceLayout), the largest |a − b| over elements where both are finite: the spread of
 * two evaluations of the reference. Infinity where rounding alone turned a finite value
 * non-finite (overflow at the edge of the range): no bound there.
 */
export function sliceSpread(a: Float64Array, b: Float64Array, layout: SliceLayout): Float64Array {
  const m = new Float64Array(layout.count);
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!, y = b[i]!;
    const s = sliceOf(i, layout);
    if (Number.isFinite(x) && Number.isFinite(y)) {
      const d = Math.abs(x - y);
      if (d > m[s]!) m[s] = d;
    } else if (Number.isFinite(x) !== Number.isFinite(y)) m[s] = Infinity;
  }
  return m;
}

/**
 * Floor of the calibrated allowance, in units in the last place of the output's own type at the
 * slice's scale: where the measured noise is zero (an exact rewrite of a tiny network) a correct
 * rewrite may still round a few values differently.
 */
export const FLOOR_ULPS = 4;

/**
 * The calibrated allowance is this many times the largest spread measured between the reference
 * and its re-rounded evaluations. Measured on deep conv+BN networks, a correct fold's error is
 * 0.5–2.4 times that spread; 8 leaves room for an unlucky sample and stays far below any fold
 * error that changes what is computed.
 */
export const NOISE_FACTOR = 8;

/**
 * An input set proves an output only if its allowance is at most this fraction of the output's
 * scale (or 10 precision floors, for float16/bfloat16): above it, the reference's own rounding is so large that
 * a wrong value could hide in it. Such sets are reported as inconclusive.
 */
export const CONCLUSIVE_LIMIT = 0.01;
