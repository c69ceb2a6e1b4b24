// Input-independent subgraphs and fully connected layers (fixtures/make_attention.py): ASR constant
// attention (SE, 1x1-conv and ECA heads, inside RepVGG/DBB), RepMLP locality injection, SReT
// learnable residuals with shared weights, Gemm/BN1d folds, parallel heads, layer scales. Each must
// reach its hand-fused deploy structure and weight count and verify; negatives stay, with reasons.
import { describe, expect, it } from "vitest";
import { loadModel } from "../src/ir/io.js";
import type { Model } from "../src/ir/graph.js";
import { optimize } from "../src/app/optimize.js";
import { verifyModels } from "../src/verify/verify.js";
import { FIXTURES, histogram, readManifest } from "./helpers/manifest.js";

const dir = FIXTURES;
const entries = readManifest("attention.json");
const floats = (m: Model) => [...m.graph.initializers.values()].filter((t) => t.dtype === 1).reduce((s, t) => s + t.size, 0);

/** Folding these would duplicate a shared weight: by default they stay (and say so); --duplicate-shared folds them. */
const NEEDS_DUPLICATION = new Set(["attn_sret_unshared_coef"]);

const REASONS: Record<string, RegExp> = {
  attn_neg_add_before_padded_conv: /border output is its bias/,
  attn_neg_bn_before_padded_conv: /border output is its bias/,
};

describe.each(entries.filter((e) => e.expect === "fold" && !NEEDS_DUPLICATION.has(e.case)))("fold $file", (e) => {
  it(`${e.case} (${e.form}, opset ${e.opset}) → hand-fused deploy structure and size, equal outputs`, async () => {
    const model = loadModel(dir + e.file);
    const { model: out } = optimize(model);
    expect(histogram(out, e.histogram_ignore)).toEqual(histogram(loadModel(dir + e.deploy!), e.histogram_ignore));
    expect(floats(out)).toBe(e.deploy_weight_floats);
    const v = await verifyModels(model, out, { runs: 3 });
    expect(v.ok, `max rel ${v.maxRel}`).toBe(true);
  });
});

describe.each(entries.filter((e) => NEEDS_DUPLICATION.has(e.case)))("shared weights $file", (e) => {
  it(`${e.case} (${e.form}): stays the same size by default and says why; --duplicate-shared reaches the deploy form`, async () => {
    const model = loadModel(dir + e.file);
    const { model: kept, report } = optimize(model);
    expect(floats(kept)).toBeLessThanOrEqual(e.weight_floats);
    expect(report.refusals.map((r) => r.reason).join()).toMatch(/--duplicate-shared/);
    const { model: out, report: grown } = optimize(model, { duplicateShared: true });
    expect(histogram(out)).toEqual(histogram(loadModel(dir + e.deploy!)));
    expect(floats(out)).toBe(e.deploy_weight_floats);
    expect(grown.after.weightBytes).toBeGreaterThan(grown.before.weightBytes); // reported, not silent
    expect((await verifyModels(model, out, { runs: 2 })).ok).toBe(true);
  });
});

describe.each(entries.filter((e) => e.expect === "unfolded"))("stays $file", (e) => {
  it(`${e.case} (${e.form}): input-dependent or border-inexact parts stay; outputs equal`, async () => {
    const model = loadModel(dir + e.file);
    const { model: out, report } = optimize(model);
    const kept = ["Sigmoid", "GlobalAveragePool"].filter((op) => histogram(model)[op]);
    for (const op of kept) expect(histogram(out)[op]).toBe(histogram(model)[op]);
    if (REASONS[e.case]) expect(report.refusals.map((r) => r.reason).join("\n")).toMatch(REASONS[e.case]!);
    expect((await verifyModels(model, out, { runs: 2 })).ok).toBe(true);
    if (/padded_conv/.test(e.case)) {
      const naive = await verifyModels(model, optimize(model, { unsafeIgnoreBorderRule: true }).model, { runs: 2 });
      expect(naive.ok).toBe(false);
    }
  });
});
