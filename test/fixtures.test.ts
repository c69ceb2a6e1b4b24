// Every PyTorch fixture (fixtures/make_fixtures.py): the optimized training-form model must have
// exactly the op histogram of the authors' hand-fused deploy export, and equal outputs in
// onnxruntime on border-heavy inputs; negative cases must keep their branch sum and say why.
import { describe, expect, it } from "vitest";
import { loadModel } from "../src/ir/io.js";
import type { Model } from "../src/ir/graph.js";
import { optimize } from "../src/app/optimize.js";
import { verifyModels } from "../src/verify/verify.js";
import { FIXTURES, histogram, readManifest } from "./helpers/manifest.js";

const dir = FIXTURES;
const manifest = readManifest("manifest.json");


/** What --explain must say for each negative case. */
const REASONS: Record<string, RegExp> = {
  neg_relu_in_branch: /Relu inside a branch/,
  neg_dilation: /different dilations/,
  neg_stride: /different strides/,
  neg_second_consumer: /another reader/,
  neg_shared_bn: /shared with/,
};

describe.each(manifest.filter((e) => e.expect === "fold"))("fold $file", (e) => {
  it(`${e.case} (${e.form}, opset ${e.opset}) → deploy structure, equal outputs`, async () => {
    const model = loadModel(dir + e.file);
    const { model: out, report } = optimize(model);
    expect(histogram(out)).toEqual(histogram(loadModel(dir + e.deploy!)));
    expect(report.rewrites.length).toBeGreaterThan(0);
    const deployWeights = [...loadModel(dir + e.deploy!).graph.initializers.values()].reduce((s, t) => s + t.size, 0);
    expect([...out.graph.initializers.values()].reduce((s, t) => s + t.size, 0)).toBe(deployWeights);
    const v = await verifyModels(model, out, { runs: 3 });
    expect(v.maxRel).toBeLessThan(1e-5);
    expect(v.ok).toBe(true);
  });
});

describe.each(manifest.filter((e) => e.expect === "unfolded"))("stays unfolded $file", (e) => {
  it(`${e.case} (${e.form}, opset ${e.opset}) keeps its branch sum and says why`, async () => {
    const model = loadModel(dir + e.file);
    const { model: out, report } = optimize(model);
    expect(histogram(out)["Add"]).toBe(histogram(model)["Add"]);
    const reason = REASONS[e.case];
    expect(reason, `no expected reason for ${e.case}`).toBeDefined();
    expect(report.refusals.map((r) => r.reason).join("\n")).toMatch(reason!);
    const v = await verifyModels(model, out, { runs: 2 });
    expect(v.ok).toBe(true);
  });
});
