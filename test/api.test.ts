import { describe, expect, it } from "vitest";
import { dropIdentity } from "../examples/custom-rule.js";
import { defaultRules, MatchMutatedGraphError, notCandidate, optimize, type Rule } from "../src/index.js";
import { foldAndVerify, Net, ops } from "./helpers/graphs.js";

describe("programmatic API", () => {
  it("a user rule runs in the pipeline and its rewrites are reported", async () => {
    const n = new Net(21);
    const x = n.input("x", [1, 3, 6, 6]);
    const a = n.op("Identity", [n.convBn(x, 3, 3, 3)]);
    const y = n.add(a, n.convBn(x, 3, 3, 1));
    const model = n.finish(y);
    // Without the custom pass, the Identity is folded as part of the region anyway…
    expect(ops(optimize(model).model)).toEqual({ Conv: 1 });
    // …and with it, the report names the user's pass.
    const { model: out, report } = await foldAndVerify(model, { rules: [dropIdentity, ...defaultRules()] });
    expect(ops(out)).toEqual({ Conv: 1 });
    expect(report.passes.find((p) => p.name === "drop-identity")?.rewrites).toBe(1);
  });

  it("a user rule whose match changes the graph is an error naming it, before any built-in rule sees the change", () => {
    const n = new Net(21);
    const model = n.finish(n.op("Relu", [n.convBn(n.input("x", [1, 3, 6, 6]), 3, 3, 3)]));
    const evil: Rule = { name: "evil", description: "mutates in match", rootOps: ["Relu"], benefit: 100, match: (node) => (((node as { opType: string }).opType = "Sigmoid"), notCandidate("only looked")), rewrite: () => ({ summary: "" }) };
    expect(() => optimize(model, { rules: [evil, ...defaultRules()] })).toThrow(MatchMutatedGraphError);
    expect(() => optimize(model, { rules: [evil, ...defaultRules()] })).toThrow(/^rule 'evil' changed the graph in its match/);
    expect(ops(model)).toEqual({ Conv: 1, BatchNormalization: 1, Relu: 1 }); // the input model is untouched
  });
});
