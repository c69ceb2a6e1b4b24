import { describe, expect, it } from "vitest";
import { Net } from "../../test/helpers/graphs.js";
import { applyAndProve, matchAt, nodeOf, opCounts, refusalAt } from "../../test/helpers/rules.js";
import { collapseLinearRegions as rule } from "./collapse-linear-regions.js";

/** RepVGG: conv3x3+BN + conv1x1+BN + identity, summed. */
function repvgg() {
  const n = new Net(10);
  const x = n.input("x", [1, 4, 6, 6]);
  return n.finish(n.add(n.convBn(x, 4, 4, 3), n.convBn(x, 4, 4, 1, { pads: [0, 0, 0, 0] }), x));
}

describe("collapse-linear-regions", () => {
  it("rooted on the sum, matches the whole block", () => {
    const model = repvgg();
    const m = matchAt(model, rule, nodeOf(model, "Add", 1));
    if ("refused" in m) throw new Error(m.refused);
    expect(m.remove.map((n) => n.opType).sort()).toEqual(["Add", "Add", "BatchNormalization", "BatchNormalization", "Conv", "Conv"]);
    expect(m.part.map.kh).toBe(3);
  });

  it("says why: a conv with a weight computed at run time stops the region; a costly composition is refused", () => {
    const n = new Net(11);
    const x = n.input("x", [1, 2, 5, 5]);
    const conv = n.op("Conv", [x, n.input("w", [2, 2, 3, 3])], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
    const model = n.finish(n.bn(conv, 2));
    const r = refusalAt(model, rule, nodeOf(model, "BatchNormalization"));
    expect(r.quiet).toBe(true); // a lone BN is not worth a rewrite …
    expect(r.notes?.map((x) => `${x.node.opType}: ${x.reason}`)).toEqual(["Conv: Conv weight is not a constant"]); // … and the Conv says why
    const c = new Net(12);
    const y = c.convBn(c.convBn(c.input("x", [1, 8, 8, 8]), 8, 8, 3, { group: 8 }), 8, 16, 1);
    const costly = c.finish(y);
    const m = matchAt(costly, rule, nodeOf(costly, "BatchNormalization", 1), { noCostlier: true });
    if ("refused" in m) throw new Error(m.refused);
    expect(m.note).toMatch(/layers not composed: composition would raise MACs .* --no-costlier/);
  });

  it("rewrites the block as one 3x3 Conv, proven", async () => {
    const { model: out, result } = await applyAndProve(repvgg(), [rule]);
    expect(opCounts(out)).toEqual({ Conv: 1 });
    expect(result.rewrites[0]!.summary).toMatch(/→ Conv 3x3\/1/);
    expect(result.convergence.converged).toBe(true);
  });
});
