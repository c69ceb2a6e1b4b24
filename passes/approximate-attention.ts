// The Stripe Observation (ASR), made usable and honest: ordinary input-dependent channel attention
// (SE: gate = Sigmoid(FC(GAP(x)))) often converges to an almost constant vector. Given calibration
// statistics, a gate whose spread is under a threshold is replaced by its mean vector — an
// APPROXIMATION, never done by default — after which the Mul is a per-channel scaling and folds
// like any other. This file finds the blocks and performs the replacement; src/verify/calibration.ts
// measures the statistics and the end-to-end error.
import { Node, type Model } from "../src/ir/graph.js";
import { PassContext } from "../src/pipeline/context.js";
import { DataType } from "../src/ir/dtype.js";
import { inferShapes, knownProduct } from "../src/ir/shapes.js";
import { Tensor } from "../src/ir/tensor.js";

const GATES = new Set(["Sigmoid", "HardSigmoid"]);
/** Ops that only reshape or broadcast the gate vector on its way to the Mul. */
const VIEWS = new Set(["Reshape", "Unsqueeze", "Squeeze", "Flatten", "Expand", "Identity"]);

export interface AttentionBlock {
  /** The Mul applying the gate. */
  mul: Node;
  /** The activation the gate scales. */
  input: string;
  /** The gate tensor measured: the Sigmoid's output, C values per sample. */
  gate: string;
  channels: number;
}

/** Channel-attention blocks whose gate depends on the activation it scales. */
export function findAttentionBlocks(model: Model): AttentionBlock[] {
  const g = model.graph;
  const producers = g.producers();
  const shapes = inferShapes(g, { symbolicDim: 1 });
  const isConst = (t: string) => g.initializers.has(t);
  const blocks: AttentionBlock[] = [];
  for (const mul of g.nodes) {
    if (mul.opType !== "Mul" || mul.domain || mul.inputs.some(isConst)) continue;
    for (const [k, other] of [[0, 1], [1, 0]] as const) {
      let t = mul.inputs[k]!;
      let p = producers.get(t);
      while (p && VIEWS.has(p.opType)) p = producers.get((t = p.inputs[0]!));
      if (!p || !GATES.has(p.opType)) continue;
      const x = mul.inputs[other]!;
      const xd = shapes.get(x)?.dims;
      const sd = shapes.get(p.outputs[0]!)?.dims;
      if (!xd || xd.length !== 4 || xd[1] === undefined) continue;
      // One value per channel (not a spatial gate); when the shape is only known at run time, the
      // calibration run checks it (attentionStats).
      const perSample = sd && knownProduct(sd.slice(1));
      if (perSample !== undefined && perSample !== xd[1]) continue;
      blocks.push({ mul, input: x, gate: p.outputs[0]!, channels: xd[1] });
      break;
    }
  }
  return blocks;
}

/**
 * Replace each chosen block's gate by a constant [1, C, 1, 1] vector; the rewriter's garbage
 * collection removes the gate subgraph that only fed it. Returns a new model; the input model is
 * not modified.
 */
export function replaceGates(model: Model, replacements: { block: AttentionBlock; mean: Float64Array }[]): Model {
  const work = model.clone();
  const ctx = new PassContext(work);
  const byName = new Map(work.graph.nodes.map((n) => [n.name, n]));
  const dtype = work.graph.initializers.values().next().value?.dtype ?? DataType.FLOAT;
  for (const { block, mean } of replacements) {
    const mul = byName.get(block.mul.name)!;
    const gateIndex = mul.inputs.findIndex((i) => i !== block.input);
    const name = ctx.rewriter.addInitializer(`${block.mul.name || "attention"}/mean_gate`, (n) => Tensor.fromFloat64(n, dtype, [1, block.channels, 1, 1], mean));
    const inputs = mul.inputs.map((t, i) => (i === gateIndex ? name : t));
    ctx.rewriter.replace({
      pass: "approximate-attention", anchor: mul, remove: [mul], add: [new Node(mul.name, mul.opType, inputs, [...mul.outputs], mul.attributes, mul.domain)],
      summary: `gate of ${mul.name} replaced by its calibration mean (approximation)`,
    });
  }
  return work;
}
