// The authors' own export forms (fixtures/make_forms.py, issue 12): SE pooling over the whole map,
// ACNet's cropped branches, sums written as stacks or one Sum node, GELU and hard-swish idioms, OREPA's
// in-graph kernels, BN before attention, Shape -> Resize. Every optimized model must equal its input in
// onnxruntime and come out with no op type more often than in the authors' deploy file and Conv
// weights no larger.
import { describe, expect, it } from "vitest";
import type { Model } from "../src/ir/graph.js";
import { loadModel } from "../src/ir/io.js";
import { optimize } from "../src/app/optimize.js";
import { verifyModels } from "../src/verify/verify.js";
import { FIXTURES, histogram, readManifest } from "./helpers/manifest.js";

const entries = readManifest("forms.json");

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
  it(`${e.case} (${e.form}, opset ${e.opset}): equal outputs, at most the deploy's ops and Conv weights`, async () => {
    const model = loadModel(FIXTURES + e.file);
    const { model: out } = optimize(model);
    const deploy = loadModel(FIXTURES + e.deploy!);
    const v = await verifyModels(model, out, { runs: 2 });
    expect(v.ok, `max rel ${v.maxRel}`).toBe(true);
    expect(overDeploy(out, deploy)).toEqual([]);
    expect(convWeights(out)).toBeLessThanOrEqual(convWeights(deploy));
  });
});
