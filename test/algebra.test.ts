import { describe, expect, it } from "vitest";
import { affineAfter, batchNormAffine } from "../src/algebra/affine.js";
import { composeLazily, composeMaps } from "../src/algebra/compose.js";
import { identityMap, isPending, isRefusal, macsPerPixel, makeMap, regroup, type LinearMap, type Pads } from "../src/algebra/linear-map.js";
import { averagePoolMap } from "../src/algebra/pool.js";
import { addImages, applyMap, maxAbsDiff, type Image } from "../src/algebra/reference.js";
import { negate, sumMaps } from "../src/algebra/sum.js";
import { pick, randomArray, rng } from "./helpers/random.js";

const r = rng(42);

function randomMap(o: number, c: number, g: number, kh: number, kw: number, stride: [number, number], pads: Pads, dilation: [number, number] = [1, 1]): LinearMap {
  return makeMap({
    outChannels: o, inChannels: c, groups: g, kh, kw, stride, pads, dilation,
    kernel: randomArray(r, o * (c / g) * kh * kw), bias: randomArray(r, o),
  });
}

/** Border-heavy input: large values on the outermost rows/columns. */
function image(c: number, h: number, w: number): Image {
  const data = randomArray(r, c * h * w);
  for (let ch = 0; ch < c; ch++)
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++) if (i === 0 || j === 0 || i === h - 1 || j === w - 1) data[(ch * h + i) * w + j]! *= 50;
  return { channels: c, height: h, width: w, data };
}

const close = (a: Image, b: Image) => expect(maxAbsDiff(a, b)).toBeLessThan(1e-9 * Math.max(1, ...a.data.map(Math.abs)));

describe("sum of branches (rule 2)", () => {
  it("RepVGG: 3x3 + 1x1 + identity, stride 1 and 2, grouped", () => {
    for (const [stride, g] of [[1, 1], [2, 1], [1, 2], [1, 4]] as const) {
      const C = 4;
      const x = image(C, 9, 7);
      const k3 = randomMap(C, C, g, 3, 3, [stride, stride], [1, 1, 1, 1]);
      const k1 = randomMap(C, C, g, 1, 1, [stride, stride], [0, 0, 0, 0]);
      const branches = stride === 1 ? [k3, k1, identityMap(C)] : [k3, k1];
      const merged = sumMaps(branches);
      if (isRefusal(merged)) throw new Error(merged.refused);
      expect(merged.groups).toBe(g);
      expect([merged.kh, merged.kw]).toEqual([3, 3]);
      close(applyMap(merged, x), branches.map((b) => applyMap(b, x)).reduce(addImages));
    }
  });

  it("ACNet asymmetric 1x3/3x1 and RepLKNet large + small depthwise", () => {
    const x = image(3, 8, 11);
    const ac = [randomMap(5, 3, 1, 3, 3, [1, 1], [1, 1, 1, 1]), randomMap(5, 3, 1, 1, 3, [1, 1], [0, 1, 0, 1]), randomMap(5, 3, 1, 3, 1, [1, 1], [1, 0, 1, 0])];
    const m1 = sumMaps(ac);
    if (isRefusal(m1)) throw new Error(m1.refused);
    close(applyMap(m1, x), ac.map((b) => applyMap(b, x)).reduce(addImages));
    const lk = [randomMap(3, 3, 3, 13, 13, [1, 1], [6, 6, 6, 6]), randomMap(3, 3, 3, 3, 3, [1, 1], [1, 1, 1, 1])];
    const m2 = sumMaps(lk);
    if (isRefusal(m2)) throw new Error(m2.refused);
    expect(m2.groups).toBe(3);
    close(applyMap(m2, x), lk.map((b) => applyMap(b, x)).reduce(addImages));
  });

  it("random aligned branch sets with asymmetric pads, dilation, mixed groups", () => {
    for (let trial = 0; trial < 60; trial++) {
      const C = pick(r, [2, 4, 6]), O = pick(r, [2, 4, 6]);
      const s = pick(r, [1, 2]);
      const d = pick(r, [1, 1, 2]);
      const extraH = pick(r, [-1, 0, 1]), extraW = pick(r, [-1, 0]);
      const n = 2 + Math.floor(r() * 3);
      const branches: LinearMap[] = [];
      for (let b = 0; b < n; b++) {
        const kh = pick(r, [1, 2, 3, 5]), kw = pick(r, [1, 3, 4]);
        const spanH = (kh - 1) * d + 1, spanW = (kw - 1) * d + 1;
        const pt = Math.floor(r() * 3) * d, pl = Math.floor(r() * 3) * d;
        const pb = spanH + extraH - pt, pr = spanW + extraW - pl;
        if (pb < 0 || pr < 0) continue;
        const g = pick(r, [1, gcdOf(C, O)]);
        branches.push(randomMap(O, C, g, kh, kw, [s, s], [pt, pl, pb, pr], [d, d]));
      }
      if (branches.length < 2) continue;
      const merged = sumMaps(branches);
      if (isRefusal(merged)) throw new Error(merged.refused);
      const x = image(C, 7 + trial % 4, 6 + trial % 3);
      close(applyMap(merged, x), branches.map((b) => applyMap(b, x)).reduce(addImages));
    }
  });

  it("refuses different strides, dilations and misaligned grids", () => {
    expect(isRefusal(sumMaps([randomMap(2, 2, 1, 3, 3, [2, 2], [1, 1, 1, 1]), randomMap(2, 2, 1, 3, 3, [1, 1], [1, 1, 1, 1])]))).toBe(true);
    expect(isRefusal(sumMaps([randomMap(2, 2, 1, 3, 3, [1, 1], [1, 1, 1, 1]), randomMap(2, 2, 1, 3, 3, [1, 1], [2, 2, 2, 2], [2, 2])]))).toBe(true);
    // 3x3 pad 1 and 1x1 pad 1 give different output sizes
    expect(isRefusal(sumMaps([randomMap(2, 2, 1, 3, 3, [1, 1], [1, 1, 1, 1]), randomMap(2, 2, 1, 1, 1, [1, 1], [1, 1, 1, 1])]))).toBe(true);
  });

  it("Sub is a sum with a negated branch", () => {
    const a = randomMap(3, 3, 3, 3, 3, [1, 1], [1, 1, 1, 1]);
    const m = sumMaps([a, negate(identityMap(3))]);
    if (isRefusal(m)) throw new Error(m.refused);
    const x = image(3, 5, 5);
    const ref = applyMap(a, x);
    close(applyMap(m, x), { ...ref, data: ref.data.map((v, i) => v - x.data[i]!) });
  });
});

describe("affine folding (rule 1)", () => {
  it("BN after a padded grouped conv is exact", () => {
    const m = randomMap(4, 4, 2, 3, 3, [1, 1], [1, 1, 1, 1]);
    const bn = batchNormAffine(randomArray(r, 4), randomArray(r, 4), randomArray(r, 4), Float64Array.from([0.5, 1, 2, 1.5]), 1e-5);
    const folded = affineAfter(m, bn);
    const x = image(4, 6, 6);
    const y = applyMap(m, x);
    const expected = { ...y, data: y.data.map((v, i) => v * bn.scale[Math.floor(i / 36)]! + bn.shift[Math.floor(i / 36)]!) };
    close(applyMap(folded, x), expected);
  });
});

describe("sequential composition (rule 4)", () => {
  it("KxK → 1x1, 1x1 → KxK (pad on input), strided stacks, groups", () => {
    for (let trial = 0; trial < 40; trial++) {
      const C = pick(r, [2, 4]), M = pick(r, [2, 4]), O = pick(r, [2, 4]);
      const k1 = pick(r, [1, 3]), k2 = pick(r, [1, 3, 5]);
      const s1 = pick(r, [1, 2]), s2 = pick(r, [1, 2]);
      const g = pick(r, [1, 2]);
      const p1 = pick(r, [0, 1, 2]);
      const first = randomMap(M, C, g, k1, k1, [s1, s1], [p1, p1, p1, p1]);
      const second = randomMap(O, M, pick(r, [1, g]), k2, k2, [s2, s2], [0, 0, 0, 0]);
      const comp = composeMaps(first, second);
      if (isRefusal(comp)) throw new Error(comp.refused);
      const x = image(C, 9 + (trial % 3), 8 + (trial % 2));
      close(applyMap(comp, x), applyMap(second, applyMap(first, x)));
    }
  });

  it("1x1 → KxK composes bit for bit as the documented sum: Σ over the intermediate channels in order", () => {
    // gemm.ts blocks the product for speed; every tap of the result must still be
    // ((0 + W2[o,0,p,q]·W1[0,c]) + W2[o,1,p,q]·W1[1,c]) + …, bias b2 + Σ in the reference's order.
    // [outputs, intermediate, inputs, first's groups, second's groups, k, first's stride]; a second
    // layer with one intermediate channel per group is DBB's and OREPA's 1x1 → pool (a depthwise
    // KxK after a dense 1x1: the composite is dense, its first layer's missing groups are zeros).
    const cases = [[9, 6, 5, 1, 1, 3, 1], [8, 12, 4, 4, 4, 3, 2], [70, 13, 11, 1, 1, 5, 1], [6, 4, 4, 2, 2, 1, 1],
      [12, 12, 7, 1, 12, 3, 1], [12, 6, 7, 1, 6, 3, 2], [8, 8, 8, 2, 8, 3, 1]] as const;
    for (const [o, mid, c, g1, g2, k, s] of cases) {
      const first = randomMap(mid, c, g1, 1, 1, [s, s], [0, 0, 0, 0]);
      const second = randomMap(o, mid, g2, k, k, [1, 1], [0, 0, 0, 0]);
      const m = composeMaps(first, second);
      if (isRefusal(m)) throw new Error(m.refused);
      const g = m.groups, midPer = mid / g2, inPer = c / g, outPer = o / g2, kh = 1 + (k - 1) * s;
      /** W1[mc, c] with W1's block-diagonal zeros. */
      const w1 = (mc: number, cg: number): number =>
        Math.floor(cg / (c / g1)) === Math.floor(mc / (mid / g1)) ? first.kernel[mc * (c / g1) + (cg % (c / g1))]! : 0;
      for (let oc = 0; oc < o; oc++)
        for (let ci = 0; ci < inPer; ci++)
          for (let p = 0; p < k; p++)
            for (let q = 0; q < k; q++) {
              let acc = 0;
              for (let ml = 0; ml < midPer; ml++) {
                const mc = Math.floor(oc / outPer) * midPer + ml;
                acc += second.kernel[((oc * midPer + ml) * k + p) * k + q]! * w1(mc, Math.floor(oc / (o / g)) * inPer + ci);
              }
              expect(m.kernel[((oc * inPer + ci) * kh + p * s) * kh + q * s]).toBe(acc);
            }
    }
  });

  it("a per-channel affine (depthwise 1x1) before a grouped, strided, padded conv scales its input channels", () => {
    for (let trial = 0; trial < 20; trial++) {
      const C = pick(r, [4, 6]), O = pick(r, [2, 4, 6]), g = pick(r, [1, 2]), k = pick(r, [1, 3]), s = pick(r, [1, 2]);
      const affine = randomMap(C, C, C, 1, 1, [1, 1], [0, 0, 0, 0]);
      const p = k === 3 && trial % 2 ? 1 : 0;
      const second = randomMap(O, C, g, k, k, [s, s], [p, p, p, p]);
      const comp = composeMaps(affine, second, p ? affine.bias : undefined);
      if (isRefusal(comp)) throw new Error(comp.refused);
      expect(comp.groups).toBe(g);
      const x = image(C, 7 + (trial % 3), 6 + (trial % 2));
      close(applyMap(comp, x), applyMap(second, applyMap(affine, x), p ? affine.bias : undefined));
    }
  });

  it("a lazy composition knows its geometry at once and computes the same numbers on first read", () => {
    const first = randomMap(8, 4, 1, 1, 1, [1, 1], [0, 0, 0, 0]);
    const second = randomMap(6, 8, 2, 3, 3, [2, 2], [0, 0, 0, 0]);
    const lazy = composeLazily(first, second);
    const eager = composeMaps(first, second);
    if (isRefusal(lazy) || isRefusal(eager)) throw new Error("unexpected refusal");
    expect(macsPerPixel(lazy)).toBe(macsPerPixel(eager));
    const scaled = affineAfter(lazy, { scale: Float64Array.from([1, 2, 3, 4, 5, 6]), shift: new Float64Array(6) });
    expect(isPending(lazy) && isPending(scaled)).toBe(true); // nothing computed yet
    expect(Array.from(lazy.kernel)).toEqual(Array.from(eager.kernel));
    expect(isPending(lazy)).toBe(false);
    expect(Array.from(scaled.bias)).toEqual(Array.from(eager.bias).map((v, o) => v * (o + 1)));
  });

  it("BN-value padding composes; zero padding after a bias refuses (and would be wrong)", () => {
    const first = randomMap(3, 2, 1, 1, 1, [1, 1], [0, 0, 0, 0]);
    const second = randomMap(4, 3, 1, 3, 3, [1, 1], [1, 1, 1, 1]);
    const x = image(2, 6, 5);
    const good = composeMaps(first, second, first.bias);
    if (isRefusal(good)) throw new Error(good.refused);
    close(applyMap(good, x), applyMap(second, applyMap(first, x), first.bias));
    const bad = composeMaps(first, second);
    expect(isRefusal(bad)).toBe(true);
    // The naive fold (ignore the border rule) is measurably wrong:
    const naive = composeMaps({ ...first, bias: new Float64Array(3) }, second);
    if (isRefusal(naive)) throw new Error("unexpected");
    const naiveWithBias = { ...naive, bias: naive.bias.map((v, o) => v + [0, 1, 2].reduce((s, m) => s + second.kernel.slice((o * 3 + m) * 9, (o * 3 + m + 1) * 9).reduce((a, b) => a + b, 0) * first.bias[m]!, 0)) };
    expect(maxAbsDiff(applyMap(naiveWithBias, x), applyMap(second, applyMap(first, x)))).toBeGreaterThan(1e-3);
  });

  it("AveragePool (count_include_pad=1) is a depthwise conv; count_include_pad=0 with pads refuses", () => {
    const pool = averagePoolMap(3, { kernel: [3, 3], stride: [2, 2], pads: [1, 1, 1, 1], countIncludePad: true, ceilMode: false, dilation: [1, 1] });
    if (isRefusal(pool)) throw new Error(pool.refused);
    const one = randomMap(3, 2, 1, 1, 1, [1, 1], [1, 1, 1, 1]);
    const comp = composeMaps(one, pool);
    // 1x1 with pad 1 then a padded pool: the pool pads its input → only exact with zero bias, refused here.
    expect(isRefusal(comp)).toBe(true);
    const noBias = { ...one, pads: [0, 0, 0, 0] as Pads, bias: new Float64Array(3) };
    const ok = composeMaps(noBias, pool);
    if (isRefusal(ok)) throw new Error(ok.refused);
    const x = image(2, 7, 7);
    close(applyMap(ok, x), applyMap(pool, applyMap(noBias, x)));
    expect(isRefusal(averagePoolMap(3, { kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1], countIncludePad: false, ceilMode: false, dilation: [1, 1] }))).toBe(true);
  });

  it("regroup keeps the function", () => {
    const m = randomMap(6, 6, 6, 3, 3, [1, 1], [1, 1, 1, 1]);
    const x = image(6, 5, 5);
    close(applyMap(regroup(m, 3), x), applyMap(m, x));
    close(applyMap(regroup(m, 1), x), applyMap(m, x));
  });
});

function gcdOf(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
