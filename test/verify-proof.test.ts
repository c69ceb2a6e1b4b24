// The proof's calibration (README "Guarantees"), in both directions: a wrong model fails at any
// output scale, precision and depth; float rounding of a correct fold passes at any depth; dynamic
// dims are proven at two sizes; the finite-value contract; the user's atol/rtol.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as ort from "onnxruntime-node";
import { afterEach, describe, expect, it, vi } from "vitest";
import { GraphBuilder } from "../src/ir/builder.js";
import { DataType, floatToHalf, halfToFloat } from "../src/ir/dtype.js";
import { ModelError } from "../src/ir/errors.js";
import { Node, type Model } from "../src/ir/graph.js";
import { loadModel, saveModel } from "../src/ir/io.js";
import { onnx } from "../src/ir/proto.js";
import { findCulprit } from "../src/app/bisect.js";
import { optimize } from "../src/app/optimize.js";
import { makeInputs, runModel, verifyModels } from "../src/verify/verify.js";
import { liftedModel, moveByOneUlp, perturbableWeights, WeightFeeds, type RandomBits } from "../src/verify/noise.js";
import { planShapes } from "../src/verify/shape-plan.js";
import { compareValues, sliceLayout, sliceSpread } from "../src/verify/compare.js";
import { deepTrainedNet } from "./helpers/deep.js";
import { Net } from "./helpers/graphs.js";

const weights = (n: number, scale = 0.3) => Array.from({ length: n }, (_, i) => Math.sin(1.7 * i) * scale);

/** x [N,2,H,W] → Conv 3x3 stride 2, SAME_UPPER; with `pads`, those pads written out instead (right at 8x8 only for [0,0,1,1]). */
function sameUpperConv(pads?: number[]): Model {
  const b = new GraphBuilder(13);
  b.input("x", ["N", 2, "H", "W"]);
  const attrs = pads ? { pads, strides: [2, 2] } : { auto_pad: "SAME_UPPER", strides: [2, 2] };
  b.output(b.op("Conv", ["x", b.constant("w", [2, 2, 3, 3], weights(36))], { kernel_shape: [3, 3], ...attrs }, "y"));
  return b.build();
}

/** x [N,2,H,W] → Conv 3x3 (weights × scale) → y */
function scaledConv(scale: number, dims: (number | string)[] = ["N", 2, 6, 6]): Model {
  const b = new GraphBuilder(13);
  b.input("x", dims);
  b.output(b.op("Conv", ["x", b.constant("w", [2, 2, 3, 3], weights(36, 0.3 * scale))], { pads: [1, 1, 1, 1] }, "y"));
  return b.build();
}

describe("too lenient no more", () => {
  it("two models 50% apart fail when their outputs are ~1e-6 (no absolute floor below |ref| = 1)", async () => {
    const r = await verifyModels(scaledConv(1e-6), scaledConv(1.5e-6));
    expect(r.outputs[0]!.scale).toBeLessThan(1e-3);
    expect(r.ok).toBe(false);
    expect(r.maxRel).toBeGreaterThan(0.3);
    // The same pair at scale 1 fails too, and identical models pass at both scales.
    expect((await verifyModels(scaledConv(1), scaledConv(1.5))).ok).toBe(false);
    expect((await verifyModels(scaledConv(1e-6), scaledConv(1e-6))).ok).toBe(true);
  });

  it("float64 outputs are judged at float64's floor (1e-9), not float32's", async () => {
    const model = (scale: number) => {
      const b = new GraphBuilder(13, DataType.DOUBLE);
      b.input("x", [2, 4]);
      b.output(b.op("MatMul", ["x", b.constant("w", [4, 3], weights(12).map((v) => v * scale))], {}, "y"));
      return b.build();
    };
    const r = await verifyModels(model(1), model(1 + 1e-6));
    expect(r.outputs[0]!.precision).toBe("float64");
    expect(r.maxRel).toBeGreaterThan(5e-7);
    expect(r.ok).toBe(false); // 1e-6 apart: within float32's 1e-4, far outside float64's rounding
    expect((await verifyModels(model(1), model(1))).ok).toBe(true);
  });

  describe("the reference and the candidate run as written", () => {
    afterEach(() => vi.restoreAllMocks());
    it("onnxruntime's graph optimizations are off for both sessions, and the noise samples run in the reference's", async () => {
      const create = vi.spyOn(ort.InferenceSession, "create");
      const run = vi.spyOn(ort.InferenceSession.prototype, "run");
      const r = await verifyModels(scaledConv(1), scaledConv(1), { runs: 1 });
      const levels = create.mock.calls.map((c) => (c[1] as ort.InferenceSession.SessionOptions).graphOptimizationLevel);
      // Two loads in all: the reference (its literal runs and the first noise sample), then the
      // candidate; it passes on every input set, so no more samples are taken.
      expect(levels).toEqual(["disabled", "disabled"]);
      expect(r.inputSets).toBe(2);
      expect(run).toHaveBeenCalledTimes(2 * (1 + 1 + 1));
      // The arithmetic weights are fed as inputs: the loaded bytes hold none of them.
      const loaded = create.mock.calls.map((c) => onnx.ModelProto.decode(c[0] as Uint8Array));
      expect(loaded.map((p) => p.graph!.initializer!.length)).toEqual([0, 0]);
      const feeds = run.mock.calls.map((c) => Object.keys(c[0] as Record<string, unknown>).sort().join());
      expect(new Set(feeds)).toEqual(new Set(["w_0,x"]));
    });

    it("input sets where the candidate does not pass yet get the other two noise samples, and only those", async () => {
      // Right at size 8 (set 0), wrong at 9 (set 1): SAME_UPPER pads computed for 8x8.
      const model = sameUpperConv;
      const create = vi.spyOn(ort.InferenceSession, "create");
      const run = vi.spyOn(ort.InferenceSession.prototype, "run");
      const r = await verifyModels(model(), model([0, 0, 1, 1]), { runs: 1 });
      expect(r.ok).toBe(false);
      // Reference, candidate, the reference again for samples 2 and 3 on set 1 only.
      expect(create).toHaveBeenCalledTimes(3);
      // Literal runs and sample 1 at both sizes, the candidate at both, samples 2 and 3 at 9x9.
      expect(run.mock.calls.map((c) => (c[0] as Record<string, ort.Tensor>).x!.dims[2])).toEqual([8, 9, 8, 9, 8, 9, 9, 9]);
      expect(r.outputs[0]!.reason).toMatch(/input set 1/);
    });

    it("a model onnxruntime will not load with its weights as inputs is loaded as written; the samples then move its inputs only, as the notes say", async () => {
      const original = ort.InferenceSession.create.bind(ort.InferenceSession) as (...args: unknown[]) => Promise<ort.InferenceSession>;
      let refuse = 1;
      const create = vi.spyOn(ort.InferenceSession, "create").mockImplementation((async (...args: unknown[]) => {
        if (refuse-- > 0) throw new Error("weights must be initializers (simulated)");
        return original(...args);
      }) as never);
      const r = await verifyModels(scaledConv(1), scaledConv(1), { runs: 1 });
      expect(r.ok).toBe(true);
      expect(r.calibrated).toBe(true);
      expect(r.notes.join("\n")).toMatch(/noise samples moved the reference's inputs only.*weights must be initializers \(simulated\)/);
      // The reference as written holds its weights; the candidate was lifted as usual.
      const loaded = create.mock.calls.slice(1).map((c) => onnx.ModelProto.decode(c[0] as Uint8Array).graph!.initializer!.length);
      expect(loaded).toEqual([1, 0]);
      // A wrong candidate still fails against it.
      refuse = 1;
      expect((await verifyModels(scaledConv(1), scaledConv(1.01))).ok).toBe(false);
    });
  });

  it("dynamic dims are proven at a second size: odd batch > 1, the other parity of H and W", async () => {
    const r = await verifyModels(scaledConv(1, ["N", 2, "H", "W"]), scaledConv(1, ["N", 2, "H", "W"]));
    expect(r.ok).toBe(true);
    expect(r.shapeSets).toEqual([{ x: [1, 2, 8, 8] }, { x: [3, 2, 9, 9] }]);
    expect(r.inputSets).toBe(4); // set 0's three patterns, then batch 3 carrying them as its images
    expect(r.notes).toEqual([]);
    // With shapes given, the second set moves from them; fixed dims never move.
    const given = await verifyModels(scaledConv(1, ["N", 2, "H", 6]), scaledConv(1, ["N", 2, "H", 6]), { shapes: { x: [2, 2, 12, 6] }, runs: 1 });
    expect(given.shapeSets).toEqual([{ x: [2, 2, 12, 6] }, { x: [3, 2, 13, 6] }]);
  });

  describe("the second shape set carries the patterns as the images of one batch", () => {
    afterEach(() => vi.restoreAllMocks());
    const dynamic = ["N", 2, "H", "W"];

    it("one run per model for it: 4 input sets and 3 runs of each (literal, one noise sample, candidate)", async () => {
      const run = vi.spyOn(ort.InferenceSession.prototype, "run");
      const r = await verifyModels(scaledConv(1, dynamic), scaledConv(1, dynamic));
      expect(r.ok).toBe(true);
      expect(r.shapeSets).toEqual([{ x: [1, 2, 8, 8] }, { x: [3, 2, 9, 9] }]);
      expect(r.inputSets).toBe(4);
      expect(run).toHaveBeenCalledTimes(4 * 3);
      // The packed batch: image b is pattern b (0: normal, 1: ×50 borders + offsets, 2: large channel constants).
      const x = run.mock.calls.map((c) => (c[0] as Record<string, ort.Tensor>).x!).find((t) => t.dims[0] === 3)!;
      const image = (b: number) => Array.from((x.data as Float32Array).subarray(b * 162, (b + 1) * 162));
      const minAbs = (v: number[]) => Math.min(...v.map(Math.abs));
      const maxAbs = (v: number[]) => Math.max(...v.map(Math.abs));
      expect(maxAbs(image(0))).toBeLessThan(6);
      expect(maxAbs(image(1))).toBeGreaterThan(30);
      expect(minAbs(image(2))).toBeGreaterThan(16);
    });

    it("where it cannot be packed (runs 1, batch fixed, an input without a batch axis, data given) it runs as before", async () => {
      expect((await verifyModels(scaledConv(1, dynamic), scaledConv(1, dynamic), { runs: 1 })).inputSets).toBe(2);
      expect((await verifyModels(scaledConv(1, [1, 2, "H", "W"]), scaledConv(1, [1, 2, "H", "W"]))).inputSets).toBe(6);
      const twoInputs = () => {
        const b = new GraphBuilder(13);
        b.input("x", dynamic);
        b.input("s", [2, 1, 1]);
        b.output(b.op("Mul", ["x", "s"], {}, "y"));
        return b.build();
      };
      expect((await verifyModels(twoInputs(), twoInputs())).inputSets).toBe(6);
      const data = Float32Array.from({ length: 2 * 2 * 8 * 8 }, (_, i) => Math.sin(i));
      const fed = await verifyModels(scaledConv(1, dynamic), scaledConv(1, dynamic), { feeds: { x: { dims: [2, 2, 8, 8], data, dtype: "float32" } } });
      expect(fed.inputSets).toBe(1);
    });

    it("a packed output is sliced per (image, channel), and a scale-relative tolerance is each image's own", () => {
      expect(sliceLayout([3, 2, 4, 4], 3)).toEqual({ count: 6, inner: 16, images: 3 });
      expect(sliceLayout([3, 5], 3)).toEqual({ count: 15, inner: 1, images: 3 });
      expect(sliceLayout([3], 3)).toEqual({ count: 3, inner: 1, images: 3 });
      expect(sliceLayout([1, 2, 4], 3)).toEqual({ count: 2, inner: 4, images: 1 }); // axis 0 is not the batch
      expect(sliceLayout([3, 2, 4, 4])).toEqual({ count: 2, inner: 16, images: 1 });
      // Images of scale 1 and 100, 2 channels of 2 values each; image 0 off by 0.5.
      const ref = Float64Array.from([1, -1, 0.5, 0.5, 100, 50, -100, 20]);
      const cand = Float64Array.from(ref, (v, i) => (i === 1 ? v + 0.5 : v));
      const packed = sliceLayout([2, 2, 2], 2);
      const st = compareValues(ref, cand, undefined, packed);
      expect(Array.from(st.sliceScale)).toEqual([1, 0.5, 100, 100]);
      expect(Array.from(st.sliceMaxAbs)).toEqual([0.5, 0, 0, 0]);
      expect(Array.from(sliceSpread(ref, cand, packed))).toEqual([0.5, 0, 0, 0]);
      // 1% of the whole set's scale (100) would allow it; 1% of image 0's (1) does not.
      expect(compareValues(ref, cand, { atol: 0, rtol: 0, tolerance: 0.01 }, packed).exceeding).toBe(1);
      expect(compareValues(ref, cand, { atol: 0, rtol: 0, tolerance: 0.01 }, sliceLayout([2, 2, 2])).exceeding).toBe(0);
    });

    it("a candidate wrong only on the pattern image 2 carries fails there, judged at that image's own scale", async () => {
      // y = Conv(x) [+ 1e-3·Relu(min|x| over the image − 16)]: only an image whose every value is
      // beyond 16 in magnitude (pattern 2: uniform ± large channel constants) is changed.
      const model = (wrong: boolean) => {
        const b = new GraphBuilder(13);
        b.input("x", dynamic);
        const y = b.op("Conv", ["x", b.constant("w", [2, 2, 3, 3], weights(36))], { pads: [1, 1, 1, 1] });
        if (!wrong) b.output(b.op("Identity", [y], {}, "y"));
        else {
          const low = b.op("ReduceMin", [b.op("Abs", ["x"])], { axes: [1, 2, 3], keepdims: 1 });
          const gate = b.op("Relu", [b.op("Sub", [low, b.constant("t", [], [16])])]);
          b.output(b.op("Add", [y, b.op("Mul", [gate, b.constant("e", [], [1e-3])])], {}, "y"));
        }
        return b.build();
      };
      // Two patterns asked: set 0 runs patterns 0 and 1 only, on which the candidate is right; the
      // packed batch's image 2 carries pattern 2.
      const r = await verifyModels(model(false), model(true), { runs: 2 });
      expect(r.inputSets).toBe(3);
      expect(r.ok).toBe(false);
      expect(r.outputs[0]!.reason).toMatch(/\(input set 2 image 2; /);
      expect(r.outputs[0]!.worstRun).toBe(2);
      expect((await verifyModels(model(false), model(false), { runs: 2 })).ok).toBe(true);
    });
  });

  it("a fold specialized to the size it was proven at (SAME_UPPER pads computed for 8x8) fails at 9x9", async () => {
    const model = sameUpperConv;
    const r = await verifyModels(model(), model([0, 0, 1, 1]), { shapes: { x: [1, 2, 8, 8] } });
    expect(r.ok).toBe(false);
    expect(r.outputs[0]!.shapeMismatch).toMatch(/\[3,2,5,5\] in the reference, \[3,2,4,4\] in the candidate \(input set 3: x=3x2x9x9\)/);
  });

  it("sizes the model refuses are skipped, and what stays unproven is said", async () => {
    // y = Concat(x, Upsample(MaxPool(x))): H and W must be even.
    const b = new GraphBuilder(13);
    b.input("x", ["N", 2, "H", "W"]);
    const pooled = b.op("MaxPool", ["x"], { kernel_shape: [2, 2], strides: [2, 2] });
    const scales = b.constant("scales", [4], [1, 1, 2, 2]);
    const up = b.op("Resize", [pooled, "", scales], { mode: "nearest" });
    b.output(b.op("Concat", ["x", up], { axis: 1 }, "y"));
    const m = b.build();
    const r = await verifyModels(m, m, { runs: 1 });
    expect(r.ok).toBe(true);
    expect(r.shapeSets).toEqual([{ x: [1, 2, 8, 8] }, { x: [3, 2, 8, 8] }]);
    expect(r.notes.join("\n")).toMatch(/dynamic dim 'H' proven at 8, 8 only: the reference refused the sizes of the other parity tried \(.*\)/);
  });
});

describe("too strict no more", () => {
  it("a float16 network inside float32 inputs/outputs is judged at float16's precision", async () => {
    const build = () => {
      const n = new Net(3, 13, DataType.FLOAT16);
      n.input("x", [1, 4, 6, 6], DataType.FLOAT);
      const half = n.op("Cast", ["x"], { to: DataType.FLOAT16 });
      const y = n.op("Relu", [n.add(n.convBn(half, 4, 4, 3), n.convBn(half, 4, 4, 1))]);
      n.output(n.op("Cast", [y], { to: DataType.FLOAT }), undefined, DataType.FLOAT);
      return n.build();
    };
    const model = build();
    const folded = optimize(model).model;
    expect(folded.graph.nodes.filter((x) => x.opType === "Conv")).toHaveLength(1);
    const r = await verifyModels(model, folded);
    expect(r.outputs[0]!.precision).toBe("float16");
    expect(r.outputs[0]!.tolerance).toBe(4 * 2 ** -23); // the floor: 4 ulps of the output's own type
    expect(r.maxRel).toBeGreaterThan(1e-4); // float16 rounding: passes because it is the measured noise
    expect(r.maxRel).toBeLessThan(8 * r.outputs[0]!.noiseRel!);
    expect(r.ok).toBe(true);
    // A wrong value still fails: a bias 10% of the output off.
    const wrong = folded.clone();
    const conv = wrong.graph.nodes.find((x) => x.opType === "Conv")!;
    const bias = wrong.graph.initializers.get(conv.inputs[2]!)!;
    const { Tensor } = await import("../src/ir/tensor.js");
    const shift = 0.1 * r.outputs[0]!.scale;
    wrong.graph.initializers.set(bias.name, Tensor.fromFloat64(bias.name, bias.dtype, bias.dims, bias.toFloat64().map((v) => v + shift)));
    expect((await verifyModels(model, wrong)).ok).toBe(false);
  });

  it("a correct fold of a deep network passes: the allowance follows the reference's own float32 noise", async () => {
    const { net, x } = deepTrainedNet(48);
    const model = net.finish(x);
    const folded = optimize(model).model;
    expect(folded.graph.nodes.filter((n) => n.opType === "Conv")).toHaveLength(48);
    const r = await verifyModels(model, folded, { runs: 2 });
    expect(r.ok, JSON.stringify(r.outputs[0])).toBe(true);
    expect(r.calibrated).toBe(true);
    // The network's own rounding spread exceeds float32's floor, and the fold's error is of its size.
    expect(r.outputs[0]!.noiseRel).toBeGreaterThan(1e-4);
    expect(r.maxRel).toBeGreaterThan(1e-4);
    expect(r.maxRel).toBeLessThan(8 * r.outputs[0]!.noiseRel!);
  });

  it("in that deep network a wrong fold still fails, and bisection names it, not an innocent fold", async () => {
    const { net, x, channels: c } = deepTrainedNet(40);
    // One block whose BN sits before a zero-padded 3x3: folding it is wrong at the border.
    const inner = net.convBn(x, c, c, 1, { pads: [0, 0, 0, 0] });
    const wrongBlock = net.convBn(inner, c, c, 3);
    const model = net.finish(net.op("Relu", [net.add(wrongBlock, net.convBn(x, c, c, 1))], {}, "last/relu"));
    const unsafe = { unsafeIgnoreBorderRule: true };
    const { model: bad, report } = optimize(model, unsafe);
    expect((await verifyModels(model, bad, { runs: 2 })).ok).toBe(false);
    const culprit = await findCulprit(model, report.rewrites, unsafe, { runs: 2 });
    expect(culprit).toBeDefined();
    const innerBn = model.graph.nodes.find((n) => n.outputs.includes(inner))!;
    expect(culprit!.rewrite.removed.map((n) => n.name)).toContain(innerBn.name);
    // With the safe rules every fold is right, and no fold is blamed.
    const safe = optimize(model);
    expect(await findCulprit(model, safe.report.rewrites, {}, { runs: 2 })).toBeUndefined();
    expect((await verifyModels(model, safe.model, { runs: 2 })).ok).toBe(true);
  });
});

  it("a channel whose measured noise is exactly 0 on a set takes its relative noise from the other sets (graph-fuzz seed 992)", async () => {
    // (k − x) + x at |x| ≫ k rounds k to the grid of x: moving x or k by an ulp moves nothing, so the
    // spread measures 0 on the large-constant pattern, while the fold (a 1x1 conv: weight 0, bias k) is exact.
    const k = 0.469518;
    const reference = () => {
      const b = new GraphBuilder(13);
      b.input("x", ["N", 6, 14, 8]);
      b.output(b.op("Add", [b.op("Sub", [b.constant("k", [], [k]), "x"]), "x"], {}, "y"));
      return b.build();
    };
    const fold = (bias: number) => {
      const b = new GraphBuilder(13);
      b.input("x", ["N", 6, 14, 8]);
      const w = b.constant("w", [6, 1, 1, 1], [0, 0, 0, 0, 0, 0]), bb = b.constant("b", [6], Array(6).fill(bias));
      b.output(b.op("Conv", ["x", w, bb], { kernel_shape: [1, 1], group: 6 }, "y"));
      return b.build();
    };
    const right = await verifyModels(reference(), fold(k));
    expect(right.ok).toBe(true);
    expect(right.maxAbs).toBeGreaterThan(4 * 2 ** -23 * k); // beyond the 4-ulp floor that refused it before
    // A wrong fold of the same shape still fails (its bias 1e-4 off: ~20x the error of the right one).
    for (const off of [1e-3, 1e-4]) {
      const wrong = await verifyModels(reference(), fold(k * (1 + off)));
      expect(wrong.ok).toBe(false);
      expect(wrong.outputs[0]!.reason).toMatch(/> allowed/);
    }
  });

describe("non-finite values", () => {
  /** y = x / d, d has a zero channel (reference: ±Inf there); candidate: x · (1/d) with 1/0 := 0. */
  const pair = () => {
    const ref = new GraphBuilder(13);
    ref.input("x", [1, 2, 3, 3]);
    ref.output(ref.op("Div", ["x", ref.constant("d", [1, 2, 1, 1], [2, 0])], {}, "y"));
    const cand = new GraphBuilder(13);
    cand.input("x", [1, 2, 3, 3]);
    cand.output(cand.op("Mul", ["x", cand.constant("inv", [1, 2, 1, 1], [0.5, 0])], {}, "y"));
    return [ref.build(), cand.build()] as const;
  };

  it("where the reference is NaN/Inf nothing is promised: counted, not compared", async () => {
    const [ref, cand] = pair();
    const r = await verifyModels(ref, cand);
    expect(r.ok).toBe(true);
    expect(r.outputs[0]!.referenceNonFinite).toBe(27); // one channel of 9 values, 3 input sets
    expect(r.outputs[0]!.nonFiniteMismatches).toBe(0);
  });

  it("NaN/Inf in the candidate where the reference is finite fails, reported apart", async () => {
    const [ref, cand] = pair();
    const r = await verifyModels(cand, ref);
    expect(r.ok).toBe(false);
    expect(r.outputs[0]!.nonFiniteMismatches).toBe(27);
    expect(r.outputs[0]!.nonFinite).toMatch(/reference 0, candidate -?Infinity/);
    expect(r.maxAbs).toBe(0);
  });

  it("a reference that is NaN/Inf everywhere proves nothing", async () => {
    const b = new GraphBuilder(13);
    b.input("x", [4]);
    b.output(b.op("Div", ["x", b.constant("z", [1], [0])], {}, "y"));
    const r = await verifyModels(b.build(), b.build());
    expect(r.ok).toBe(false);
    expect(r.outputs[0]!.reason).toMatch(/NaN\/Inf everywhere/);
  });
});

describe("user tolerances", () => {
  const pair = (delta: number) => {
    const make = (d: number) => {
      const b = new GraphBuilder(13);
      b.input("x", [1, 4]);
      b.output(b.op("Add", ["x", b.constant("c", [4], [10, 20, 30, 40 + d])], {}, "y"));
      return b.build();
    };
    return [make(0), make(delta)] as const;
  };

  it("atol and rtol are elementwise, as numpy.isclose: |Δ| ≤ atol + rtol·|ref|", async () => {
    const [a, b] = pair(0.01);
    expect((await verifyModels(a, b, { atol: 0.011 })).ok).toBe(true);
    const tight = await verifyModels(a, b, { atol: 0.009 });
    expect(tight.ok).toBe(false);
    expect(tight.criterion).toBe("user");
    expect(tight.outputs[0]!.exceeding).toBe(3); // one element in each of 3 input sets
    expect(tight.outputs[0]!.reason).toMatch(/outside atol 0.009/);
    // rtol 1e-3 of |ref| ≈ 40 allows 0.04 at that element.
    expect((await verifyModels(a, b, { rtol: 1e-3 })).ok).toBe(true);
    expect((await verifyModels(a, b, { rtol: 1e-5 })).ok).toBe(false);
  });
});

describe("reports", () => {
  it("counts the input sets it really ran", async () => {
    const m = scaledConv(1, [1, 2, 6, 6]);
    const feeds = { x: { dims: [1, 2, 6, 6], data: new Float32Array(72).fill(1), dtype: "float32" } };
    const r = await verifyModels(m, m, { feeds, runs: 4 });
    expect(r.inputSets).toBe(1); // the same data four times is one input set
    expect((await verifyModels(m, m, { runs: 2 })).inputSets).toBe(2);
    // A model without inputs has one input set.
    const c = new GraphBuilder(13);
    c.output(c.op("Identity", [c.constant("k", [2], [1, 2])], {}, "y"));
    expect((await verifyModels(c.build(), c.build())).inputSets).toBe(1);
  });

  it("names both files and carries a schema tag", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-proof-"));
    try {
      const a = path.join(dir, "a.onnx"), b = path.join(dir, "b.onnx");
      saveModel(scaledConv(1), a);
      saveModel(scaledConv(1), b);
      const r = await verifyModels(loadModel(a), loadModel(b), { referenceFile: a, candidateFile: b, runs: 1 });
      expect(r).toMatchObject({ schema: "reparam-onnx/verify-report/1", reference: a, candidate: b, ok: true });
      expect(r.outputs[0]!.shapes).toEqual([[1, 2, 6, 6], [3, 2, 6, 6]]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("onnxruntime's whole error text is kept (a shape error's index lines)", async () => {
    const m = scaledConv(1, [1, 2, 6, 6]);
    const wrong = { x: new ort.Tensor("float32", new Float32Array(2 * 2 * 6 * 6), [2, 2, 6, 6]) };
    const e = await runModel(m, wrong).catch((err) => err as Error);
    expect(e).toBeInstanceOf(ModelError);
    expect(e.message).toMatch(/index: 0 Got: 2 Expected: 1/);
    expect(e.message).not.toContain("\n");
    expect(makeInputs(m, 0).x!.dims).toEqual([1, 2, 6, 6]);
  });
});

describe("shape planning (no onnxruntime)", () => {
  const accepts = (ok: (s: Record<string, number[]>) => boolean) => async (s: Record<string, number[]>) => (ok(s) ? undefined : "refused");

  it("a dim named alike in two inputs is one value; a dim fixed by the candidate is not varied", async () => {
    const plan = await planShapes(
      [
        { name: "a", reference: ["B", 3, "H", "H"], candidate: ["B", 3, "H", "H"] },
        { name: "b", reference: ["B", "T"], candidate: ["B", 5] },
      ],
      {}, new Set(), accepts(() => true),
    );
    expect(plan.sets).toEqual([{ a: [1, 3, 8, 8], b: [1, 5] }, { a: [3, 3, 9, 9], b: [3, 5] }]);
    expect(plan.notes).toEqual([]);
  });

  it("inputs given as data keep their shape and bind the dims they name", async () => {
    const plan = await planShapes(
      [{ name: "x", reference: ["N", 4], candidate: ["N", 4] }, { name: "m", reference: ["N", "L"], candidate: ["N", "L"] }],
      { x: [2, 4] }, new Set(["x"]), accepts(() => true),
    );
    expect(plan.sets).toEqual([{ x: [2, 4], m: [2, 8] }, { x: [2, 4], m: [2, 9] }]);
  });

  it("a model refusing every size is said in one line", async () => {
    const plan = await planShapes([{ name: "x", reference: ["N", "C"], candidate: ["N", "C"] }], {}, new Set(), accepts(() => false));
    expect(plan.sets).toEqual([]);
    expect(plan.notes[0]).toMatch(/^the reference runs at none of x=1x8, x=1x16, .*: refused$/);
  });
});

describe("re-rounding the reference (noise.ts)", () => {
  it("moves arithmetic weights by exactly one ulp each and never a structural constant", () => {
    const b = new GraphBuilder(13);
    b.input("x", [1, 2, 4, 4]);
    const w = b.constant("w", [2, 2, 1, 1], [0.1, 0.2, 0.3, 0.4]);
    const two = b.constant("two", [1], [2]);
    const y = b.op("Pow", [b.op("Conv", ["x", w]), two]);
    b.output(b.op("Mul", [y, b.constant("k", [1], [0.5])]));
    const m = b.build();
    const k = m.graph.nodes.find((n) => n.opType === "Mul")!.inputs[1]!;
    const weights = perturbableWeights(m);
    expect(weights.map((t) => t.name).sort()).toEqual([k, w].sort());
    const before = Float32Array.from(m.graph.initializers.get(w)!.toFloat64());
    const feeds = new WeightFeeds(weights);
    const after = feeds.perturbed(5).find((f) => f.name === w)!.data as Float32Array;
    for (let i = 0; i < before.length; i++) {
      const v = before[i]!, ulp = 2 ** (Math.floor(Math.log2(v)) - 23);
      expect(Math.abs(after[i]! - v)).toBe(ulp);
    }
    // Another seed, other directions; the weights as written come back; the source model is untouched.
    expect(Array.from(feeds.perturbed(6)[0]!.data)).not.toEqual(Array.from(feeds.perturbed(5)[0]!.data));
    expect(Array.from(feeds.original().find((f) => f.name === w)!.data)).toEqual(Array.from(before));
    expect(Array.from(m.graph.initializers.get(w)!.toFloat64())).toEqual(Array.from(before));
    // Lifted: the weights become inputs; the exponent stays an initializer.
    const lifted = liftedModel(m, weights);
    expect([...lifted.graph.initializers.keys()]).toEqual([two]);
    expect(lifted.graph.inputs.map((v) => v.name).sort()).toEqual(["x", w, k].sort());
    expect([...m.graph.initializers.keys()].sort()).toEqual([k, two, w].sort());
  });

  it("one ulp of the value's binade: down from a power of two, at the edges of the range, float16 and float64", () => {
    const f32 = Float32Array.from([1, -1, 0, 3.4028234663852886e38, 2 ** -149, 2 ** -126, Infinity, NaN]);
    const up = f32.slice(), down = f32.slice();
    const ones = { word: () => 0xffffffff } as unknown as RandomBits, zeros = { word: () => 0 } as unknown as RandomBits;
    moveByOneUlp("float32", up, ones);
    moveByOneUlp("float32", down, zeros);
    expect(Array.from(up)).toEqual([1 + 2 ** -23, -1 - 2 ** -23, 0, Infinity, 2 ** -148, 2 ** -126 + 2 ** -149, Infinity, NaN]);
    expect(Array.from(down)).toEqual([1 - 2 ** -23, -1 + 2 ** -23, 0, 3.4028234663852886e38 - 2 ** 104, 0, 2 ** -126 - 2 ** -149, Infinity, NaN]);
    const half = Uint16Array.from([floatToHalf(1), floatToHalf(2), floatToHalf(1.5)]);
    moveByOneUlp("float16", half, zeros);
    expect(Array.from(half).map(halfToFloat)).toEqual([1 - 2 ** -10, 2 - 2 ** -9, 1.5 - 2 ** -10]);
    const f64 = Float64Array.from([1, 0.1, -3]);
    moveByOneUlp("float64", f64, ones);
    expect(Array.from(f64)).toEqual([1 + 2 ** -52, 0.1 + 2 ** -56, -3 - 2 ** -51]);
  });

  it("the first sample moves the weights read from the file in place, never the model's own values", () => {
    const n = 2 ** 19; // 2 MiB of float32: left in the file at load, read afresh by each data()
    const b = new GraphBuilder(13);
    b.input("x", [1, n]);
    const big = b.constant("big", [1, n], Float64Array.from({ length: n }, (_, i) => Math.sin(i) + 2));
    const small = b.constant("small", [1, 4], [0.5, 1.5, 2.5, 3.5]);
    b.output(b.op("Add", [b.op("Mul", ["x", big]), b.op("ReduceSum", ["x"], { keepdims: 1 })]), undefined);
    b.output(b.op("Mul", [b.op("Slice", ["x", b.int64("s", [0]), b.int64("e", [4]), b.int64("a", [1])]), small]));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-noise-"));
    try {
      saveModel(b.build(), path.join(dir, "m.onnx"));
      const m = loadModel(path.join(dir, "m.onnx"));
      const weights = perturbableWeights(m);
      expect(weights.map((t) => t.name).sort()).toEqual([big, small].sort());
      const feeds = new WeightFeeds(weights);
      const asWritten = feeds.original();
      const bigRead = asWritten.find((f) => f.name === big)!.data, smallRead = asWritten.find((f) => f.name === small)!.data;
      expect(m.graph.initializers.get(big)!.keeps(bigRead)).toBe(false);
      expect(m.graph.initializers.get(small)!.keeps(smallRead)).toBe(true);
      const moved = feeds.perturbed(3);
      expect(moved.find((f) => f.name === big)!.data).toBe(bigRead); // moved in place
      expect(moved.find((f) => f.name === small)!.data).not.toBe(smallRead); // the kept copy is not touched
      const before = Float32Array.from(m.graph.initializers.get(big)!.data() as Float32Array);
      const after = moved.find((f) => f.name === big)!.data as Float32Array;
      for (let i = 0; i < n; i += 997) expect(Math.abs(after[i]! - before[i]!)).toBe(2 ** (Math.floor(Math.log2(before[i]!)) - 23));
      expect(Array.from(m.graph.initializers.get(small)!.data())).toEqual([0.5, 1.5, 2.5, 3.5]);
      // The next sample starts again from the values as written.
      const again = feeds.perturbed(4).find((f) => f.name === big)!.data as Float32Array;
      for (let i = 0; i < n; i += 997) expect(Math.abs(again[i]! - before[i]!)).toBe(2 ** (Math.floor(Math.log2(before[i]!)) - 23));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a weight read inside an If branch, or by a non-arithmetic slot, stays as written", () => {
    const b = new GraphBuilder(13);
    b.input("x", [4]);
    b.input("c", [1], DataType.BOOL);
    const w = b.constant("w", [4], [1, 2, 3, 4]);
    const v = b.constant("v", [4], [5, 6, 7, 8]);
    // Each branch adds w to x: a read of the outer w that no input of the If lists.
    const branch = (out: string) => {
      const g = new GraphBuilder(13);
      g.op("Add", ["x", w], {}, out);
      g.output(out, [4]);
      const p = g.build().graph.toProto();
      p.name = out;
      return onnx.AttributeProto.create({ name: out === "t" ? "then_branch" : "else_branch", type: onnx.AttributeProto.AttributeType.GRAPH, g: p });
    };
    const sum = b.op("Add", ["x", w]);
    const picked = "picked";
    b.nodes.push(new Node("if", "If", ["c"], [picked], [branch("t"), branch("e")]));
    b.output(b.op("Add", [b.op("Mul", [sum, v]), picked], {}, "y"));
    const m = b.build();
    expect(perturbableWeights(m).map((t) => t.name)).toEqual([v]);
  });
});

describe("the allowance is the measured noise, per channel (issue: real errors passed under a fixed floor)", () => {
  /** x [N,4,H,W] → Conv 3x3 (weights × wScale, bias) [→ × per-channel scale] [+ a float16 side path] → y */
  const conv = (opts: { wScale?: number; bias?: number[]; channelScale?: number[]; halfSide?: boolean }) => {
    const b = new GraphBuilder(13);
    b.input("x", ["N", 4, "H", "W"]);
    const c = opts.channelScale?.length ?? 4;
    let y = b.op("Conv", ["x", b.constant("w", [c, 4, 3, 3], weights(c * 36, 0.3 * (opts.wScale ?? 1))), b.constant("b", [c], opts.bias ?? new Array(c).fill(0))], { pads: [1, 1, 1, 1] });
    if (opts.channelScale) y = b.op("Mul", [y, b.constant("s", [1, c, 1, 1], opts.channelScale)]);
    if (opts.halfSide) {
      const m = b.op("ReduceMean", ["x"], { axes: [2, 3], keepdims: 1 });
      const half = b.op("Cast", [b.op("Cast", [m], { to: DataType.FLOAT16 })], { to: DataType.FLOAT });
      y = b.op("Add", [y, b.op("Mul", [half, b.constant("k", [1], [1e-3])])]);
    }
    b.output(b.op("Identity", [y], {}, "y"));
    return b.build();
  };

  it("a large constant offset does not hide a real difference (1000 + small conv vs 1000)", async () => {
    const ref = conv({ wScale: 5e-4, bias: [1000, 1000, 1000, 1000] });
    const r = await verifyModels(ref, conv({ wScale: 0, bias: [1000, 1000, 1000, 1000] }));
    expect(r.maxRel).toBeLessThan(1e-4); // inside the old fixed float32 floor
    expect(r.ok).toBe(false);
    expect(r.outputs[0]!.reason).toMatch(/max abs .* > allowed .* in channel \d/);
    expect((await verifyModels(ref, ref)).ok).toBe(true);
  });

  it("a negligible float16 side path does not put the whole output at float16's precision", async () => {
    const ref = conv({ halfSide: true });
    const r = await verifyModels(ref, conv({ halfSide: true, bias: [0.02, 0.02, 0.02, 0.02] }));
    expect(r.outputs[0]!.precision).toBe("float16");
    expect(r.maxRel).toBeLessThan(1e-2);
    expect(r.ok).toBe(false);
    expect((await verifyModels(ref, ref)).ok).toBe(true);
  });

  it("small channels are judged at their own scale, not the largest channel's (boxes ×100 beside logits)", async () => {
    const scales = [100, 100, 100, 100, 1, 1, 1, 1];
    const ref = conv({ channelScale: scales });
    const wrong = conv({ channelScale: scales, bias: [0, 0, 0, 0, 0.02, 0.02, 0.02, 0.02] });
    const r = await verifyModels(ref, wrong);
    expect(r.maxRel).toBeLessThan(1e-4); // 0.02 against boxes of ~100
    expect(r.ok).toBe(false);
    expect(r.outputs[0]!.reason).toMatch(/in channel [4-7]/);
    // The same model with its Mul folded into the conv (exact in float64, rounded once) passes.
    const folded = optimize(ref).model;
    expect(folded.graph.nodes.some((n) => n.opType === "Mul")).toBe(false);
    expect((await verifyModels(ref, folded)).ok).toBe(true);
  });

  it("when the reference's own noise is too large everywhere, the verdict says it cannot be proven (no blame)", async () => {
    // y = (x + 1e8) − 1e8: float32 rounding of the large intermediate (ulp 8) is most of y.
    const b = new GraphBuilder(13);
    b.input("x", [1, 4, 4, 4]);
    const big = b.op("Add", ["x", b.constant("c", [1], [1e8])]);
    b.output(b.op("Sub", [big, b.constant("d", [1], [1e8])], {}, "y"));
    const m = b.build();
    const r = await verifyModels(m, m);
    expect(r.ok).toBe(false);
    expect(r.inconclusive).toBe(true);
    expect(r.outputs[0]!.inconclusive).toBe(true);
    expect(r.outputs[0]!.reason).toMatch(/cannot be proven on these inputs: the reference's own float32 rounding noise is \d.*% of this output/);
    // A wrong candidate beside it is not called inconclusive when another output really fails.
    expect((await verifyModels(scaledConv(1), scaledConv(1.5))).inconclusive).toBeUndefined();
  });
});
