// Helpers for the tests beside each rule (src/rules/*.test.ts): match one node with a fresh
// context, run rules through the driver, and prove a result in onnxruntime.
import { expect } from "vitest";
import { modelToBytes } from "../../src/ir/bytes.js";
import type { Model, Node } from "../../src/ir/graph.js";
import { RuleContext, type RuleOptions } from "../../src/pipeline/context.js";
import { runRules, type DriverOptions } from "../../src/pipeline/driver.js";
import { Rewriter } from "../../src/pipeline/rewriter.js";
import type { Match, Rule } from "../../src/pipeline/rule.js";
import { verifyModels } from "../../src/verify/verify.js";

/** The `index`-th node of an op type. */
export function nodeOf(model: Model, opType: string, index = 0): Node {
  const node = model.graph.nodes.filter((n) => n.opType === opType)[index];
  if (!node) throw new Error(`no ${opType} #${index}`);
  return node;
}

/** `rule.match` at `node`, checking that matching changed nothing in the model. */
export function matchAt<M extends Match>(model: Model, rule: Rule<M>, node: Node, options: RuleOptions = {}) {
  const before = modelToBytes(model);
  const ctx = new RuleContext(model, options, new Rewriter(model.graph));
  const result = rule.match(node, ctx);
  expect(Buffer.from(modelToBytes(model)).equals(Buffer.from(before)), "match changed the model").toBe(true);
  return result;
}

/** The refusal `rule.match` gives at `node` (fails the test on a match). */
export function refusalAt(model: Model, rule: Rule, node: Node, options: RuleOptions = {}) {
  const result = matchAt(model, rule, node, options);
  if (!("refused" in result)) throw new Error(`${rule.name} matched ${node.name}`);
  return result;
}

/** Run `rules` on a copy through the driver and prove the copy equal to `model` in onnxruntime. */
export async function applyAndProve(model: Model, rules: Rule[], options: DriverOptions = {}) {
  const work = model.clone();
  const result = runRules(work, rules, options);
  const proof = await verifyModels(model, work, { runs: 2, shapes: options.shapes });
  expect(proof.ok, `verification failed: max rel ${proof.maxRel}`).toBe(true);
  return { model: work, result };
}

export function opCounts(m: Model): Record<string, number> {
  const h: Record<string, number> = {};
  for (const n of m.graph.nodes) h[n.opType] = (h[n.opType] ?? 0) + 1;
  return h;
}
