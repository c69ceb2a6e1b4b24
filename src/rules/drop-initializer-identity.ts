// Identity of an initializer (PyTorch's export of a second use of a shared parameter): its readers
// read the initializer itself, so constant folding never turns one shared weight into two copies.
// Runs before fold-constants, which would otherwise fold the Identity into a copy.
import type { Node } from "../ir/graph.js";
import { notCandidate, refuse, type Match, type Rule } from "../pipeline/rule.js";

interface IdentityMatch extends Match {
  source: string;
}

export const dropInitializerIdentity: Rule<IdentityMatch> = {
  name: "drop-initializer-identity",
  description: "let the readers of an Identity of an initializer read the initializer (shared weights stay shared)",
  rootOps: ["Identity"],
  benefit: 70,
  match(node: Node, ctx) {
    const source = node.inputs[0];
    if (!source || !ctx.graph.initializers.has(source) || !ctx.constant(source)) return notCandidate("not an Identity of a fixed initializer");
    if (ctx.isGraphOutput(node.outputs[0]!)) return notCandidate("its output is a graph output");
    const captured = ctx.graph.renameCapturedBy(node.outputs[0]!, source);
    if (captured) return refuse(`a subgraph of '${captured.name}' reads its output and defines its own '${source}'`);
    return { anchor: node, remove: [node], source };
  },
  rewrite({ anchor, source }) {
    return {
      replaceUses: [{ from: anchor.outputs[0]!, to: source }],
      summary: `Identity of initializer '${source}' removed (its readers share it)`,
    };
  },
};
