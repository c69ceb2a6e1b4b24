// Property test for fold-into-fc: random RepMLP / RepMLPNet-style blocks (bench/random-fc-blocks.ts)
// verify in onnxruntime, and positive ones fold every BN, scale and local conv into the FC.
import { describe, expect, it } from "vitest";
import { buildFcBlock, fcBlockFailure, randomFcSpec } from "../bench/random-fc-blocks.js";
import { optimize } from "../src/app/optimize.js";
import { verifyModels } from "../src/verify/verify.js";

describe("random locality-injection blocks", () => {
  it("fold into the FC and verify (grouped conv / Gemm / MatMul FCs, BN over S or S·h·w, dynamic shapes, negatives)", async () => {
    let folded = 0;
    for (let i = 0; i < 80; i++) {
      const spec = randomFcSpec(20261124 + i);
      const model = buildFcBlock(spec);
      const { model: out, report } = optimize(model);
      const v = await verifyModels(model, out, { runs: 2 });
      expect(v.ok, `max rel ${v.maxRel} for ${JSON.stringify(spec)}`).toBe(true);
      expect(fcBlockFailure(spec, out, report.refusals), JSON.stringify(spec)).toBeUndefined();
      if (report.rewrites.some((r) => r.pass === "fold-into-fc")) folded++;
    }
    expect(folded).toBeGreaterThan(30); // the generator mostly makes foldable blocks
  });
});
