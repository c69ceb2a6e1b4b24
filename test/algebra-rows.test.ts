// Issue 15 (peak memory): affine folds and branch sums are computed one output channel at a time
// (channelRows) and written channel by channel into the stored dtype, so a region's kernel never
// exists whole in float64. Results must not change: rows and whole kernels are compared bit for
// bit with the eager computation they replaced (kept here as the reference: scale every element,
// regroup with zeros, add every element of each regrouped kernel at its tap offset).
import { describe, expect, it } from "vitest";
import { affineAfter } from "../src/algebra/affine.js";
import { composeLazily, composeMaps } from "../src/algebra/compose.js";
import { channelRows, identityMap, isPending, isRefusal, makeMap, regroup, rowLength, type LinearMap, type Pads } from "../src/algebra/linear-map.js";
import { negate, sumMaps } from "../src/algebra/sum.js";
import { pick, randomArray, rng } from "./helpers/random.js";

const r = rng(1515);

/** Random values with the awkward ones mixed in: ±0, subnormals, exact cancellations. */
function values(n: number): Float64Array {
  const v = randomArray(r, n);
  for (let i = 0; i < n; i++) {
    const k = r();
    if (k < 0.1) v[i] = -0;
    else if (k < 0.2) v[i] = 0;
    else if (k < 0.25) v[i] = 5e-324 * (r() < 0.5 ? -1 : 1);
    else if (k < 0.3) v[i] = 1;
  }
  return v;
}

function map(o: number, c: number, g: number, k: number, pad: number): LinearMap {
  return makeMap({ outChannels: o, inChannels: c, groups: g, kh: k, kw: k, stride: [1, 1], pads: [pad, pad, pad, pad] as Pads, dilation: [1, 1], kernel: values(o * (c / g) * k * k), bias: values(o) });
}

// The eager computation, as it was before rows.
function eagerAffine(m: LinearMap, s: Float64Array, t: Float64Array): LinearMap {
  const per = m.kernel.length / m.outChannels;
  const kernel = new Float64Array(m.kernel.length), bias = new Float64Array(m.outChannels);
  for (let o = 0; o < m.outChannels; o++) {
    for (let i = o * per; i < (o + 1) * per; i++) kernel[i] = m.kernel[i]! * s[o]!;
    bias[o] = m.bias[o]! * s[o]! + t[o]!;
  }
  return { ...m, kernel, bias };
}

function eagerSum(maps: LinearMap[], kh: number, kw: number, groups: number, offsets: number[]): { kernel: Float64Array; bias: Float64Array } {
  const f = maps[0]!;
  const kernel = new Float64Array(f.outChannels * (f.inChannels / groups) * kh * kw), bias = new Float64Array(f.outChannels);
  maps.forEach((m0, idx) => {
    const m = regroup(m0, groups);
    for (let o = 0; o < m.outChannels; o++) bias[o] = bias[o]! + m.bias[o]!;
    const rows = m.outChannels * (f.inChannels / groups), d = offsets[idx]!;
    for (let rr = 0; rr < rows; rr++)
      for (let i = 0; i < m.kh; i++)
        for (let j = 0; j < m.kw; j++) {
          const at = (rr * kh + i + d) * kw + j + d;
          kernel[at] = kernel[at]! + m.kernel[(rr * m.kh + i) * m.kw + j]!;
        }
  });
  return { kernel, bias };
}

const sameBits = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) expect.fail(`element ${i}: ${a[i]} vs ${b[i]}`);
};

/** The map's kernel read row by row (as the writer reads it), without computing it whole. */
function byRows(m: LinearMap): Float64Array {
  const rows = channelRows(m)!;
  const per = rowLength(m), out = new Float64Array(per * m.outChannels), row = new Float64Array(per);
  for (let o = 0; o < m.outChannels; o++) {
    rows.row(o, row);
    out.set(row, o * per);
  }
  return out;
}

describe("rows: affine folds and branch sums, bit for bit as computed whole before", () => {
  it("RepVGG / ACNet-like sums of scaled branches with mixed groups and kernel sizes", () => {
    for (let trial = 0; trial < 40; trial++) {
      const C = pick(r, [2, 4, 6]), O = C;
      const g = pick(r, [1, 2]);
      const g1 = C % (2 * g) === 0 && r() < 0.5 ? 2 * g : g; // a 1x1 branch with finer groups: regrouped
      const branches = [map(O, C, g, 3, 1), map(O, C, g1, 1, 0), identityMap(C)];
      const affines = branches.map(() => ({ s: values(O), t: values(O) }));
      const scaled = branches.map((b, i) => affineAfter(b, { scale: affines[i]!.s, shift: affines[i]!.t }));
      const terms = [scaled[0]!, trial % 3 === 0 ? negate(scaled[1]!) : scaled[1]!, scaled[2]!];
      const order = trial % 2 === 0 ? [0, 1, 2] : [2, 0, 1];
      const maps = order.map((i) => terms[i]!);
      const sum = sumMaps(maps);
      if ("refused" in sum) throw new Error(sum.refused);
      expect(isPending(sum)).toBe(true);
      const eagerTerms = order.map((i) => {
        const e = eagerAffine(branches[i]!, affines[i]!.s, affines[i]!.t);
        return i === 1 && trial % 3 === 0 ? negate(e) : e;
      });
      const groups = maps.map((m) => m.groups).reduce((a, b) => (b === 0 ? a : gcd(a, b)));
      const ref = eagerSum(eagerTerms, 3, 3, groups, order.map((i) => (i === 0 ? 0 : 1)));
      sameBits(byRows(sum), ref.kernel);
      sameBits(channelRows(sum)!.bias(), ref.bias);
      // Read whole (as a composition after it does): the same bits.
      sameBits(sum.kernel, ref.kernel);
      sameBits(sum.bias, ref.bias);
      // An affine after the sum (a BN after an Add) scales the sum's rows.
      const s = values(O), t = values(O);
      const after = sumMaps([affineAfter(sumMaps(maps.map((m) => m)) as LinearMap, { scale: s, shift: t }), identityMap(C)]) as LinearMap;
      const refAfter = eagerSum([eagerAffine({ ...terms[0]!, kernel: ref.kernel, bias: ref.bias, kh: 3, kw: 3, groups, pads: [1, 1, 1, 1] }, s, t), identityMap(C)], 3, 3, groups, [0, 1]);
      sameBits(byRows(after), refAfter.kernel);
      sameBits(after.kernel, refAfter.kernel);
    }
  });

  it("a chain of affines as long as a graph is computed without deep recursion, same bits", () => {
    let m: LinearMap = identityMap(3);
    let ref: LinearMap = identityMap(3);
    for (let i = 0; i < 20000; i++) {
      const a = { scale: Float64Array.of(1 + (i % 7) / 64), shift: Float64Array.of(i % 5 === 0 ? -0 : 1 / 8) };
      m = affineAfter(m, a);
      ref = eagerAffine(ref, Float64Array.from({ length: 3 }, () => a.scale[0]!), Float64Array.from({ length: 3 }, () => a.shift[0]!));
    }
    sameBits(byRows(m), ref.kernel);
    sameBits(m.kernel, ref.kernel);
    sameBits(m.bias, ref.bias);
  });
});

/** A lazy composition that must be computed by rows (a pointwise first layer). */
function composedByRows(first: LinearMap, second: LinearMap): LinearMap {
  const m = composeLazily(first, second);
  if (isRefusal(m)) throw new Error(m.refused);
  expect(channelRows(m)).toBeDefined();
  return m;
}

/** The map's rows read in the given order of outputs, placed where the kernel holds them. */
function rowsInOrder(m: LinearMap, order: number[]): Float64Array {
  const rows = channelRows(m)!;
  const per = rowLength(m), out = new Float64Array(per * m.outChannels), row = new Float64Array(per).fill(7);
  for (const o of order) {
    rows.row(o, row);
    out.set(row, o * per);
  }
  return out;
}

describe("rows: 1x1 → KxK and 1x1 → pool compositions, bit for bit as composed whole", () => {
  // [outputs, intermediate, inputs, first's groups, second's groups, k, first's stride, float32 second]
  // 300 outputs x 9 taps is two blocks of the product; 12 → 12 with second's groups 12 is one
  // intermediate channel per output (DBB's 1x1 → pool).
  const cases = [[9, 6, 5, 1, 1, 3, 1, 0], [300, 7, 6, 1, 1, 3, 1, 1], [8, 12, 4, 4, 4, 3, 2, 0], [12, 12, 7, 1, 12, 3, 1, 1],
    [12, 6, 7, 1, 6, 3, 2, 0], [40, 8, 8, 2, 8, 3, 1, 0], [6, 4, 4, 2, 2, 1, 1, 1]] as const;
  const maps = (o: number, mid: number, c: number, g1: number, g2: number, k: number, s: number, f32: number) => {
    const first = makeMap({ ...map(mid, c, g1, 1, 0), stride: [s, s] });
    const second0 = map(o, mid, g2, k, 0);
    const second = f32 ? { ...second0, kernel: Float32Array.from(second0.kernel) } : second0;
    return { first, second };
  };

  it("rows read in order, in reverse, or the whole kernel give the eager composite's bits", () => {
    for (const [o, mid, c, g1, g2, k, s, f32] of cases) {
      const { first, second } = maps(o, mid, c, g1, g2, k, s, f32);
      const eager = composeMaps(first, second);
      if (isRefusal(eager)) throw new Error(eager.refused);
      const outputs = Array.from({ length: o }, (_, i) => i);
      const m = composedByRows(first, second);
      sameBits(channelRows(m)!.bias(), eager.bias);
      sameBits(rowsInOrder(m, outputs), eager.kernel);
      sameBits(rowsInOrder(m, outputs.reverse()), eager.kernel); // blocks recomputed, then the whole kernel
      sameBits(composedByRows(first, second).kernel, eager.kernel);
      // A first kernel holding an infinity takes the reference path (zero second weights skipped).
      first.kernel[0] = Infinity;
      const ref = composeMaps(first, second);
      if (isRefusal(ref)) throw new Error(ref.refused);
      const inf = composedByRows(first, second);
      sameBits(rowsInOrder(inf, outputs), ref.kernel);
      sameBits(channelRows(inf)!.bias(), ref.bias);
    }
  });

  it("two compositions read in turn (a sum of two 1x1 → KxK branches) and DBB's scaled branch sum", () => {
    const { first, second } = maps(300, 7, 6, 1, 1, 3, 1, 1);
    const other = maps(300, 5, 6, 1, 1, 3, 1, 0);
    const a = composedByRows(first, second), b = composedByRows(other.first, other.second);
    const ea = composeMaps(first, second), eb = composeMaps(other.first, other.second);
    if (isRefusal(ea) || isRefusal(eb)) throw new Error("unexpected refusal");
    const per = rowLength(a), ra = new Float64Array(per * 300), rb = new Float64Array(per * 300), row = new Float64Array(per);
    for (let o = 0; o < 300; o++) {
      channelRows(a)!.row(o, row);
      ra.set(row, o * per);
      channelRows(b)!.row(o, row);
      rb.set(row, o * per);
    }
    sameBits(ra, ea.kernel);
    sameBits(rb, eb.kernel);
    // KxK + BN, 1x1 + BN, 1x1 → pool + BN, 1x1 → KxK + BN, as the branch sum adds them.
    const C = 12;
    const kxk = map(C, C, 1, 3, 1), one = map(C, C, 1, 1, 0);
    const pool = maps(C, C, C, 1, C, 3, 1, 1), dbb = maps(C, 8, C, 1, 1, 3, 1, 1);
    const composites = [composeLazily(pool.first, pool.second), composeLazily(dbb.first, dbb.second)] as LinearMap[];
    const eagerComposites = [composeMaps(pool.first, pool.second), composeMaps(dbb.first, dbb.second)] as LinearMap[];
    const bns = [0, 1, 2, 3].map(() => ({ scale: values(C), shift: values(C) }));
    const branches = [kxk, one, ...composites], eagerBranches = [kxk, one, ...eagerComposites];
    const pads = (m: LinearMap): LinearMap => (m.kh === 3 ? { ...m, pads: [1, 1, 1, 1] } : m);
    const sum = sumMaps(branches.map((m, i) => affineAfter(pads(m), bns[i]!)));
    if (isRefusal(sum)) throw new Error(sum.refused);
    const ref = eagerSum(eagerBranches.map((m, i) => eagerAffine(m, bns[i]!.scale, bns[i]!.shift)), 3, 3, 1, [0, 1, 0, 0]);
    sameBits(byRows(sum), ref.kernel);
    sameBits(channelRows(sum)!.bias(), ref.bias);
  });
});

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
