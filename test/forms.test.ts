// The authors' own export forms (fixtures/make_forms.py, issue 12): SE pooling over the whole map,
// ACNet's cropped branches, sums written as stacks or one Sum node, GELU and hard-swish idioms, OREPA's
// in-graph kernels, BN before attention, Shape -> Resize. Every optimized model must equal its input in
// onnxruntime; each form listed in REACHES_DEPLOY must also come out with no op type more often than in
// the authors' deploy file and Conv weights no larger. Forms not there yet are printed as known gaps.
import { describe, expect, it } from "vitest";
import type { Model } from "../src/ir/graph.js";
import { loadModel } from "../src/ir/io.js";
import { optimize } from "../src/app/optimize.js";
import { verifyModels } from "../src/verify/verify.js";
import { FIXTURES, histogram, readManifest } from "./helpers/manifest.js";

const entries = readManifest("forms.json");

/** Cases whose optimized form must reach the deploy structure (the others print their gap). */
const REACHES_DEPLOY = new Set([
  "forms_se_repvgg_stage", "forms_repvggplus_se", "forms_mobileone_se", "forms_acnet_crop", "forms_dyrep_stack", "forms_sum_node",
  "forms_repvit_gelu", "forms_replknet_gelu", "forms_act_idioms", "forms_nextvit_attn",
]);

function convWeights(m: Model): number {
  let total = 0;
  for (const n of m.graph.nodes) if (n.opType === "Conv") total += m.graph.initializers.get(n.inputs[1] ?? "")?.size ?? 0;
  return total;
}

/** A pooling over the whole map is one reduction whichever op writes it. */
const SAME_OP: Record<string, string> = { GlobalAveragePool: "AveragePool" };

function ops(m: Model): Record<string, number> {
  const h: Record<string, number> = {};
  for (const [op, k] of Object.entries(histogram(m))) h[SAME_OP[op] ?? op] = (h[SAME_OP[op] ?? op] ?? 0) + k;
  return h;
}

/** Op types the output has more often than the deploy file ("Conv+2"). */
function overDeploy(out: Model, deploy: Model): string[] {
  const d = ops(deploy);
  return Object.entries(ops(out)).filter(([op, k]) => k > (d[op] ?? 0)).map(([op, k]) => `${op}+${k - (d[op] ?? 0)}`);
}

describe.each(entries)("forms $file", (e) => {
  it(`${e.case} (${e.form}, opset ${e.opset}): equal outputs${REACHES_DEPLOY.has(e.case) ? ", at most the deploy's ops and Conv weights" : ""}`, async () => {
    const model = loadModel(FIXTURES + e.file);
    const { model: out } = optimize(model);
    const deploy = loadModel(FIXTURES + e.deploy!);
    const v = await verifyModels(model, out, { runs: 2 });
    expect(v.ok, `max rel ${v.maxRel}`).toBe(true);
    const over = overDeploy(out, deploy);
    const weights = [convWeights(out), convWeights(deploy)] as const;
    if (REACHES_DEPLOY.has(e.case)) {
      expect(over).toEqual([]);
      expect(weights[0]).toBeLessThanOrEqual(weights[1]);
    } else if (over.length > 0 || weights[0] > weights[1]) {
      console.log(`known gap (issue 12): ${e.file} does not reach its deploy yet: ${over.join(" ")}; Conv weights ${weights[0]} vs ${weights[1]}`);
    }
  });
});
