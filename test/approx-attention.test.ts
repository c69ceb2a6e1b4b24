// The Stripe Observation made usable: attention statistics on a calibration set, and the opt-in
// approximation that replaces nearly constant SE attention by its mean (never by default).
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { findAttentionBlocks, replaceGates } from "../src/app/approximate-attention.js";
import { loadModel } from "../src/ir/io.js";
import { optimize } from "../src/app/optimize.js";
import { approximationError, attentionStats, readCalibration } from "../src/verify/calibration.js";

const ROOT = new URL("..", import.meta.url).pathname;
const fixture = (f: string) => path.join(ROOT, "fixtures/models", f);
const CALIB = path.join(ROOT, "fixtures/calib/se_calib.npy");

describe("attention statistics and the mean approximation", () => {
  it("a nearly constant SE gate has a tiny spread, is replaced by its mean, folds, and the error is small and reported", async () => {
    const model = loadModel(fixture("attn_se_nearly_constant_preserve_op13.onnx"));
    const calib = readCalibration(CALIB, model);
    const blocks = findAttentionBlocks(model);
    expect(blocks.length).toBe(1);
    const [st] = await attentionStats(model, blocks, calib);
    expect(st!.spreadMaxStd).toBeLessThan(1e-3);
    const approx = replaceGates(model, [{ block: blocks[0]!, mean: Float64Array.from(st!.mean) }]);
    expect(approx.graph.nodes.some((n) => n.opType === "GlobalAveragePool" || n.opType === "Sigmoid")).toBe(false);
    const { model: out } = optimize(approx);
    expect(out.graph.nodes.map((n) => n.opType)).toEqual(["Conv", "Relu"]);
    const err = await approximationError(model, out, calib);
    expect(err.maxRel).toBeLessThan(1e-3);
    expect(err.top1Agreement).toBe(1);
  });

  it("a varying SE gate has a large spread and its approximation would be far off", async () => {
    const model = loadModel(fixture("attn_se_varying_preserve_op13.onnx"));
    const calib = readCalibration(CALIB, model);
    const blocks = findAttentionBlocks(model);
    const [st] = await attentionStats(model, blocks, calib);
    expect(st!.spreadMaxStd).toBeGreaterThan(0.1);
    const approx = replaceGates(model, [{ block: blocks[0]!, mean: Float64Array.from(st!.mean) }]);
    const err = await approximationError(model, approx, calib);
    expect(err.maxRel).toBeGreaterThan(0.05);
  });

  it("exact optimization never touches input-dependent attention", () => {
    const model = loadModel(fixture("attn_se_nearly_constant_folded_op13.onnx"));
    const { model: out } = optimize(model);
    expect(out.graph.nodes.some((n) => n.opType === "Sigmoid")).toBe(true);
  });

  it("CLI: --approx-attention=mean replaces only blocks under the threshold and reports spread and error", () => {
    const cli = path.join(ROOT, "dist/src/cli/main.js");
    const run = (file: string) =>
      JSON.parse(execFileSync(process.execPath, [cli, "optimize", fixture(file), path.join(ROOT, ".vitest-tmp-approx.onnx"), "--approx-attention=mean", "--calib", CALIB, "--json"], { encoding: "utf8" })) as {
        ok: boolean; approximation: { replaced: string[]; stats: { spreadMaxStd: number }[]; error: { maxRel: number } | null };
      };
    const near = run("attn_se_nearly_constant_folded_op13.onnx");
    expect(near.ok).toBe(true);
    expect(near.approximation.replaced.length).toBe(1);
    expect(near.approximation.error!.maxRel).toBeLessThan(1e-3);
    const varying = run("attn_se_varying_folded_op13.onnx");
    expect(varying.approximation.replaced).toEqual([]);
    expect(varying.approximation.stats[0]!.spreadMaxStd).toBeGreaterThan(0.1);
    execFileSync("rm", ["-f", path.join(ROOT, ".vitest-tmp-approx.onnx")]);
  });
});
