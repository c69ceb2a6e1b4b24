// Issue 11, classes 1 and 4: a rewrite whose validity depends on a dim value is refused unless
// --fix-shapes writes that value into the model; cost bounds hold when dims are unknown.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import type { Model } from "../src/ir/graph.js";
import { loadModel, modelToBytes, saveModel } from "../src/ir/io.js";
import { toNumber } from "../src/ir/proto.js";
import { optimize } from "../src/app/optimize.js";
import { Net, ops } from "./helpers/graphs.js";
import { randomArray, rng } from "./helpers/random.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-spec-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** Outputs of a model in onnxruntime, graph optimizations off (the model as written). */
async function run(model: Model, x: number[]): Promise<{ dims: readonly number[]; data: Float32Array }> {
  const s = await ort.InferenceSession.create(modelToBytes(model), { graphOptimizationLevel: "disabled", logSeverityLevel: 3 });
  try {
    const r = rng(x.reduce((a, b) => a * 31 + b, 7));
    const n = x.reduce((a, b) => a * b, 1);
    const out = await s.run({ x: new ort.Tensor("float32", Float32Array.from(randomArray(r, n, 2)), x) });
    const t = out[s.outputNames[0]!]!;
    return { dims: t.dims, data: t.data as Float32Array };
  } finally {
    await s.release();
  }
}

async function expectEqualAt(a: Model, b: Model, x: number[]): Promise<void> {
  const [ra, rb] = [await run(a, x), await run(b, x)];
  expect(rb.dims, `output shape at x=${x.join("x")}`).toEqual(ra.dims);
  let err = 0, scale = 0;
  for (let i = 0; i < ra.data.length; i++) {
    err = Math.max(err, Math.abs(ra.data[i]! - rb.data[i]!));
    scale = Math.max(scale, Math.abs(ra.data[i]!));
  }
  expect(err, `max |Δ| at x=${x.join("x")}`).toBeLessThanOrEqual(1e-4 * scale);
}

const declared = (m: Model, name: string) =>
  m.graph.inputs.find((i) => i.name === name)!.type!.tensorType!.shape!.dim!.map((d) => (d.dimParam ? d.dimParam : toNumber(d.dimValue)));

/** x [N, 3, H, W] → Conv 3x3 stride 2 auto_pad SAME_* → BN → Relu (the pads depend on the parity of H and W). */
function sameStrided(autoPad: "SAME_UPPER" | "SAME_LOWER"): Model {
  const n = new Net(5);
  const x = n.input("x", ["N", 3, "H", "W"]);
  const w = n.constant("w", [4, 3, 3, 3], randomArray(n.r, 4 * 27));
  const y = n.op("Conv", [x, w], { kernel_shape: [3, 3], strides: [2, 2], auto_pad: autoPad });
  n.output(n.op("Relu", [n.bn(y, 4)]), ["N", 4, "h", "w"]);
  return n.build();
}

describe("class 1: --shape on dynamic dims does not specialize the written model silently", () => {
  for (const autoPad of ["SAME_UPPER", "SAME_LOWER"] as const)
    it(`${autoPad} stride 2 + BN with --shape x=1x3x8x8: the output is equal at 8x8, 9x9 and 10x7`, async () => {
      const model = sameStrided(autoPad);
      const { model: out } = optimize(model, { shapes: { x: [1, 3, 8, 8] } });
      expect(declared(out, "x")).toEqual(["N", 3, "H", "W"]);
      for (const x of [[1, 3, 8, 8], [2, 3, 9, 9], [1, 3, 10, 7]]) await expectEqualAt(model, out, x);
    });

  it("with --fix-shapes the fold is done and the written model declares the shape it is valid for (CLI)", async () => {
    const input = path.join(work, "same.onnx"), output = path.join(work, "same-fixed.onnx");
    saveModel(sameStrided("SAME_UPPER"), input);
    const r = spawnSync(process.execPath, [CLI, "optimize", input, output, "--shape", "x=1x3x8x8", "--fix-shapes"], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/fixed input shape x 1x3x8x8 \(--fix-shapes; declared Nx3xHxW\)/);
    const out = loadModel(output);
    expect(declared(out, "x")).toEqual([1, 3, 8, 8]);
    expect(ops(out)).toEqual({ Conv: 1, Relu: 1 });
    await expectEqualAt(loadModel(input), out, [1, 3, 8, 8]);
  });

  it("without --fix-shapes the CLI says which dims --shape fixed were not used to rewrite", () => {
    const input = path.join(work, "same2.onnx"), output = path.join(work, "same2-out.onnx");
    saveModel(sameStrided("SAME_LOWER"), input);
    const r = spawnSync(process.execPath, [CLI, "optimize", input, output, "--shape", "x=1x3x8x8"], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/--fix-shapes/);
  });
});

describe("class 4: cost bounds hold when spatial dims are unknown", () => {
  /** dw 3x3 (8 channels) → pointwise 1x1 to 64: composing densifies at 7.9x the MACs. */
  function dwPw(dynamic: boolean): Model {
    const n = new Net(9);
    const x = n.input("x", dynamic ? ["N", 8, "H", "W"] : [1, 8, 16, 16]);
    const y = n.conv(n.conv(x, 8, 8, 3, { group: 8, bias: true }), 8, 64, 1);
    return n.finish(y);
  }

  it("dw3x3 → pw1x1 stays two layers with dynamic H/W, as it does at a fixed shape", () => {
    for (const dynamic of [false, true]) {
      const { model: out, report } = optimize(dwPw(dynamic));
      expect(ops(out), dynamic ? "dynamic H/W" : "16x16").toEqual({ Conv: 2 });
      expect(report.refusals.map((r) => r.reason).join("\n")).toMatch(/raise MACs/);
    }
  });

  /** Two parallel 1x1 convs whose asymmetric pads are far apart: summing them needs a (2p+1)² kernel. */
  function misalignedSum(dynamic: boolean, p: number): Model {
    const n = new Net(11);
    const x = n.input("x", dynamic ? ["N", 4, "H", "W"] : [1, 4, 12, 12]);
    const a = n.conv(x, 4, 4, 1, { pads: [p, 0, 0, p] });
    const b = n.conv(x, 4, 4, 1, { pads: [0, p, p, 0] });
    return n.finish(n.add(a, b));
  }

  it("two 1x1 convs with far-apart asymmetric pads are not merged into a huge kernel with dynamic H/W", async () => {
    for (const dynamic of [false, true]) {
      const model = misalignedSum(dynamic, 20);
      const { model: out, report } = optimize(model);
      const kernels = out.graph.nodes.filter((nd) => nd.opType === "Conv").map((nd) => nd.ints("kernel_shape", [1, 1]));
      expect(Math.max(...kernels.map(([h, w]) => h! * w!)), dynamic ? "dynamic H/W" : "12x12").toBeLessThanOrEqual(9);
      expect(report.refusals.length).toBeGreaterThan(0);
      await expectEqualAt(model, out, [1, 4, 12, 12]);
    }
  });

  it("the MAC bound is per output position: a fold within it at any size is still done with dynamic H/W", async () => {
    // RepVGG: 3x3 + 1x1 + identity BN → one 3x3 (fewer MACs): unaffected by unknown dims.
    const n = new Net(13);
    const x = n.input("x", ["N", 4, "H", "W"]);
    const model = n.finish(n.op("Relu", [n.add(n.convBn(x, 4, 4, 3), n.convBn(x, 4, 4, 1, { pads: [0, 0, 0, 0] }), n.bn(x, 4))]));
    const { model: out } = optimize(model);
    expect(ops(out)).toEqual({ Conv: 1, Relu: 1 });
    for (const x of [[1, 4, 7, 9], [2, 4, 12, 5]]) await expectEqualAt(model, out, x);
  });
});

describe("found by the graph fuzz", () => {
  it("a crop (Slice) does not lower the padding of the conv it feeds: the cropped rows are data, not zeros", async () => {
    // Seed 206 of `npm run fuzz -- --family graph`: Slice(end −1) then a conv padding that side by 4
    // was folded into a conv padding it by 3, reading the cropped row where zeros belong.
    for (const dynamic of [false, true]) {
      const n = new Net(17);
      const x = n.input("x", dynamic ? ["N", 4, "H", "W"] : [1, 4, 9, 12]);
      const i64 = (v: number[]) => n.int64("i", v);
      const cropped = n.op("Slice", [x, i64([0]), i64([-1]), i64([3])]);
      const model = n.finish(n.convBn(cropped, 4, 6, 3, { pads: [1, 1, 1, 2] }));
      const { model: out, report } = optimize(model);
      expect(ops(out).Slice, dynamic ? "dynamic H/W" : "fixed").toBe(1);
      expect(report.refusals.map((r) => r.reason).join("\n")).toMatch(/crop \(Slice\) on a side the layer pads/);
      await expectEqualAt(model, out, [1, 4, 9, 12]);
    }
  });
});

describe("found by the graph fuzz (2)", () => {
  it("a region part memoized for one candidate is not read by the next after its scratch kernels were recycled", async () => {
    // Seed 4599 of `npm run fuzz -- --family graph`: a 16-channel 5x5 branch sum (kernels ≥ 4096
    // values come from the scratch arena) was folded with kernels another candidate had overwritten.
    const { randomGraph } = await import("../bench/random-graphs.js");
    const model = randomGraph(4599).model;
    const { model: out, report } = optimize(model, { maxMacGrowth: 4 });
    expect(report.rewrites.length).toBeGreaterThan(0);
    for (const x of [[1, 4, 8, 16], [2, 4, 9, 11]]) await expectEqualAt(model, out, x);
  });
});
