// Property test: random linear blocks (fast-check) fold and verify; positive blocks fold to one Conv.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BRANCHES, buildBlock, legal, NEGATIVES, type BlockSpec } from "../bench/random-blocks.js";
import { optimize } from "../src/app/optimize.js";
import { verifyModels } from "../src/verify/verify.js";

const specArb: fc.Arbitrary<BlockSpec> = fc
  .record({
    cin: fc.constantFrom(2, 4, 6),
    coutChoice: fc.constantFrom("same", 4, 8),
    height: fc.integer({ min: 5, max: 12 }),
    width: fc.integer({ min: 5, max: 11 }),
    stride: fc.constantFrom<1 | 2>(1, 2),
    k: fc.constantFrom<1 | 3 | 5>(1, 3, 5),
    grouped: fc.boolean(),
    form: fc.constantFrom<"preserve" | "folded">("preserve", "folded"),
    opset: fc.integer({ min: 11, max: 17 }),
    float16: fc.constantFrom(false, false, false, true),
    branches: fc.array(fc.constantFrom(...BRANCHES), { minLength: 1, maxLength: 4 }),
    after: fc.constantFrom<"none" | "bn" | "scale">("none", "bn", "scale"),
    negative: fc.option(fc.constantFrom(...NEGATIVES), { freq: 4 }),
    seed: fc.integer({ min: 1, max: 2 ** 30 }),
  })
  .map((r) => {
    const cout = r.coutChoice === "same" ? r.cin : r.coutChoice;
    const spec: BlockSpec = { ...r, cout, groups: r.grouped && r.cin % 2 === 0 && cout % 2 === 0 ? 2 : 1, branches: [], negative: r.negative ?? null };
    spec.branches = r.branches.filter((b) => legal(spec, b));
    if (spec.branches.length === 0) spec.branches = ["kxk"];
    return spec;
  });

describe("random linear blocks", () => {
  it("fold and verify in onnxruntime; positive blocks become one Conv", async () => {
    const runs = 300;
    await fc.assert(
      fc.asyncProperty(specArb, async (spec) => {
        const model = buildBlock(spec);
        const { model: out, report } = optimize(model);
        // A composition that would multiply the cost (a lone dw KxK → 1x1 chain) is left as two layers by design.
        const costBound = report.refusals.some((r) => /raise MACs/.test(r.reason)) || report.rewrites.some((r) => /raise MACs/.test(r.summary));
        const v = await verifyModels(model, out, { runs: 2 });
        expect(v.ok, `max rel ${v.maxRel} for ${JSON.stringify(spec)}`).toBe(true);
        const convs = out.graph.nodes.filter((n) => n.opType === "Conv").length;
        const linearLeft = out.graph.nodes.filter((n) => ["Add", "Sub", "Mul", "Pad", "AveragePool", "BatchNormalization"].includes(n.opType));
        if (!spec.negative && !costBound && spec.branches.some((b) => b !== "identity")) {
          expect(convs, JSON.stringify(spec)).toBe(1);
          expect(linearLeft.map((n) => n.opType), JSON.stringify(spec)).toEqual([]);
        }
        // A negative branch must survive as a separate term (or pool) of the block.
        if (spec.negative) expect(out.graph.nodes.some((n) => n.opType === "Add" || n.opType === "AveragePool"), JSON.stringify(spec)).toBe(true);
      }),
      { numRuns: runs, seed: 20261123 },
    );
  });
});
