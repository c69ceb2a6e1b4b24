import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { GraphBuilder } from "../src/ir/builder.js";
import { DataType, halfToFloat } from "../src/ir/dtype.js";
import { ModelError, UsageError } from "../src/ir/errors.js";
import type { Model } from "../src/ir/graph.js";
import { readNpy, writeNpy } from "../src/verify/npy.js";
import { SET_SEED, cudaAvailable, makeInputs, runModel, verifyModels } from "../src/verify/verify.js";

// Weights are a deterministic function of the index, so two builds of the same net are identical.
const weights = (n: number, scale = 0.3, phase = 0) => Array.from({ length: n }, (_, i) => Math.sin(1.7 * i + phase) * scale);

interface ConvNet {
  c?: number;
  dtype?: number;
  /** Added to output channel 1's bias. */
  biasDelta?: number;
  /** Added to weight element 4 (centre tap of (0,0)). */
  weightDelta?: number;
  /** How the 1-pixel border is made: conv zero padding, an explicit Pad node, or none. */
  pad?: "conv" | "constant" | "reflect" | "none";
  dims?: (number | string)[];
}

/** x -> [Pad] -> Conv 3x3 -> y */
function convNet(o: ConvNet = {}): Model {
  const c = o.c ?? 2;
  const b = new GraphBuilder(13, o.dtype ?? DataType.FLOAT);
  const x = b.input("x", o.dims ?? ["N", c, 6, 6]);
  const w = weights(c * c * 9);
  w[4] += o.weightDelta ?? 0;
  const wName = b.constant("w", [c, c, 3, 3], w);
  const bias = weights(c, 0.2, 1);
  bias[1] = bias[1]! + (o.biasDelta ?? 0);
  const bName = b.constant("b", [c], bias);
  const pad = o.pad ?? "conv";
  let input = x;
  if (pad === "constant" || pad === "reflect") input = b.op("Pad", [x, b.int64("pads", [0, 0, 1, 1, 0, 0, 1, 1])], { mode: pad });
  b.output(b.op("Conv", [input, wName, bName], { pads: pad === "conv" ? [1, 1, 1, 1] : [0, 0, 0, 0] }, "conv"), undefined);
  return b.build();
}

async function rejects(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

describe("verifyModels", () => {
  it("identical models: ok, maxAbs 0, dynamic dims -> 1", async () => {
    const r = await verifyModels(convNet(), convNet());
    expect(r.ok).toBe(true);
    expect(r.maxAbs).toBe(0);
    expect(r.maxRel).toBe(0);
    expect(r.runs).toBe(3);
    expect(r.provider).toBe("cpu");
    expect(r.tolerance).toBe(4 * 2 ** -23); // the calibrated allowance's floor: 4 float32 ulps of the scale
    expect(r.inputShapes).toEqual({ x: [1, 2, 6, 6] });
    expect(r.outputs).toHaveLength(1);
    expect(r.outputs[0]).toMatchObject({ name: "conv_out", ok: true, maxAbs: 0 });
    // run 2 adds ±20..100 per channel: the output scale must show it.
    expect(r.outputs[0]!.scale).toBeGreaterThan(5);
    expect(r.timeMs).toBeGreaterThan(0);
  });

  it("a bias changed by 1e-2: not ok, maxAbs = 1e-2", async () => {
    const r = await verifyModels(convNet(), convNet({ biasDelta: 1e-2 }));
    expect(r.ok).toBe(false);
    expect(r.outputs[0]!.ok).toBe(false);
    expect(r.maxAbs).toBeCloseTo(1e-2, 3); // |Δ| < 5e-4: float32 rounding at output scale
    expect(r.maxRel).toBeGreaterThan(1e-4);
  });

  it("a weight changed by 1e-2: not ok, maxAbs ≈ 1e-2·max|x|", async () => {
    const ref = convNet();
    const r = await verifyModels(ref, convNet({ weightDelta: 1e-2 }));
    expect(r.ok).toBe(false);
    let maxInput = 0;
    r.shapeSets.forEach((shapes, set) => {
      for (let run = 0; run < 3; run++)
        for (const v of makeInputs(ref, run, { shapes, seed: 1 + SET_SEED * set }).x!.data as Float32Array) maxInput = Math.max(maxInput, Math.abs(v));
    });
    expect(r.maxAbs).toBeLessThanOrEqual(1e-2 * maxInput * 1.001 + 1e-4);
    expect(r.maxAbs).toBeGreaterThan(1e-2 * maxInput * 0.2);
  });

  it("tolerance is relative to the output scale, and configurable", async () => {
    const loose = await verifyModels(convNet(), convNet({ biasDelta: 1e-2 }), { tolerance: 0.05 });
    expect(loose.ok).toBe(true);
    expect(loose.tolerance).toBe(0.05);
    expect(loose.maxAbs).toBeCloseTo(1e-2, 3);
  });

  it("a border-only difference is caught: Conv pad 1 vs Pad(reflect) + Conv", async () => {
    const same = await verifyModels(convNet({ pad: "conv" }), convNet({ pad: "constant" }));
    expect(same.ok).toBe(true); // zero Pad + Conv is the same function: no false alarm
    expect(same.maxAbs).toBeLessThan(1e-3);
    const r = await verifyModels(convNet({ pad: "conv" }), convNet({ pad: "reflect" }));
    expect(r.ok).toBe(false);
    expect(r.outputs[0]!.shapeMismatch).toBeUndefined();
  });

  it("a BN folded across zero padding (wrong fold) is caught", async () => {
    // reference: y = Conv(x·s + t) — the BN output is zero-padded; candidate folds s and t into
    // the conv, which is right away from the border only (the padded taps lose t).
    const s = [1.5, 0.5];
    const t = [2, -3];
    const w = weights(2 * 2 * 9);
    const bias = [0.1, -0.2];
    const pair = (pads: number[]) => {
      const ref = new GraphBuilder(13);
      ref.input("x", ["N", 2, 6, 6]);
      const scaled = ref.op("Mul", ["x", ref.constant("s", [1, 2, 1, 1], s)]);
      const shifted = ref.op("Add", [scaled, ref.constant("t", [1, 2, 1, 1], t)]);
      ref.output(ref.op("Conv", [shifted, ref.constant("w", [2, 2, 3, 3], w), ref.constant("b", [2], bias)], { pads }, "y"));
      const folded = new GraphBuilder(13);
      folded.input("x", ["N", 2, 6, 6]);
      const w2 = w.map((v, i) => v * s[Math.floor(i / 9) % 2]!);
      const b2 = bias.map((b, o) => b + w.slice(o * 18, o * 18 + 18).reduce((acc, v, i) => acc + v * t[Math.floor(i / 9)]!, 0));
      folded.output(folded.op("Conv", ["x", folded.constant("w", [2, 2, 3, 3], w2), folded.constant("b", [2], b2)], { pads }, "y"));
      return [ref.build(), folded.build()] as const;
    };
    const [ref, folded] = pair([1, 1, 1, 1]);
    const r = await verifyModels(ref, folded);
    expect(r.ok).toBe(false);
    expect(r.maxAbs).toBeGreaterThan(0.1);
    // Without padding the same fold is exact: the error above is the border's.
    const [ref0, folded0] = pair([0, 0, 0, 0]);
    const ok = await verifyModels(ref0, folded0);
    expect(ok.ok).toBe(true);
    expect(ok.maxRel).toBeLessThan(1e-5);
  });

  it("float16 models", async () => {
    const r = await verifyModels(convNet({ dtype: DataType.FLOAT16 }), convNet({ dtype: DataType.FLOAT16 }));
    expect(r.ok).toBe(true);
    expect(r.tolerance).toBe(4 * 2 ** -10); // 4 float16 ulps
    expect(r.maxAbs).toBe(0);
    const bad = await verifyModels(convNet({ dtype: DataType.FLOAT16 }), convNet({ dtype: DataType.FLOAT16, biasDelta: 0.5 }));
    expect(bad.ok).toBe(false);
    expect(bad.maxAbs).toBeGreaterThan(0.4);
    expect(bad.maxAbs).toBeLessThan(0.6);
    const x = makeInputs(convNet({ dtype: DataType.FLOAT16 }), 2).x!;
    expect(x.type).toBe("float16");
    expect(x.data).toBeInstanceOf(Uint16Array);
    // run 2 carries a large per-channel constant; decoded halves must show it.
    const first = halfToFloat((x.data as Uint16Array)[0]!);
    expect(Math.abs(first)).toBeGreaterThan(15);
  });

  it("outputs are decoded from float16 for comparison (float32 reference vs float16 cast candidate)", async () => {
    const ref = new GraphBuilder(13);
    ref.input("x", [4]);
    ref.output(ref.op("Identity", ["x"], {}, "y"));
    const cand = new GraphBuilder(13);
    cand.input("x", [4]);
    cand.output(cand.op("Cast", [cand.op("Cast", ["x"], { to: DataType.FLOAT16 })], { to: DataType.FLOAT }, "y"));
    const r = await verifyModels(ref.build(), cand.build(), { tolerance: 1e-3 });
    expect(r.ok).toBe(true); // half rounding: relative error ≤ 2^-11
    expect(r.maxAbs).toBeGreaterThan(0);
  });

  it("user feeds are used for every run", async () => {
    // Relu and Identity agree on positive inputs only.
    const relu = new GraphBuilder(13);
    relu.input("x", ["N", 2, "H", "W"]);
    relu.output(relu.op("Relu", ["x"], {}, "y"));
    const ident = new GraphBuilder(13);
    ident.input("x", ["N", 2, "H", "W"]);
    ident.output(ident.op("Identity", ["x"], {}, "y"));
    const random = await verifyModels(relu.build(), ident.build());
    expect(random.ok).toBe(false);
    const data = Float32Array.from({ length: 18 }, (_, i) => i + 1);
    const feeds = { x: { dims: [1, 2, 3, 3], data, dtype: "float32" } };
    const r = await verifyModels(relu.build(), ident.build(), { feeds, runs: 4 });
    expect(r.ok).toBe(true);
    expect(r.runs).toBe(4);
    expect(r.inputShapes).toEqual({ x: [1, 2, 3, 3] });
    expect(r.outputs[0]!.scale).toBe(18);
    // A feed from a .npy file.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-verify-"));
    try {
      const file = path.join(dir, "x.npy");
      writeNpy(file, [1, 2, 2, 2], Float32Array.from([1, -2, 3, -4, 5, -6, 7, -8]));
      const npy = readNpy(file);
      const r2 = await verifyModels(relu.build(), ident.build(), { feeds: { x: npy } });
      expect(r2.ok).toBe(false);
      expect(r2.maxAbs).toBe(8);
      expect(r2.inputShapes).toEqual({ x: [1, 2, 2, 2] });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("bad feeds and shapes are UsageErrors", async () => {
    const m = convNet();
    const wrongType = { x: { dims: [1, 2, 6, 6], data: new Float64Array(72), dtype: "float64" } };
    expect(await rejects(verifyModels(m, m, { feeds: wrongType }))).toBeInstanceOf(UsageError);
    const wrongDims = { x: { dims: [1, 3, 6, 6], data: new Float32Array(108), dtype: "float32" } };
    const e1 = await rejects(verifyModels(m, m, { feeds: wrongDims }));
    expect(e1).toBeInstanceOf(UsageError);
    expect(e1.message).toMatch(/dim 1 must be 2/);
    const short = { x: { dims: [1, 2, 6, 6], data: new Float32Array(7), dtype: "float32" } };
    expect((await rejects(verifyModels(m, m, { feeds: short }))).message).toMatch(/7 values do not fill shape/);
    const e2 = await rejects(verifyModels(m, m, { shapes: { y: [1] } }));
    expect(e2).toBeInstanceOf(UsageError);
    expect(e2.message).toMatch(/'y', which is not an input/);
    const feed = { x: { dims: [1, 2, 6, 6], data: new Float32Array(72), dtype: "float32" } };
    expect((await rejects(verifyModels(m, m, { feeds: feed, shapes: { x: [2, 2, 6, 6] } }))).message).toMatch(/conflicts with the given data's shape/);
  });

  it("shapes override dynamic dims", async () => {
    const r = await verifyModels(convNet(), convNet(), { shapes: { x: [3, 2, 6, 6] }, runs: 1 });
    expect(r.ok).toBe(true);
    expect(r.inputShapes).toEqual({ x: [3, 2, 6, 6] });
    expect(r.runs).toBe(1);
  });

  it("a different output shape or a missing output is reported, not thrown", async () => {
    const r = await verifyModels(convNet({ pad: "conv" }), convNet({ pad: "none" }));
    expect(r.ok).toBe(false);
    expect(r.outputs[0]!.shapeMismatch).toMatch(/\[1,2,6,6\] in the reference, \[1,2,4,4\] in the candidate/);
    const other = new GraphBuilder(13);
    other.input("x", ["N", 2, 6, 6]);
    other.output(other.op("Identity", ["x"], {}, "renamed"));
    const r2 = await verifyModels(convNet(), other.build());
    expect(r2.ok).toBe(false);
    expect(r2.outputs[0]!.shapeMismatch).toMatch(/no output named 'conv_out'/);
  });

  it("NaN in the candidate where the reference is finite is not ok", async () => {
    const ref = new GraphBuilder(13);
    ref.input("x", [1, 2, 4, 4]);
    ref.output(ref.op("Relu", ["x"], {}, "y"));
    const cand = new GraphBuilder(13);
    cand.input("x", [1, 2, 4, 4]);
    // Relu(x) + 0·sqrt(x): NaN wherever x < 0
    const nan = cand.op("Mul", [cand.op("Sqrt", ["x"]), cand.constant("zero", [1], [0])]);
    cand.output(cand.op("Add", [cand.op("Relu", ["x"]), nan], {}, "y"));
    const r = await verifyModels(ref.build(), cand.build(), { tolerance: 1 });
    expect(r.ok).toBe(false);
    // Reported apart from the numeric error: 16 negative inputs give 16 NaNs, the finite values agree.
    expect(r.outputs[0]!.nonFinite).toMatch(/reference 0, candidate NaN/);
    expect(r.outputs[0]!.nonFiniteMismatches).toBeGreaterThan(0);
    expect(r.outputs[0]!.reason).toMatch(/NaN\/Inf value\(s\) where the reference is finite/);
    expect(r.maxAbs).toBe(0);
  });

  it("onnxruntime's complaints about a model become a one-line ModelError", async () => {
    const bad = new GraphBuilder(13);
    bad.input("x", [2]);
    bad.output(bad.op("Add", ["x", bad.int64("k", [1, 2])]));
    const e = await rejects(runModel(bad.build(), makeInputs(bad.build(), 0)));
    expect(e).toBeInstanceOf(ModelError);
    expect(e.message).toMatch(/onnxruntime cannot load it: .*Type Error/);
    expect(e.message).not.toContain("\n");
    // A run-time failure (Reshape to an impossible shape), in the candidate.
    const ref = new GraphBuilder(13);
    ref.input("x", [6]);
    ref.output(ref.op("Identity", ["x"], {}, "y"));
    const cand = new GraphBuilder(13);
    cand.input("x", [6]);
    cand.output(cand.op("Reshape", ["x", cand.int64("s", [4, 4])], {}, "y"));
    // A candidate that fails where the reference runs is a failed proof (a broken rewrite), not bad input.
    const r2 = await verifyModels(ref.build(), cand.build());
    expect(r2.ok).toBe(false);
    expect(r2.candidateError).toMatch(/^candidate model: onnxruntime failed to run it at x=6: .*Reshape/);
    expect(r2.candidateError).not.toMatch(/onnxruntime_src|\n/);
    expect(r2.outputs[0]!.reason).toMatch(/^onnxruntime cannot load or run the candidate: /);
  });

  it("candidate inputs that differ from the reference's are a ModelError", async () => {
    const other = new GraphBuilder(13);
    other.input("image", ["N", 2, 6, 6]);
    other.output(other.op("Identity", ["image"], {}, "conv_out"));
    const e = await rejects(verifyModels(convNet(), other.build()));
    expect(e).toBeInstanceOf(ModelError);
    expect(e.message).toBe("candidate model's inputs differ from the reference's: missing 'x'; extra 'image'");
  });
});

describe("makeInputs", () => {
  const m = convNet({ c: 3, dims: [1, 3, 8, 8] });
  const at = (run: number) => makeInputs(m, run).x!.data as Float32Array;

  it("is deterministic per seed and run", () => {
    expect(Array.from(at(0))).toEqual(Array.from(at(0)));
    expect(Array.from(at(0))).not.toEqual(Array.from(at(1)));
    expect(Array.from(makeInputs(m, 0, { seed: 2 }).x!.data as Float32Array)).not.toEqual(Array.from(at(0)));
  });

  it("run 0 is standard normal", () => {
    const x = at(0);
    const mean = x.reduce((a, b) => a + b, 0) / x.length;
    const sd = Math.sqrt(x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length);
    expect(Math.abs(mean)).toBeLessThan(0.3);
    expect(sd).toBeGreaterThan(0.7);
    expect(sd).toBeLessThan(1.3);
  });

  it("run 1 has large borders and a per-channel offset", () => {
    const x = at(1);
    for (let c = 0; c < 3; c++) {
      const plane = x.subarray(c * 64, c * 64 + 64);
      const interior: number[] = [];
      const border: number[] = [];
      for (let h = 0; h < 8; h++)
        for (let w = 0; w < 8; w++) (h === 0 || h === 7 || w === 0 || w === 7 ? border : interior).push(plane[h * 8 + w]!);
      const centre = interior.reduce((a, b) => a + b, 0) / interior.length; // ≈ the channel offset
      const spread = (v: number[]) => v.reduce((a, b) => a + Math.abs(b - centre), 0) / v.length;
      expect(spread(border)).toBeGreaterThan(10 * spread(interior));
    }
    const offsets = [0, 1, 2].map((c) => x.subarray(c * 64 + 27, c * 64 + 29).reduce((a, b) => a + b, 0) / 2);
    expect(new Set(offsets.map((o) => Math.round(o))).size).toBeGreaterThan(1);
  });

  it("run 2 is uniform ±3 around a large per-channel constant", () => {
    const x = at(2);
    for (let c = 0; c < 3; c++) {
      const plane = Array.from(x.subarray(c * 64, c * 64 + 64));
      const lo = Math.min(...plane);
      const hi = Math.max(...plane);
      expect(hi - lo).toBeLessThanOrEqual(6);
      expect(Math.abs((hi + lo) / 2)).toBeGreaterThan(15);
    }
  });

  it("int64, int32 and bool inputs", () => {
    const b = new GraphBuilder(13);
    b.input("i", [10], DataType.INT64);
    b.input("j", [10], DataType.INT32);
    b.input("k", [10], DataType.BOOL);
    b.output(b.op("Identity", ["i"]), undefined, DataType.INT64);
    const inputs = makeInputs(b.build(), 0);
    expect(inputs.i!.type).toBe("int64");
    expect(Array.from(inputs.i!.data as BigInt64Array).every((v) => v >= 0n && v < 4n)).toBe(true);
    expect(Array.from(inputs.j!.data as Int32Array).every((v) => v >= 0 && v < 4)).toBe(true);
    expect(Array.from(inputs.k!.data as Uint8Array).every((v) => v === 0 || v === 1)).toBe(true);
  });
});

const cuda = await cudaAvailable();

describe("CUDA", () => {
  if (!cuda.ok) console.log(`CUDA provider test skipped: ${cuda.reason}`);

  it.skipIf(!cuda.ok)(`verifies on the CUDA execution provider, no CPU fallback${cuda.ok ? "" : ` (skipped: ${cuda.reason})`}`, async () => {
    console.log(`CUDA: ${cuda.reason}`);
    const r = await verifyModels(convNet(), convNet(), { provider: "cuda" });
    expect(r.provider).toBe("cuda");
    expect(r.ok).toBe(true);
    const bad = await verifyModels(convNet(), convNet({ biasDelta: 1e-2 }), { provider: "cuda" });
    expect(bad.ok).toBe(false);
  });

  it.skipIf(cuda.ok)("requesting cuda where it is unavailable is a one-line UsageError naming the install flag", async () => {
    const e = await rejects(verifyModels(convNet(), convNet(), { provider: "cuda" }));
    expect(e).toBeInstanceOf(UsageError);
    expect(e.message).toContain("--onnxruntime-node-install=cuda12");
    expect(e.message).toMatch(/^CUDA execution provider is not available in onnxruntime-node \(install it with: npm install onnxruntime-node --onnxruntime-node-install=cuda12\): \S/);
    expect(e.message).not.toContain("\n");
    const e2 = await rejects(runModel(convNet(), makeInputs(convNet(), 0), "cuda"));
    expect(e2).toBeInstanceOf(UsageError);
  });
});
