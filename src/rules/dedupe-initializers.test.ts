import { describe, expect, it } from "vitest";
import { Net } from "../../test/helpers/graphs.js";
import { applyAndProve, nodeOf, opCounts } from "../../test/helpers/rules.js";
import { RuleContext } from "../pipeline/context.js";
import { Rewriter } from "../pipeline/rewriter.js";
import { collapseLinearRegions } from "./collapse-linear-regions.js";
import { dedupeInitializers as rule } from "./dedupe-initializers.js";

/** One conv layer applied twice (recursion), each use with a BN of equal statistics: both fold to identical new weights. */
function recursion() {
  const n = new Net(8);
  const x = n.input("x", [1, 3, 6, 6]);
  const w = n.constant("w", [3, 3, 3, 3], Array.from({ length: 81 }, (_, i) => Math.sin(i + 2)));
  const bn = () => [[1.5, 0.5, 1], [0.1, -0.2, 0.3], [0.2, 0, -0.1], [1, 2, 0.5]].map((p, i) => n.constant(`bn${i}`, [3], p));
  const layer = (t: string) => n.op("BatchNormalization", [n.op("Conv", [t, w], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }), ...bn()]);
  return n.finish(layer(n.op("Relu", [layer(x)])));
}

describe("dedupe-initializers", () => {
  it("does not match nodes that read only the model's own initializers (those are never merged)", () => {
    const model = recursion();
    const ctx = new RuleContext(model, {}, new Rewriter(model.graph));
    for (const node of model.graph.nodes) expect(rule.match(node, ctx)).toMatchObject({ refused: "reads no rewritten initializer", quiet: true });
  });

  it("merges the identical weights two folds of one shared layer created", async () => {
    const { model: out, result } = await applyAndProve(recursion(), [collapseLinearRegions, rule]);
    expect(opCounts(out)).toEqual({ Conv: 2, Relu: 1 });
    const [a, b] = [nodeOf(out, "Conv", 0), nodeOf(out, "Conv", 1)];
    expect(a.inputs.slice(1)).toEqual(b.inputs.slice(1));
    expect(out.graph.initializers.size).toBe(2); // one weight, one bias
    expect(result.rewrites.filter((r) => r.pass === "dedupe-initializers").map((r) => r.summary).join()).toMatch(/is identical to .*: shared/);
  });
});
