// Sequential, padded and pooled compositions exported from PyTorch (fixtures/make_compositions.py):
// DBB (BN-value padding as slice assignment, Sub/Pad/Add, or a padded 1x1), OREPA (kernels generated
// in the graph, explicit branches), linear stems, ResRep pruning, a DBB-ResNet. Each must reach the
// authors' deploy structure exactly (op histogram, Conv weight size, pruned channel counts) and
// verify; each negative stays, says why, and its naive fold is shown to be wrong.
import { describe, expect, it } from "vitest";
import { loadModel } from "../src/ir/io.js";
import type { Model } from "../src/ir/graph.js";
import { optimize } from "../src/app/optimize.js";
import { verifyModels } from "../src/verify/verify.js";
import { FIXTURES, histogram, readManifest } from "./helpers/manifest.js";

const dir = FIXTURES;
const entries = readManifest("compositions.json");

const convWeights = (m: Model) => m.graph.nodes.filter((n) => n.opType === "Conv").reduce((s, n) => s + m.graph.initializers.get(n.inputs[1]!)!.size, 0);

const REASONS: Record<string, RegExp> = {
  comp_neg_zero_pad_bn: /border output is its bias/,
  comp_neg_stem_each_pads: /border output is its bias|the border is not what one conv would see/,
  comp_neg_avg_cip0: /count_include_pad=0/,
  comp_neg_relu_chain: /Relu inside a branch|not share one input/,
};

describe.each(entries.filter((e) => e.expect === "fold"))("fold $file", (e) => {
  it(`${e.case} (${e.form}, opset ${e.opset}) → deploy structure, equal outputs`, async () => {
    const model = loadModel(dir + e.file);
    const deploy = loadModel(dir + e.deploy!);
    const { model: out } = optimize(model);
    expect(histogram(out)).toEqual(histogram(deploy));
    expect(convWeights(out)).toBe(convWeights(deploy));
    if (e.deploy_out_channels) {
      const outs = out.graph.nodes.filter((n) => n.opType === "Conv").map((n) => out.graph.initializers.get(n.inputs[1]!)!.dims[0]);
      expect(outs).toEqual(e.deploy_out_channels);
    }
    const v = await verifyModels(model, out, { runs: 3 });
    expect(v.ok, `max rel ${v.maxRel}`).toBe(true);
  });
});

describe.each(entries.filter((e) => e.expect === "unfolded"))("stays unfolded $file", (e) => {
  it(`${e.case} (${e.form}, opset ${e.opset}): left alone with a reason; the naive fold is wrong`, async () => {
    const model = loadModel(dir + e.file);
    const { model: out, report } = optimize(model);
    expect(report.refusals.map((r) => r.reason).join("\n")).toMatch(REASONS[e.case]!);
    expect((await verifyModels(model, out, { runs: 2 })).ok).toBe(true);
    if (e.case !== "comp_neg_relu_chain") {
      // What a naive tool would do (fold across the border) really changes the outputs:
      const naive = optimize(model, { unsafeIgnoreBorderRule: true });
      const v = await verifyModels(model, naive.model, { runs: 2 });
      expect(v.ok).toBe(false);
      expect(v.maxRel).toBeGreaterThan(1e-3);
    }
  });
});

describe("cost awareness", () => {
  it("the 11x11/2 stem raises MACs: folded by default (the authors' deploy form), skipped with noCostlier", () => {
    const model = loadModel(dir + "comp_stem_first_s2_preserve_op13.onnx");
    const { report } = optimize(model);
    const stem = report.rewrites.find((r) => /11x11\/2/.test(r.summary));
    expect(stem).toBeDefined();
    expect(stem!.macsAfter!).toBeGreaterThan(stem!.macsBefore!);
    const cautious = optimize(model, { noCostlier: true });
    expect(cautious.report.rewrites.some((r) => /11x11/.test(r.summary))).toBe(false);
    // The stem is still folded layer by layer (each conv with its BN), and the report says why not more.
    expect([...cautious.report.refusals.map((r) => r.reason), ...cautious.report.rewrites.map((r) => r.summary)].join()).toMatch(/would raise MACs/);
    expect(cautious.model.graph.nodes.some((n) => n.opType === "BatchNormalization")).toBe(false);
    expect(cautious.report.after.macs).toBeLessThanOrEqual(cautious.report.before.macs);
  });
});
