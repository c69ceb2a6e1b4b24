// A failing verification names the rewrite responsible (found by re-applying prefixes of the
// rewrite sequence), and --skip-failing keeps every other rewrite, verified again.
import { describe, expect, it } from "vitest";
import { findCulprit, skipFailing } from "../src/app/bisect.js";
import { optimize } from "../src/app/optimize.js";
import { verifyModels } from "../src/verify/verify.js";
import { Net, ops } from "./helpers/graphs.js";

/** Four RepVGG blocks; block 2 also has a zero-padded-BN branch that only a naive tool would fold. */
function network() {
  const n = new Net(51);
  let x = n.input("x", [1, 4, 9, 9]);
  for (let i = 0; i < 4; i++) {
    const terms = [n.convBn(x, 4, 4, 3), n.convBn(x, 4, 4, 1), n.bn(x, 4)];
    if (i === 2) terms.push(n.convBn(n.convBn(x, 4, 4, 1, { pads: [0, 0, 0, 0] }), 4, 4, 3));
    x = n.op("Relu", [n.add(...terms)], {}, `block${i}/relu`);
  }
  return n.finish(x);
}

describe("bisecting a failing verification", () => {
  const unsafe = { unsafeIgnoreBorderRule: true };
  it("names the one wrong rewrite and skipping it leaves a verified model with the others", async () => {
    const model = network();
    const { model: bad, report } = optimize(model, unsafe);
    expect((await verifyModels(model, bad, { runs: 2 })).ok).toBe(false);
    const culprit = await findCulprit(model, report.rewrites, unsafe, { runs: 2 });
    expect(culprit).toBeDefined();
    // The culprit is the block-2 region (its replaced nodes include the 1x1 → BN → padded 3x3 chain).
    expect(culprit!.rewrite.removed.length).toBeGreaterThanOrEqual(9);
    expect(culprit!.verification.maxRel).toBeGreaterThan(1e-3);
    const skipped = await skipFailing(model, report, unsafe, { runs: 2 });
    expect(skipped).toBeDefined();
    // The first skipped rewrite is the one named; with the unsafe switch, smaller regions of the same
    // block are wrong too, so they are found and skipped in turn.
    expect(skipped!.culprits[0]!.rewrite.key).toBe(culprit!.rewrite.key);
    expect(skipped!.culprits.length).toBeLessThanOrEqual(4);
    expect(skipped!.verification.ok).toBe(true);
    // Blocks 0, 1 and 3 still fold to one conv each.
    expect(ops(skipped!.model)["Conv"]).toBeLessThan(ops(model)["Conv"]!);
    expect(skipped!.report.rewrites.length).toBeGreaterThanOrEqual(3);
  });

  it("finds no culprit when every rewrite is right", async () => {
    const model = network();
    const { report } = optimize(model);
    expect(await findCulprit(model, report.rewrites, {}, { runs: 1 })).toBeUndefined();
  });
});
