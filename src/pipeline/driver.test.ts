import { describe, expect, it } from "vitest";
import { Net } from "../../test/helpers/graphs.js";
import { Node } from "../ir/graph.js";
import { MatchMutatedGraphError, runRules } from "./driver.js";
import { notCandidate, type Match, type Rule } from "./rule.js";

/** x → Identity → Identity → Relu */
function chain() {
  const n = new Net(1);
  return n.finish(n.op("Relu", [n.op("Identity", [n.op("Identity", [n.input("x", [1, 2])])])]));
}

const dropIdentity = (name: string, benefit: number): Rule => ({
  name, description: "drop an Identity", rootOps: ["Identity"], benefit,
  match: (node) => ({ anchor: node, remove: [node] }),
  rewrite: ({ anchor }) => ({ replaceUses: [{ from: anchor.outputs[0]!, to: anchor.inputs[0]! }], summary: "dropped" }),
});

describe("driver", () => {
  it("runs rules in decreasing benefit, each to its fixpoint", () => {
    const model = chain();
    const result = runRules(model, [dropIdentity("low", 1), dropIdentity("high", 5)]);
    expect(result.rewrites.map((r) => r.pass)).toEqual(["high", "high"]);
    expect(model.graph.nodes.map((n) => n.opType)).toEqual(["Relu"]);
    expect(result.convergence).toEqual({ converged: true, rounds: 2 });
  });

  it("asks the filter before the rewrite is built, and does not offer a declined anchor again", () => {
    const model = chain();
    let built = 0, asked = 0;
    const rule: Rule = { ...dropIdentity("d", 1), rewrite: (m) => (built++, dropIdentity("d", 1).rewrite(m, undefined as never)) };
    const result = runRules(model, [rule], { filter: () => (asked++, false) });
    expect(built).toBe(0);
    expect(asked).toBe(2); // once per anchor, however many sweeps and rounds
    expect(model.graph.nodes.length).toBe(3);
    expect(result.refusals.map((r) => r.reason)).toEqual([expect.stringMatching(/filter declined/), expect.stringMatching(/filter declined/)]);
  });

  it("reports a run that does not converge, naming the rule that kept firing", () => {
    const model = chain();
    // Replaces an Identity by a fresh Identity forever.
    const churn: Rule<Match> = {
      name: "churn", description: "never settles", rootOps: ["Identity"], benefit: 1,
      match: (node) => (node.inputs[0] ? { anchor: node, remove: [node] } : notCandidate("no input")),
      rewrite: ({ anchor }, ctx) => ({ add: [new Node(ctx.uniqueName("again"), "Identity", [...anchor.inputs], [...anchor.outputs])], summary: "again" }),
    };
    const result = runRules(model, [churn], { maxRounds: 3 });
    expect(result.convergence).toMatchObject({ converged: false, rounds: 3, stillFiring: "churn" });
  });

  it("reports the latest refusal of each root, only for nodes still in the graph", () => {
    const model = chain();
    let attempt = 0;
    const moody: Rule = {
      name: "moody", description: "refuses differently each time", rootOps: ["Relu"], benefit: 1,
      match: () => ({ refused: `attempt ${++attempt}` }),
      rewrite: () => ({ summary: "" }),
    };
    const result = runRules(model, [dropIdentity("d", 2), moody]);
    expect(result.refusals.map((r) => r.reason)).toEqual([`attempt ${attempt}`]);
  });

  it("a match that changes the graph is an error naming its rule (unless trusted)", () => {
    const mutations: [string, (node: Node) => void][] = [
      ["opType", (node) => ((node as { opType: string }).opType = "Sigmoid")],
      ["dangling input", (node) => (node.inputs[0] = "nowhere")],
      ["attribute", (node) => node.attributes.push({ name: "alpha", f: 0.5 } as Node["attributes"][number])],
    ];
    for (const [what, mutate] of mutations) {
      const evil: Rule = { name: "evil", description: "mutates in match", rootOps: ["Relu"], benefit: 100, match: (node) => (mutate(node as Node), notCandidate("only looked")), rewrite: () => ({ summary: "" }) };
      expect(() => runRules(chain(), [evil]), what).toThrow(MatchMutatedGraphError);
      expect(() => runRules(chain(), [evil]), what).toThrow(/^rule 'evil' changed the graph in its match at '/);
    }
    // A match that only looks passes; trusted rules are not fingerprinted (a mutating one goes unseen).
    const looks: Rule = { name: "looks", description: "", rootOps: ["Relu"], benefit: 1, match: () => notCandidate("no"), rewrite: () => ({ summary: "" }) };
    expect(runRules(chain(), [looks]).rewrites).toEqual([]);
    const evil: Rule = { ...looks, match: (node) => ((node as Node).opType = "Tanh", notCandidate("no")) };
    expect(() => runRules(chain(), [evil], { trusted: new Set([evil]) })).not.toThrow();
  });
});
