// The prepare stage's constant folding (as onnxsim does, inside the tool): every node whose inputs
// are all constants is evaluated in float64 (src/eval) and replaced by an initializer — BN
// parameter arithmetic, kernels generated in the graph (OREPA: Einsum, Mul, Add, Reshape, a Conv on
// weights), shape plumbing of tensors whose shape is static in the model, constant attention heads.
// A node the evaluator cannot handle stays as it is (and --explain names the op and why).
import { EVALUATED_OPS, evaluateNode, tensorFromValue, tensorUnsupported, valueFromTensor, type Value } from "../src/eval/index.js";
import { DataType } from "../src/ir/dtype.js";
import type { Node } from "../src/ir/graph.js";
import { inferShapes } from "../src/ir/shapes.js";
import type { Tensor } from "../src/ir/tensor.js";
import type { PassContext } from "../src/pipeline/context.js";
import type { Pass } from "../src/pipeline/pass.js";

/** Folding must not turn a small graph into a big file: e.g. Expand of a scalar to an image. */
function growsTooMuch(inputs: (Value | undefined)[], outputs: Value[]): boolean {
  const inSize = inputs.reduce((s, v) => s + (v?.data.length ?? 0), 0);
  const outSize = outputs.reduce((s, v) => s + v.data.length, 0);
  return outSize > Math.max(4096, 2 * inSize);
}

export const foldConstants: Pass = {
  name: "fold-constants",
  description: "evaluate initializer-only subgraphs (and shapes static in the model) in float64 into initializers",
  run(ctx) {
    const graph = ctx.graph;
    const opset = ctx.model.opset();
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
    // Identity of an initializer (PyTorch's export of a second use of a shared parameter): readers
    // use the initializer itself, so folding never turns one shared weight into two copies.
    // All of them in one sweep: the pass is rerun after each rewrite, and each rerun would infer
    // the shapes of the whole graph again.
    let removedIdentity = false;
    for (const node of [...graph.nodes]) {
      const src = node.inputs[0];
      if (node.opType === "Identity" && node.isDefaultDomain && src && graph.initializers.has(src) && ctx.constant(src) && !ctx.isGraphOutput(node.outputs[0]!)) {
        ctx.rewriter.replaceAllUses(node.outputs[0]!, src);
        if (ctx.rewriter.replace({ pass: foldConstants.name, anchor: node, remove: [node], add: [], summary: `Identity of initializer '${src}' removed (its readers share it)` })) removedIdentity = true;
      }
    }
    if (removedIdentity) return true;
    // Shapes as the model declares them: --shape must not specialise a dynamic graph silently.
    const staticShapes = inferShapes(graph, { constant: (n) => { const t = ctx.constant(n); return t ? Array.from(t.toFloat64()) : undefined; } });
    const removed: Node[] = [];
    const produced = new Map<string, Value>();
    for (const node of graph.nodes) {
      if (node.opType === "Constant" || !node.isDefaultDomain || node.hasSubgraph() || !EVALUATED_OPS.has(node.opType)) continue;
      if (node.outputs.some((o) => o && ctx.isGraphOutput(o))) continue;
      let inputs: (Value | undefined)[] | undefined = [];
      if ((node.opType === "Shape" || node.opType === "Size") && !valueOf(node.inputs[0]!)) {
        const dims = staticShapes.get(node.inputs[0]!)?.dims;
        if (!dims || dims.some((d) => d === undefined)) continue;
        // Evaluate on a placeholder of the right shape (only its dims are read).
        inputs = [{ dtype: DataType.FLOAT, dims: dims as number[], data: new Float64Array(0) }];
      } else {
        for (const name of node.inputs) {
          if (!name) {
            inputs.push(undefined);
            continue;
          }
          const v = valueOf(name);
          if (!v) {
            inputs = undefined;
            break;
          }
          inputs.push(v);
        }
        if (!inputs || inputs.length === 0) continue;
      }
      const result = evaluateNode(node, inputs, opset);
      if ("unsupported" in result) {
        ctx.refuse(node, `constant subgraph not evaluated: ${result.unsupported}`);
        continue;
      }
      if (node.opType !== "Shape" && node.opType !== "Size" && growsTooMuch(inputs, result)) continue;
      node.outputs.forEach((o, i) => {
        if (o) {
          values.set(o, result[i]!);
          produced.set(o, result[i]!);
        }
      });
      removed.push(node);
    }
    if (removed.length === 0) return false;
    // Outputs still read by the remaining graph become initializers under their own names.
    const gone = new Set(removed);
    const stillRead = new Set<string>();
    for (const n of graph.nodes) if (!gone.has(n)) for (const i of n.inputs) if (produced.has(i)) stillRead.add(i);
    const tensors: Tensor[] = [...stillRead].map((name) => tensorFromValue(name, produced.get(name)!));
    const histogram = new Map<string, number>();
    for (const n of removed) histogram.set(n.opType, (histogram.get(n.opType) ?? 0) + 1);
    const applied = ctx.rewriter.replace({
      pass: foldConstants.name, anchor: removed[removed.length - 1]!, remove: removed, add: [], initializers: tensors,
      summary: `${removed.length} constant node(s) (${[...histogram].map(([op, k]) => `${k} ${op}`).join(", ")}) → ${tensors.length} initializer(s)`,
    });
    return applied;
  },
};
