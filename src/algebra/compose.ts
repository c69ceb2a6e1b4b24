// docs/rules.md §7.4: two linear layers in sequence are one conv.
//   y = W2 * (W1 * x + b1) + b2,  composite size k1 + (k2 − 1)·s1, stride s1·s2,
//   W[o, c, u, v] = Σ_m Σ_{a,b} W2[o, m, a, b] · W1[m, c, u − a·s1, v − b·s1],
//   b[o] = b2[o] + Σ_{m,a,b} W2[o, m, a, b] · b1[m].
// The border rule: the composite is exact only if the padding the second layer reads equals what
// the first layer would produce there from the zero-padded input. With no padding on the second
// layer that always holds (the intermediate is literally layer 1 applied to the padded input). With
// padding it holds only for a pointwise, unpadded first layer whose border output (its bias) equals
// the pad value — DBB's "BN-value padding"; zero padding after a non-zero bias is not one conv.
import { gemmWorkspace } from "./gemm-parallel.js";
import { gcd, isRefusal, lazyMap, makeMap, refuse, regroup, rowLength, rowMap, type ChannelRows, type LinearMap, type MapGeometry, type Pads, type Refusal } from "./linear-map.js";

/** Pad value vs bias agreement: both come from stored parameters, so equal up to storage rounding. */
const PAD_VALUE_RTOL = 1e-6;

/**
 * Compose `first` (X→Y) then `second` (a conv on Y whose own pads fill Y's border with `padValue`
 * per channel — zeros when omitted).
 */
export function composeMaps(first: LinearMap, second: LinearMap, padValue?: Float64Array, options: ComposeOptions = {}): LinearMap | Refusal {
  const plan = planComposition(first, second, padValue, options);
  return isRefusal(plan) ? plan : plan.compute();
}

/**
 * The same, with the kernel arithmetic deferred until the kernel or bias is first read: the
 * composite's geometry (and so its MACs) is known at once, so a region refused for its cost never
 * pays for its compositions (cheap checks first).
 */
export function composeLazily(first: LinearMap, second: LinearMap, padValue?: Float64Array, options: ComposeOptions = {}): LinearMap | Refusal {
  const plan = planComposition(first, second, padValue, options);
  if (isRefusal(plan)) return plan;
  if (plan.rows) return rowMap(plan.geometry, plan.rows(), [first, second]);
  return lazyMap(plan.geometry, plan.compute, [first, second]);
}

export interface ComposeOptions {
  ignoreBorderRule?: boolean;
  padValueRtol?: number;
}

/** The checks and the composite's geometry; `compute` does the arithmetic. */
function planComposition(first: LinearMap, second: LinearMap, padValue: Float64Array | undefined, options: ComposeOptions): { geometry: MapGeometry; compute: () => LinearMap; rows?: () => ChannelRows } | Refusal {
  const rtol = options.padValueRtol ?? PAD_VALUE_RTOL;
  if (first.outChannels !== second.inChannels)
    return refuse(`channel mismatch in sequence (${first.outChannels} produced, ${second.inChannels} consumed)`);
  for (const m of [first, second])
    if ((m.kh > 1 && m.dilation[0] !== 1) || (m.kw > 1 && m.dilation[1] !== 1))
      return refuse("dilated convolution in a sequence (composition is defined for dilation 1)");

  const [s1h, s1w] = first.stride;
  let pads = first.pads;
  if (options.ignoreBorderRule) {
    // What a naive tool does (tests use it to show the refused folds would be wrong).
    const [t, l, b, r] = second.pads;
    pads = [first.pads[0] + t * s1h, first.pads[1] + l * s1w, first.pads[2] + b * s1h, first.pads[3] + r * s1w];
  } else if (second.pads.some((p) => p !== 0)) {
    const pointwise = first.kh === 1 && first.kw === 1 && first.pads.every((p) => p === 0);
    if (!pointwise)
      return refuse(`the second layer pads an intermediate that a ${first.kh}x${first.kw} layer produced: the border is not what one conv would see`);
    for (let m = 0; m < first.outChannels; m++) {
      const v = padValue ? padValue[m]! : 0;
      const b = first.bias[m]!;
      if (Math.abs(v - b) > rtol * Math.max(1, Math.abs(b)))
        return refuse(`intermediate is padded with ${v} but the first layer's border output is its bias ${b.toPrecision(4)} (channel ${m}): not one conv`);
    }
    const [t, l, b, r] = second.pads;
    pads = [t * s1h, l * s1w, b * s1h, r * s1w];
  }

  // A per-channel affine first (BN before a conv: a depthwise 1x1 map) only scales the second
  // layer's input channels: W[o, c] = W2[o, c]·s[c], b = b2 + Σ W2[o, c]·t[c] — O(|W2|), no regrouping.
  const finalPads: Pads = [pads[0], pads[1], pads[2], pads[3]];
  if (first.kh === 1 && first.kw === 1 && s1h === 1 && s1w === 1 && first.pads.every((p) => p === 0) &&
      first.groups === first.inChannels && first.inChannels === first.outChannels && second.inChannels % second.groups === 0) {
    const geometry: MapGeometry = {
      outChannels: second.outChannels, inChannels: second.inChannels, groups: second.groups, kh: second.kh, kw: second.kw,
      stride: [...second.stride], pads: finalPads, dilation: [...second.dilation],
    };
    return { geometry, compute: () => scaleInputs(first, second, geometry) };
  }
  // The composite has the coarser grouping g = gcd. Only `first` is re-expressed with it; `second`
  // keeps its own (finer) groups — expanding a depthwise second layer (an AveragePool, a dw conv) to
  // dense would multiply the work by its channel count for nothing.
  const g = gcd(first.groups, second.groups);
  const geometry: MapGeometry = {
    outChannels: second.outChannels, inChannels: first.inChannels, groups: g,
    kh: first.kh + (second.kh - 1) * s1h, kw: first.kw + (second.kw - 1) * s1w,
    stride: [s1h * second.stride[0], s1w * second.stride[1]], pads: finalPads, dilation: [1, 1],
  };
  const compute = () => composeGeneral(first, second, geometry);
  // A pointwise first layer and one intermediate channel per output (DBB's and OREPA's 1x1 → pool):
  // each output's row is an outer product, cheap to compute where it is read (a branch sum, the
  // writer), so the composite's kernel is never written whole in float64 and read back.
  if (first.kh === 1 && first.kw === 1 && second.inChannels === second.groups)
    return { geometry, compute, rows: () => oneIntermediateRows(first, second, geometry, compute) };
  // A pointwise first layer (DBB's 1x1 → KxK): the product's blocks of outputs are computed as the
  // rows are read, and each row is gathered from its block into the reader's row (no unpacked
  // float64 kernel written whole and read back).
  if (first.kh === 1 && first.kw === 1) return { geometry, compute, rows: () => pointwiseFirstRows(first, second, geometry, compute) };
  return { geometry, compute };
}

/** W[o, c, u, v] = Σ_m Σ_{a,b} W2[o, m, a, b] · W1[m, c, u − a·s1, v − b·s1] (see the header). */
function composeGeneral(first: LinearMap, second: LinearMap, geometry: MapGeometry): LinearMap {
  const [s1h, s1w] = first.stride;
  const g = geometry.groups;
  const a = regroup(first, g);
  const b = second;
  const kh = geometry.kh, kw = geometry.kw;
  const out = makeMap(geometry);
  // Integer-typed (| 0) sizes keep V8's typed-array indexing on its fast path.
  const inPer = (a.inChannels / g) | 0; // input channels per group of the composite (and of `a`)
  const midPer = (b.inChannels / b.groups) | 0; // intermediate channels an output of `b` reads
  const outPer = (b.outChannels / b.groups) | 0; // outputs per group of `b`
  const AH = a.kh | 0, AW = a.kw | 0, BH = b.kh | 0, BW = b.kw | 0;
  const aK = a.kernel, bK = b.kernel, oK = out.kernel;
  if (AH === 1 && AW === 1) {
    composePointwiseFirst(a, b, out, inPer, midPer, outPer, s1h, s1w);
    return out;
  }
  for (let o = 0; o < b.outChannels; o++) {
    const group = Math.floor(o / outPer); // o's group in `b`; its g-group holds the same channels
    let bias = b.bias[o]!;
    for (let ml = 0; ml < midPer; ml++) {
      const m = group * midPer + ml;
      let tapSum = 0;
      for (let p = 0; p < BH; p++)
        for (let q = 0; q < BW; q++) {
          const w2 = bK[(((o * midPer + ml) * BH + p) * BW + q) | 0]!;
          if (w2 === 0) continue;
          tapSum += w2;
          for (let c = 0; c < inPer; c++) {
            const src = ((m * inPer + c) * AH * AW) | 0;
            const dstBase = ((o * inPer + c) * kh) | 0;
            for (let u = 0; u < AH; u++) {
              const row = ((dstBase + p * s1h + u) * kw + q * s1w) | 0;
              const srow = (src + u * AW) | 0;
              for (let v = 0; v < AW; v++) oK[row + v] = oK[row + v]! + w2 * aK[srow + v]!;
            }
          }
        }
      bias += tapSum * a.bias[m]!;
    }
    out.bias[o] = bias;
  }
  return out;
}

/**
 * The same sum when the first layer is 1x1 (DBB's 1x1 → KxK, OREPA's 1x1 → pool): per group, one
 * matrix product [outputs·taps × mid] · [mid × in] (gemm.ts), each sum over the intermediate
 * channels in order m = 0, 1, … as the reference loop below adds them.
 */
function composePointwiseFirst(a: LinearMap, b: LinearMap, out: LinearMap, inPer: number, midPer: number, outPer: number, s1h: number, s1w: number): void {
  // The reference skips zero second-layer weights on its last midPer % 4 channels; skipping a
  // product 0·x changes nothing (the running sum is never −0) unless x is infinite or NaN.
  if (!allFinite(a.kernel)) return composePointwiseFirstReference(a, b, out, inPer, midPer, outPer, s1h, s1w);
  const BH = b.kh | 0, BW = b.kw | 0, kh = out.kh | 0, kw = out.kw | 0;
  const taps = (BH * BW) | 0;
  const aK = a.kernel, bK = b.kernel, oK = computedKernel(out);
  pointwiseBias(a, b, out, midPer, outPer);
  if (midPer === 1) return composeOneIntermediate(a, b, out, inPer, outPer, s1h, s1w);
  const groups = (b.outChannels / outPer) | 0;
  // Outputs per block: ~2048 rows of the product at a time keep the packed operands small and
  // give the threads of gemm-parallel.ts enough rows to share.
  const chunk = chunkOutputs(outPer, taps);
  for (let group = 0; group < groups; group++) {
    const bBase = (group * midPer * inPer) | 0;
    for (let o0 = group * outPer; o0 < (group + 1) * outPer; o0 += chunk) {
      const n = Math.min(chunk, (group + 1) * outPer - o0) | 0;
      const rows = (n * taps) | 0;
      // The operands are built where the kernel reads them (no copies, no fresh arrays per block).
      const product = gemmWorkspace(rows, midPer, inPer);
      const acc = product.C;
      product.setB(aK, bBase);
      // Row (o, t) of the product: W2[o, :, t].
      if (bK instanceof Float32Array) packRows32(bK, product.A, o0, n, midPer, taps);
      else packRows64(bK, product.A, o0, n, midPer, taps);
      acc.fill(0);
      product.run();
      unpackTaps(acc, oK, o0, n, inPer, kh, kw, BH, BW, s1h, s1w);
    }
  }
}

/** Outputs per block of the product: ~2048 rows at a time (see composePointwiseFirst). */
const chunkOutputs = (outPer: number, taps: number): number => Math.max(1, Math.min(outPer, Math.floor(2048 / taps))) | 0;

/**
 * One block of a product's C, copied out of the workspace (which the next product reuses), shared
 * by every composite computed by rows: the last block computed, and whose it is.
 */
let blockCopy = new Float64Array(0);
let blockOwner: object | undefined;

/**
 * composePointwiseFirst's rows: the block of outputs holding o is computed when a row of it is
 * first read (the same packing, the same product, so the same bits), copied out of the workspace,
 * and each of its rows gathered from there in the kernel's order. Rows are read in order (the
 * writer, a branch sum, the whole kernel): a block computed a second time (two composites read in
 * turn) means the reads interleave, and the kernel is then computed whole once and read from there.
 */
function pointwiseFirstRows(first: LinearMap, second: LinearMap, geometry: MapGeometry, compute: () => LinearMap): ChannelRows {
  const [s1h, s1w] = first.stride;
  const BH = second.kh | 0, BW = second.kw | 0, kh = geometry.kh | 0, kw = geometry.kw | 0;
  const taps = (BH * BW) | 0;
  const inPer = (geometry.inChannels / geometry.groups) | 0;
  const midPer = (second.inChannels / second.groups) | 0, outPer = (second.outChannels / second.groups) | 0;
  const chunk = chunkOutputs(outPer, taps);
  const covers = s1h === 1 && s1w === 1;
  const per = rowLength(geometry);
  const owner = {};
  let o0 = -1, n = 0, blocksComputed = 0;
  let ready: { aK: Float64Array | Float32Array; bK: Float64Array | Float32Array } | { whole: LinearMap } | undefined;
  const prepare = () => {
    if (ready) return ready;
    const a = regroup(first, geometry.groups);
    if (!allFinite(a.kernel)) return (ready = { whole: compute() });
    return (ready = { aK: a.kernel, bK: second.kernel });
  };
  const blocks = (second.groups * Math.ceil(outPer / chunk)) | 0;
  return {
    row(o, row) {
      let r = prepare();
      if (!("whole" in r) && (blockOwner !== owner || o < o0 || o >= o0 + n)) {
        if (blocksComputed >= blocks) r = ready = { whole: compute() };
        else {
          const group = Math.floor(o / outPer), start = group * outPer;
          o0 = start + Math.floor((o - start) / chunk) * chunk;
          n = Math.min(chunk, start + outPer - o0) | 0;
          const rows = (n * taps) | 0;
          const product = gemmWorkspace(rows, midPer, inPer);
          product.setB(r.aK, (group * midPer * inPer) | 0);
          if (r.bK instanceof Float32Array) packRows32(r.bK, product.A, o0, n, midPer, taps);
          else packRows64(r.bK, product.A, o0, n, midPer, taps);
          product.C.fill(0);
          product.run();
          if (blockCopy.length < rows * inPer) blockCopy = new Float64Array(rows * inPer);
          blockCopy.set(product.C.subarray(0, rows * inPer));
          blockOwner = owner;
          blocksComputed++;
        }
      }
      if ("whole" in r) {
        row.set(r.whole.kernel.subarray(o * per, (o + 1) * per));
        return;
      }
      if (!covers) row.fill(0);
      gatherTaps(blockCopy, row, o - o0, inPer, kh, kw, BH, BW, s1h, s1w);
    },
    bias() {
      const r = prepare();
      if ("whole" in r) return r.whole.bias;
      const bias = new Float64Array(second.outChannels);
      pointwiseBiasOf(second.kernel, first.bias, second.bias, bias, second.outChannels, midPer, outPer, taps);
      return bias;
    },
  };
}

/** Row ol of a block of the product (its taps (p, q) for every input channel) in the kernel's order. */
function gatherTaps(acc: Float64Array, row: Float64Array, ol: number, inPer: number, kh: number, kw: number, BH: number, BW: number, s1h: number, s1w: number): void {
  const base = (ol * BH * BW * inPer) | 0;
  for (let p = 0; p < BH; p++)
    for (let q = 0; q < BW; q++) {
      const src = (base + (p * BW + q) * inPer) | 0, at = (p * s1h * kw + q * s1w) | 0;
      for (let c = 0; c < inPer; c++) row[(c * kh * kw + at) | 0] = acc[src + c]!;
    }
}

/** A composite's kernel: makeMap gave it a float64 array (checked, so the loops below stay monomorphic). */
function computedKernel(m: LinearMap): Float64Array {
  if (!(m.kernel instanceof Float64Array)) throw new Error("composite kernel is not float64");
  return m.kernel;
}

// The loops below take arrays and numbers only: a loop inside a function that also reads the
// maps' fields is deoptimized each time a map of another shape (lazy, spread, fresh) comes by, and
// runs unoptimized for a while after (on DBB-ResNet-50 that made these loops 10x slower).

/** Rows (o, t) of the product into the kernel in its own order (each output's taps contiguous). */
function unpackTaps(acc: Float64Array, oK: Float64Array, o0: number, n: number, inPer: number, kh: number, kw: number, BH: number, BW: number, s1h: number, s1w: number): void {
  const per = (inPer * kh * kw) | 0;
  for (let ol = 0; ol < n; ol++) gatherTaps(acc, oK.subarray((o0 + ol) * per, (o0 + ol + 1) * per), ol, inPer, kh, kw, BH, BW, s1h, s1w);
}

/**
 * The product when each output reads one intermediate channel (a depthwise second layer: DBB's
 * and OREPA's 1x1 → pool): every tap is the single term 0 + W2[o, 0, p, q]·W1[m, c], as the matrix
 * product computes it from a zeroed accumulator, written in the kernel's order without a product
 * call per output.
 */
function composeOneIntermediate(a: LinearMap, b: LinearMap, out: LinearMap, inPer: number, outPer: number, s1h: number, s1w: number): void {
  const BH = b.kh | 0, BW = b.kw | 0, kh = out.kh | 0, kw = out.kw | 0;
  // The second kernel (outputs x taps values) is read as float64 in the inner loop.
  const bK = b.kernel instanceof Float64Array ? b.kernel : Float64Array.from(b.kernel);
  const oK = computedKernel(out), per = (inPer * kh * kw) | 0;
  for (let o = 0; o < b.outChannels; o++)
    outerTapsInto(a.kernel, bK, oK.subarray(o * per, (o + 1) * per), o, (Math.floor(o / outPer) * inPer) | 0, inPer, kh, kw, BH, BW, s1h, s1w);
}

/**
 * composeOneIntermediate's rows, one output at a time into the reader's row (the same single term
 * 0 + W2[o, 0, p, q]·W1[m, c] per tap); the bias as pointwiseBias sums it. A first kernel holding
 * infinities or NaN takes the reference path, computed whole once and read from there.
 */
function oneIntermediateRows(first: LinearMap, second: LinearMap, geometry: MapGeometry, compute: () => LinearMap): ChannelRows {
  const [s1h, s1w] = first.stride;
  const BH = second.kh | 0, BW = second.kw | 0, kh = geometry.kh | 0, kw = geometry.kw | 0;
  const inPer = (geometry.inChannels / geometry.groups) | 0, outPer = (second.outChannels / second.groups) | 0;
  const covers = s1h === 1 && s1w === 1; // every tap of the composite is one of the second's taps
  const per = rowLength(geometry);
  let ready: { aK: Float64Array | Float32Array; bK: Float64Array } | { whole: LinearMap } | undefined;
  const prepare = () => {
    if (ready) return ready;
    const a = regroup(first, geometry.groups);
    if (!allFinite(a.kernel)) return (ready = { whole: compute() });
    const bK = second.kernel instanceof Float64Array ? second.kernel : Float64Array.from(second.kernel);
    return (ready = { aK: a.kernel, bK });
  };
  return {
    row(o, row) {
      const r = prepare();
      if ("whole" in r) {
        row.set(r.whole.kernel.subarray(o * per, (o + 1) * per));
        return;
      }
      if (!covers) row.fill(0);
      outerTapsInto(r.aK, r.bK, row, o, (Math.floor(o / outPer) * inPer) | 0, inPer, kh, kw, BH, BW, s1h, s1w);
    },
    bias() {
      const r = prepare();
      if ("whole" in r) return r.whole.bias;
      const bias = new Float64Array(second.outChannels);
      pointwiseBiasOf(second.kernel, first.bias, second.bias, bias, second.outChannels, 1, outPer, (BH * BW) | 0);
      return bias;
    },
  };
}

/** Output o of composeOneIntermediate into its own row: 0 + W2[o, 0, p, q]·W1[m, c] for every c, p, q (W1[m] at aK[src…]). */
function outerTapsInto(aK: Float64Array | Float32Array, bK: Float64Array, row: Float64Array, o: number, src: number, inPer: number, kh: number, kw: number, BH: number, BW: number, s1h: number, s1w: number): void {
  const w = (o * BH * BW) | 0;
  for (let c = 0; c < inPer; c++) {
    const x = aK[src + c]!, dst = (c * kh) | 0;
    for (let p = 0; p < BH; p++)
      for (let q = 0; q < BW; q++) row[((dst + p * s1h) * kw + q * s1w) | 0] = 0 + bK[(w + p * BW + q) | 0]! * x;
  }
}

// The same packing twice, one per kernel type: a stored float32 weight and a computed float64 one
// through one loop would make its reads polymorphic (several times slower).
function packRows32(src: Float32Array, dst: Float64Array, o0: number, n: number, midPer: number, taps: number): void {
  for (let ol = 0; ol < n; ol++)
    for (let ml = 0; ml < midPer; ml++) {
      const s = (((o0 + ol) * midPer + ml) * taps) | 0;
      for (let t = 0; t < taps; t++) dst[((ol * taps + t) * midPer + ml) | 0] = src[s + t]!;
    }
}

function packRows64(src: Float64Array, dst: Float64Array, o0: number, n: number, midPer: number, taps: number): void {
  for (let ol = 0; ol < n; ol++)
    for (let ml = 0; ml < midPer; ml++) {
      const s = (((o0 + ol) * midPer + ml) * taps) | 0;
      for (let t = 0; t < taps; t++) dst[((ol * taps + t) * midPer + ml) | 0] = src[s + t]!;
    }
}

function allFinite(x: ArrayLike<number>): boolean {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i]!)) return false;
  return true;
}

/** The bias of the pointwise-first composite, summed as the reference loop sums it. */
function pointwiseBias(a: LinearMap, b: LinearMap, out: LinearMap, midPer: number, outPer: number): void {
  pointwiseBiasOf(b.kernel, a.bias, b.bias, out.bias, b.outChannels, midPer, outPer, (b.kh * b.kw) | 0);
}

function pointwiseBiasOf(bK: Float64Array | Float32Array, aB: Float64Array, bB: Float64Array, oB: Float64Array, outChannels: number, midPer: number, outPer: number, taps: number): void {
  for (let o = 0; o < outChannels; o++) {
    const group = (o / outPer) | 0;
    let bias = bB[o]!;
    let ml = 0;
    for (; ml + 4 <= midPer; ml += 4) {
      const m = group * midPer + ml;
      const w = ((o * midPer + ml) * taps) | 0;
      for (let t = 0; t < taps; t++)
        bias += bK[w + t]! * aB[m]! + bK[w + taps + t]! * aB[m + 1]! + bK[w + 2 * taps + t]! * aB[m + 2]! + bK[w + 3 * taps + t]! * aB[m + 3]!;
    }
    for (; ml < midPer; ml++) {
      const m = group * midPer + ml;
      for (let t = 0; t < taps; t++) {
        const w2 = bK[((o * midPer + ml) * taps + t) | 0]!;
        if (w2 === 0) continue;
        bias += w2 * aB[m]!;
      }
    }
    oB[o] = bias;
  }
}

/**
 * The reference form of the same sum (kept for first kernels holding infinities or NaN, where
 * its skipped zero weights matter): for each tap of the second layer a matrix product
 * W2[:, :, p, q] · W1, accumulated with the input channel innermost.
 */
function composePointwiseFirstReference(a: LinearMap, b: LinearMap, out: LinearMap, inPer: number, midPer: number, outPer: number, s1h: number, s1w: number): void {
  const BH = b.kh | 0, BW = b.kw | 0, kh = out.kh | 0, kw = out.kw | 0;
  const aK = a.kernel, bK = b.kernel, oK = out.kernel;
  const acc = new Float64Array(BH * BW * inPer);
  for (let o = 0; o < b.outChannels; o++) {
    const group = Math.floor(o / outPer);
    acc.fill(0);
    let bias = b.bias[o]!;
    const taps = (BH * BW) | 0;
    let ml = 0;
    // Four intermediate channels at a time: a quarter of the accumulator traffic.
    for (; ml + 4 <= midPer; ml += 4) {
      const m = group * midPer + ml;
      const s0 = (m * inPer) | 0, s1 = (s0 + inPer) | 0, s2 = (s1 + inPer) | 0, s3 = (s2 + inPer) | 0;
      const w = ((o * midPer + ml) * taps) | 0;
      for (let t = 0; t < taps; t++) {
        const w0 = bK[w + t]!, w1 = bK[w + taps + t]!, w2 = bK[w + 2 * taps + t]!, w3 = bK[w + 3 * taps + t]!;
        bias += w0 * a.bias[m]! + w1 * a.bias[m + 1]! + w2 * a.bias[m + 2]! + w3 * a.bias[m + 3]!;
        const base = (t * inPer) | 0;
        for (let c = 0; c < inPer; c++) acc[base + c] = acc[base + c]! + w0 * aK[s0 + c]! + w1 * aK[s1 + c]! + w2 * aK[s2 + c]! + w3 * aK[s3 + c]!;
      }
    }
    for (; ml < midPer; ml++) {
      const m = group * midPer + ml;
      const src = (m * inPer) | 0;
      for (let t = 0; t < taps; t++) {
        const w2 = bK[((o * midPer + ml) * taps + t) | 0]!;
        if (w2 === 0) continue;
        bias += w2 * a.bias[m]!;
        const base = (t * inPer) | 0;
        for (let c = 0; c < inPer; c++) acc[base + c] = acc[base + c]! + w2 * aK[src + c]!;
      }
    }
    out.bias[o] = bias;
    for (let p = 0; p < BH; p++)
      for (let q = 0; q < BW; q++) {
        const base = ((p * BW + q) * inPer) | 0;
        for (let c = 0; c < inPer; c++) oK[(((o * inPer + c) * kh + p * s1h) * kw + q * s1w) | 0] = acc[base + c]!;
      }
  }
}

/** `second` after the per-channel affine `first` (scale = its depthwise 1x1 kernel, shift = its bias). */
function scaleInputs(first: LinearMap, second: LinearMap, geometry: MapGeometry): LinearMap {
  const out = makeMap(geometry);
  const inPer = (second.inChannels / second.groups) | 0, outPer = (second.outChannels / second.groups) | 0;
  const taps = (second.kh * second.kw) | 0;
  for (let o = 0; o < second.outChannels; o++) {
    const base = Math.floor(o / outPer) * inPer;
    let bias = second.bias[o]!;
    for (let cl = 0; cl < inPer; cl++) {
      const c = base + cl, s = first.kernel[c]!, t = first.bias[c]!;
      const at = ((o * inPer + cl) * taps) | 0;
      for (let k = 0; k < taps; k++) {
        const w = second.kernel[at + k]!;
        out.kernel[at + k] = w * s;
        bias += w * t;
      }
    }
    out.bias[o] = bias;
  }
  return out;
}
