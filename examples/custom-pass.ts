// A pass of your own, in the same pipeline as the built-in ones: drop `Identity` nodes.
// (Shown in README "Programmatic use"; test/api.test.ts runs it.)
import { defaultPasses, loadModel, optimize, verifyModels, type Pass } from "../src/index.js";

export const dropIdentity: Pass = {
  name: "drop-identity",
  description: "remove Identity nodes whose output is not a graph output",
  run(ctx) {
    for (const node of ctx.graph.nodes) {
      const [input, output] = [node.inputs[0]!, node.outputs[0]!];
      if (node.opType !== "Identity" || ctx.isGraphOutput(output)) continue;
      // Readers of the output read the input instead; then the node is dead.
      ctx.rewriter.replaceAllUses(output, input);
      ctx.rewriter.replace({ pass: "drop-identity", anchor: node, remove: [node], add: [], summary: `Identity ${node.name} removed` });
      return true; // the driver calls the pass again until it returns false
    }
    return false;
  },
};

export async function run(file: string) {
  const model = loadModel(file);
  const { model: optimized, report } = optimize(model, { passes: [dropIdentity, ...defaultPasses()] });
  const check = await verifyModels(model, optimized);
  return { report, check };
}
