// The trainer's branch fusion (src/trainer/dynamic.ts branchInference: HWIO kernels, written out
// per branch kind for DyRep's Dep step) is kept as an independent oracle of the compiler's algebra
// (src/algebra: OIHW LinearMaps built from BN affines, compositions, pooling). This test puts both
// on the same trained branches through a layout adapter and requires the same kernel and bias for
// every branch kind, dense and depthwise. A disagreement is a bug in one of them.
import { beforeAll, describe, expect, it } from "vitest";
import {
  affineAfter, averagePoolMap, batchNormAffine, composeMaps, identityMap, isRefusal, makeMap, regroup,
  type Affine, type LinearMap, type Pads,
} from "../src/algebra/index.js";
import { selectBackend, type tf } from "../src/trainer/backend.js";
import { syntheticData, type DataSplits } from "../src/trainer/data.js";
import { branchInference } from "../src/trainer/dynamic.js";
import { BN_EPS, type BN, type Branch, type Layer, type Net } from "../src/trainer/model.js";
import { buildNet, type BranchKind } from "../src/trainer/spec.js";
import { Trainer } from "../src/trainer/train.js";

let data: DataSplits;
beforeAll(async () => {
  await selectBackend("wasm");
  data = syntheticData(128, 16, 3, 12);
}, 60_000);

const values = (v: tf.Tensor) => Float64Array.from(v.dataSync());
const affine = (bn: BN): Affine => batchNormAffine(values(bn.gamma), values(bn.beta), values(bn.mean), values(bn.variance), BN_EPS);

// --- layout adapter: the trainer's HWIO tensors ↔ the algebra's OIHW maps ------------------------

/** A conv weight in the trainer's HWIO layout ([kh,kw,cin,cout], depthwise [kh,kw,C,1]) as a map. */
function mapOfHwio(w: Float64Array, shape: number[], depthwise: boolean, pads: Pads, stride: number): LinearMap {
  const [kh, kw, cin, co] = shape as [number, number, number, number];
  const out = depthwise ? cin : co;
  const kernel = new Float64Array(w.length);
  for (let a = 0; a < kh; a++) for (let b = 0; b < kw; b++) for (let c = 0; c < cin; c++) for (let o = 0; o < co; o++) {
    const src = ((a * kw + b) * cin + c) * co + o;
    const dst = depthwise ? (c * kh + a) * kw + b : ((o * cin + c) * kh + a) * kw + b;
    kernel[dst] = w[src]!;
  }
  return makeMap({ outChannels: out, inChannels: cin, groups: depthwise ? cin : 1, kh, kw, kernel, stride: [stride, stride], pads, dilation: [1, 1] });
}

/** A map as the trainer's k×k HWIO kernel of the layer (centred; a dense layer's map ungrouped). */
function hwioOfMap(m: LinearMap, k: number, depthwise: boolean): Float64Array {
  const dense = depthwise ? m : regroup(m, 1);
  if (depthwise && m.groups !== m.inChannels) throw new Error("a depthwise layer's map must stay depthwise");
  const cin = m.inChannels, co = depthwise ? 1 : m.outChannels;
  const oh = (k - m.kh) >> 1, ow = (k - m.kw) >> 1;
  const out = new Float64Array(k * k * cin * co);
  for (let o = 0; o < m.outChannels; o++) for (let ci = 0; ci < (depthwise ? 1 : cin); ci++) for (let a = 0; a < m.kh; a++) for (let b = 0; b < m.kw; b++) {
    const c = depthwise ? o : ci;
    const src = ((o * (depthwise ? 1 : cin) + ci) * m.kh + a) * m.kw + b;
    out[(((a + oh) * k + (b + ow)) * cin + c) * co + (depthwise ? 0 : o)] = dense.kernel[src]!;
  }
  return out;
}

// --- the algebra's reading of each branch kind -----------------------------------------------------

function unwrap(m: LinearMap | { refused: string }): LinearMap {
  if (isRefusal(m)) throw new Error(m.refused);
  return m;
}

function algebraMap(net: Net, layer: Layer, br: Branch): LinearMap {
  const { k, cin, cout, stride: s, depthwise: dw } = layer.spec;
  const p = (k - 1) >> 1;
  const w = (name: string, depthwise = dw) => {
    const v = br.weights[name]!;
    return (pads: Pads, stride: number) => mapOfHwio(values(v), v.shape, depthwise, pads, stride);
  };
  const bn = (name: string) => affine(br.bns[name]!);
  switch (br.kind) {
    case "kxk": return affineAfter(w("conv")([p, p, p, p], s), bn("bn"));
    case "1x1": return affineAfter(w("conv")([0, 0, 0, 0], s), bn("bn"));
    case "1xk": return affineAfter(w("conv")([0, p, 0, p], s), bn("bn"));
    case "kx1": return affineAfter(w("conv")([p, 0, p, 0], s), bn("bn"));
    case "identity": return affineAfter(identityMap(cin), bn("bn"));
    case "1x1_avg": {
      // 1×1 conv → BN → AvgPool k×k over the BN-value-padded map → BN.
      const first = affineAfter(w("conv")([0, 0, 0, 0], 1), bn("bn"));
      const pool = unwrap(averagePoolMap(cout, { kernel: [k, k], stride: [s, s], pads: [p, p, p, p], countIncludePad: true, ceilMode: false, dilation: [1, 1] }));
      return affineAfter(unwrap(composeMaps(first, pool, bn("bn").shift)), bn("avgbn"));
    }
    case "1x1_kxk": {
      // (1×1 conv + identity) → BN → k×k conv over the BN-value-padded map → BN.
      const w1 = values(br.weights.conv1!), id = values(net.idKernel(cin, 1, dw));
      const first = affineAfter(mapOfHwio(w1.map((x, i) => x + id[i]!), br.weights.conv1!.shape, dw, [0, 0, 0, 0], 1), bn("bn1"));
      const second = w("conv2")([p, p, p, p], s);
      return affineAfter(unwrap(composeMaps(first, second, bn("bn1").shift)), bn("bn2"));
    }
    case "dw_pw": {
      const first = affineAfter(w("dw", true)([p, p, p, p], s), bn("bn1"));
      return affineAfter(unwrap(composeMaps(first, w("pw", false)([0, 0, 0, 0], 1))), bn("bn2"));
    }
  }
}

function maxRelDiff(a: Float64Array, b: Float64Array): number {
  expect(a.length).toBe(b.length);
  let scale = 0, diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(a[i]!), Math.abs(b[i]!));
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  }
  return diff / Math.max(scale, 1e-30);
}

describe("the trainer's branch fusion agrees with src/algebra", () => {
  const all: BranchKind[] = ["kxk", "1x1", "identity", "1xk", "kx1", "1x1_avg", "1x1_kxk", "dw_pw"];
  const cases = [
    ["dense (stride 1 and 2)", buildNet({ input: [1, 12, 12], classes: 10, stem: { width: 8 }, stages: [{ width: 8, branches: all }, { width: 12, stride: 2, branches: all }] })],
    ["depthwise", buildNet({ input: [1, 12, 12], classes: 10, block: "mobileone", stem: { width: 8 }, stages: [{ width: 8, stride: 2, branches: ["kxk", "1x1", "identity", "1xk", "kx1", "1x1_avg", "1x1_kxk"] }] })],
  ] as const;

  for (const [label, spec] of cases)
    it(`${label}: every branch kind, kernel and bias, after a few training steps`, async () => {
      // Training moves BN statistics and weights away from their initial values.
      const tr = new Trainer(spec, data, { epochs: 1, batch: 16, seed: 3, online: false, evalTest: false, stepsPerEpoch: 3, optimizer: { kind: "sgd", lr: 0.05, momentum: 0.9, weightDecay: 1e-4 } });
      try {
        await tr.run();
        const kinds = new Set<string>();
        for (const layer of tr.net.layers) {
          if (layer.branches.length < 3) continue; // the stem
          const idKernel = (c: number) => values(tr.net.idKernel(c, 1, layer.spec.depthwise));
          for (const br of layer.branches) {
            const oracle = branchInference(layer, br, idKernel);
            const m = algebraMap(tr.net, layer, br);
            const kernel = hwioOfMap(m, layer.spec.k, layer.spec.depthwise);
            expect(maxRelDiff(oracle.kernel, kernel), `${layer.spec.name}/${br.name} kernel`).toBeLessThan(1e-12);
            expect(maxRelDiff(oracle.bias, m.bias), `${layer.spec.name}/${br.name} bias`).toBeLessThan(1e-12);
            // Not trivially equal: the kernel is not all zeros and BN moved the bias.
            expect(kernel.some((x) => x !== 0), br.name).toBe(true);
            kinds.add(br.kind);
          }
        }
        expect([...kinds].sort()).toEqual([...spec.layers.flatMap((l) => l.branches.length >= 3 ? l.branches : [])].filter((v, i, a) => a.indexOf(v) === i).sort());
      } finally {
        await tr.dispose();
      }
    }, 120_000);
});
