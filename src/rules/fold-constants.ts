// The prepare stage's constant folding (as onnxsim does, inside the tool; docs/rules.md §6): every
// node whose inputs are all constants is evaluated in float64 (src/eval) and replaced by an
// initializer — BN parameter arithmetic, kernels generated in the graph (OREPA: Einsum, Mul, Add,
// Reshape, a Conv on weights), shape plumbing of tensors whose shape is static in the model,
// constant attention heads. A node the evaluator cannot handle stays as it is (and --explain names
// the op and why).
//
// Rooted on the first foldable node, the match is the whole constant region from there to the
// graph's end (values propagate forward in one topological sweep), anchored at its last node:
// one rewrite folds every constant subgraph there is.
import { EVALUATED_OPS, evaluateNode, tensorFromValue, tensorUnsupported, valueFromTensor, type Value } from "../eval/index.js";
import { DataType } from "../ir/dtype.js";
import type { Node } from "../ir/graph.js";
import type { ShapeMap } from "../ir/shapes.js";
import type { Tensor } from "../ir/tensor.js";
import type { RuleContext } from "../pipeline/context.js";
import { notCandidate, refuse, type Match, type Note, type Refusal, type Rule } from "../pipeline/rule.js";
import { foldGrowsTooMuch } from "./policy.js";

interface ConstantRegion extends Match {
  /** Values of the removed nodes' outputs. */
  produced: Map<string, Value>;
}

type Evaluated = { outputs: Value[]; inputs: (Value | undefined)[] } | Refusal;

/** Cheap checks first: can `node` be folded at all (its op, domain, outputs)? */
function foldable(ctx: RuleContext, node: Node): boolean {
  if (node.opType === "Constant" || !node.isDefaultDomain || node.hasSubgraph() || !EVALUATED_OPS.has(node.opType)) return false;
  return !node.outputs.some((o) => o && ctx.isGraphOutput(o));
}

/** Evaluate `node` if its inputs are known; a quiet refusal when they are not. */
function evaluate(ctx: RuleContext, node: Node, valueOf: (name: string) => Value | undefined, declared: () => ShapeMap): Evaluated {
  let inputs: (Value | undefined)[] = [];
  if ((node.opType === "Shape" || node.opType === "Size") && !valueOf(node.inputs[0]!)) {
    const dims = declared().get(node.inputs[0]!)?.dims;
    if (!dims || dims.some((d) => d === undefined)) return notCandidate("shape not static in the model");
    // Evaluate on a placeholder of the right shape (only its dims are read).
    inputs = [{ dtype: DataType.FLOAT, dims: dims as number[], data: new Float64Array(0) }];
  } else {
    for (const name of node.inputs) {
      if (!name) {
        inputs.push(undefined);
        continue;
      }
      const v = valueOf(name);
      if (!v) return notCandidate("an input is not constant");
      inputs.push(v);
    }
    if (inputs.length === 0) return notCandidate("no inputs");
  }
  const result = evaluateNode(node, inputs, ctx.opset());
  if ("unsupported" in result) return refuse(`constant subgraph not evaluated: ${result.unsupported}`);
  if (node.opType !== "Shape" && node.opType !== "Size") {
    const size = (vs: (Value | undefined)[]) => vs.reduce((s, v) => s + (v?.data.length ?? 0), 0);
    if (foldGrowsTooMuch(size(inputs), size(result))) return notCandidate("folding would grow the model");
  }
  return { outputs: result, inputs };
}

export const foldConstants: Rule<ConstantRegion> = {
  name: "fold-constants",
  description: "evaluate initializer-only subgraphs (and shapes static in the model) in float64 into initializers",
  rootOps: [...EVALUATED_OPS],
  benefit: 60,
  match(root, ctx) {
    if (!foldable(ctx, root)) return notCandidate("not foldable");
    const values = new Map<string, Value>();
    const valueOf = (name: string): Value | undefined => {
      const v = values.get(name);
      if (v) return v;
      const t = ctx.constant(name);
      if (!t || tensorUnsupported(t)) return undefined;
      const decoded = valueFromTensor(t);
      values.set(name, decoded);
      return decoded;
    };
    const declared = () => ctx.declaredShapes();
    const first = evaluate(ctx, root, valueOf, declared);
    if ("refused" in first) return first;
    // The rest of the region: every later node whose inputs are now known.
    const nodes = ctx.graph.nodes;
    const removed: Node[] = [];
    const produced = new Map<string, Value>();
    const notes: Note[] = [];
    const keep = (node: Node, outputs: Value[]) => {
      node.outputs.forEach((o, i) => {
        if (o) {
          values.set(o, outputs[i]!);
          produced.set(o, outputs[i]!);
        }
      });
      removed.push(node);
    };
    keep(root, first.outputs);
    for (let i = nodes.indexOf(root) + 1; i < nodes.length; i++) {
      const node = nodes[i]!;
      if (!foldable(ctx, node)) continue;
      const r = evaluate(ctx, node, valueOf, declared);
      if ("refused" in r) {
        if (!r.quiet) notes.push({ node, reason: r.refused });
        continue;
      }
      keep(node, r.outputs);
    }
    return { anchor: removed[removed.length - 1]!, remove: removed, produced, notes };
  },
  rewrite({ remove, produced }, ctx) {
    // Outputs still read by the remaining graph become initializers under their own names.
    const gone = new Set(remove);
    const stillRead = new Set<string>();
    for (const n of ctx.graph.nodes) if (!gone.has(n)) for (const i of n.inputs) if (produced.has(i)) stillRead.add(i);
    const tensors: Tensor[] = [...stillRead].map((name) => tensorFromValue(name, produced.get(name)!));
    const histogram = new Map<string, number>();
    for (const n of remove) histogram.set(n.opType, (histogram.get(n.opType) ?? 0) + 1);
    return {
      initializers: tensors,
      summary: `${remove.length} constant node(s) (${[...histogram].map(([op, k]) => `${k} ${op}`).join(", ")}) → ${tensors.length} initializer(s)`,
    };
  },
};
