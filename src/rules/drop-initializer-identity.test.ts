import { describe, expect, it } from "vitest";
import { Net } from "../../test/helpers/graphs.js";
import { applyAndProve, matchAt, nodeOf, opCounts, refusalAt } from "../../test/helpers/rules.js";
import { valueInfo } from "../ir/builder.js";
import { dropInitializerIdentity as rule } from "./drop-initializer-identity.js";

/** x → Conv(w) → Conv(Identity(w)): PyTorch's export of a weight used twice. */
function sharedThroughIdentity(outputIdentity = false) {
  const n = new Net(3);
  const x = n.input("x", [1, 2, 5, 5]);
  const w = n.constant("w", [2, 2, 3, 3], Array.from({ length: 36 }, (_, i) => Math.sin(i)));
  const again = n.op("Identity", [w]);
  const y = n.op("Conv", [n.op("Conv", [x, w], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }), again], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
  const m = n.finish(y);
  if (outputIdentity) m.graph.outputs.push(valueInfo(again, 1, [2, 2, 3, 3]));
  return { model: m, w };
}

describe("drop-initializer-identity", () => {
  it("matches an Identity of a fixed initializer", () => {
    const { model, w } = sharedThroughIdentity();
    const m = matchAt(model, rule, nodeOf(model, "Identity"));
    expect("refused" in m).toBe(false);
    if (!("refused" in m)) expect(m.source).toBe(w);
  });

  it("refuses an Identity of an activation, one that is a graph output, one of an overridable initializer", () => {
    const a = new Net(4);
    const model = a.finish(a.op("Relu", [a.op("Identity", [a.input("x", [1, 2])])]));
    expect(refusalAt(model, rule, nodeOf(model, "Identity")).refused).toMatch(/not an Identity of a fixed initializer/);
    const out = sharedThroughIdentity(true).model;
    expect(refusalAt(out, rule, nodeOf(out, "Identity")).refused).toMatch(/graph output/);
    const { model: overridable, w } = sharedThroughIdentity();
    overridable.graph.inputs.push(valueInfo(w, 1, [2, 2, 3, 3])); // an IR < 4 input with a default
    expect(refusalAt(overridable, rule, nodeOf(overridable, "Identity")).quiet).toBe(true);
  });

  it("rewrites: the readers read the initializer, which stays one tensor", async () => {
    const { model, w } = sharedThroughIdentity();
    const { model: out, result } = await applyAndProve(model, [rule]);
    expect(opCounts(out)).toEqual({ Conv: 2 });
    expect(out.graph.nodes.every((n) => n.inputs[1] === w)).toBe(true);
    expect(result.rewrites.map((r) => r.summary)).toEqual([`Identity of initializer '${w}' removed (its readers share it)`]);
  });
});
