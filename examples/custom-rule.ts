// A rule of your own, run by the same driver as the built-in ones (README "Programmatic use";
// test/api.test.ts runs it). It removes `Identity` nodes: the readers of the output read the
// input instead. match() only looks and says why not; rewrite() declares the change; the driver
// asks its filter first and the rewriter applies it (and drops what the removed node left unused).
import { defaultRules, loadModel, notCandidate, optimize, verifyModels, type Match, type Rule } from "../src/index.js";

interface IdentityMatch extends Match {
  input: string;
  output: string;
}

export const dropIdentity: Rule<IdentityMatch> = {
  name: "drop-identity",
  description: "remove Identity nodes whose output is not a graph output",
  rootOps: ["Identity"], // the driver offers only these nodes to match()
  benefit: 100, // runs before the built-in rules (their benefits are 10–70)
  match(node, ctx) {
    const [input, output] = [node.inputs[0], node.outputs[0]];
    if (!input || !output) return notCandidate("no input or output");
    if (ctx.isGraphOutput(output)) return notCandidate("its output is a graph output (the name is part of the interface)");
    return { anchor: node, remove: [node], input, output };
  },
  rewrite({ anchor, input, output }) {
    return {
      replaceUses: [{ from: output, to: input }],
      summary: `Identity ${anchor.name} removed`,
    };
  },
};

export async function run(file: string) {
  const model = loadModel(file);
  const { model: optimized, report } = optimize(model, { rules: [dropIdentity, ...defaultRules()] });
  const check = await verifyModels(model, optimized);
  return { report, check };
}
