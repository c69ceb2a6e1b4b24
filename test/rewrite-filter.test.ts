// The rewrite filter (bisection, --skip-failing) is asked before anything changes: a declined
// rewrite leaves the graph exactly as it was. (Before the rule API, prune-zero-channels,
// fold-constants' Identity removal and dedupe-initializers rewired the graph first and asked after.)
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { loadModel, modelToBytes } from "../src/ir/io.js";
import type { Model } from "../src/ir/graph.js";
import { defaultRules, optimize } from "../src/app/optimize.js";
import { DECLINED } from "../src/pipeline/driver.js";
import { Net } from "./helpers/graphs.js";

const fixture = (name: string) => loadModel(path.join(import.meta.dirname, "../fixtures/models", `${name}.onnx`));
const same = (a: Model, b: Model) => Buffer.from(modelToBytes(a)).equals(Buffer.from(modelToBytes(b)));

/** conv → 1x1 compactor with two zero rows (no bias) → conv: prune-zero-channels applies directly. */
function zeroRows(): Model {
  const n = new Net(41);
  const x = n.input("x", [1, 4, 9, 9]);
  const q = Array.from({ length: 8 * 4 }, (_, i) => ([2, 5].includes(Math.floor(i / 4)) ? 0 : Math.sin(i + 1)));
  const z = n.op("Conv", [x, n.constant("compactor", [8, 4, 1, 1], q)], { kernel_shape: [1, 1] });
  return n.finish(n.conv(n.op("Relu", [z]), 8, 6, 3));
}

describe("a declined rewrite changes nothing", () => {
  const cases: [string, () => Model, string][] = [
    ["zero channels (prune-zero-channels)", zeroRows, "prune-zero-channels"],
    ["shared weights through Identity, recursion (drop-initializer-identity, dedupe-initializers)", () => fixture("attn_sret_residual_folded_op13"), "drop-initializer-identity"],
    ["DBB block (fold-constants, collapse-linear-regions)", () => fixture("comp_dbb_k3_preserve_op13"), "collapse-linear-regions"],
  ];
  for (const [what, make, rule] of cases)
    it(`${what}: declining every rewrite writes the input model byte for byte`, () => {
      const model = make();
      expect(optimize(model).report.rewrites.some((r) => r.pass === rule)).toBe(true); // the rule does fire
      const { model: out, report } = optimize(model, { filter: () => false });
      expect(report.rewrites).toEqual([]);
      expect(same(out, model)).toBe(true);
      expect(report.refusals.some((r) => r.reason === DECLINED)).toBe(true);
    });

  it("declining one rule's rewrites is the same as not running that rule", () => {
    const model = fixture("attn_sret_residual_folded_op13");
    for (const rule of ["dedupe-initializers", "prune-zero-channels", "drop-initializer-identity"]) {
      const model2 = rule === "prune-zero-channels" ? zeroRows() : model;
      const declined = optimize(model2, { filter: (k) => !k.startsWith(`${rule}:`) }).model;
      const without = optimize(model2, { rules: defaultRules().filter((r) => r.name !== rule) }).model;
      expect(same(declined, without), rule).toBe(true);
    }
  });
});
