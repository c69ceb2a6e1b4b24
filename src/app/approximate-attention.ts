// The Stripe Observation (ASR), made usable and honest: ordinary input-dependent channel attention
// (SE: gate = Sigmoid(FC(GAP(x)))) often converges to an almost constant vector. Given calibration
// statistics, a gate whose spread is under a threshold is replaced by its mean vector — an
// APPROXIMATION, never done by default — after which the Mul is a per-channel scaling and folds
// like any other. This file finds the blocks and replaces the gates (a rule run by the driver, so
// the change goes through the rewriter like any other); src/verify/calibration.ts
// measures the statistics and the end-to-end error.
import { DataType } from "../ir/dtype.js";
import { Node, type Model } from "../ir/graph.js";
import { inferShapes, knownProduct } from "../ir/shapes.js";
import { Tensor } from "../ir/tensor.js";
import { runRules } from "../pipeline/driver.js";
import { notCandidate, type Match, type Rule } from "../pipeline/rule.js";
import { GATE_ACTIVATIONS as GATES, GATE_VIEW_OPS as VIEWS } from "../rules/op-traits.js";

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
  // Declared shapes only: a dynamic dim taken as 1 would make a per-element gate [N, C, H, W] look
  // like one value per channel; unknown sizes are checked by the calibration run instead.
  const shapes = inferShapes(g);
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

interface GateMatch extends Match {
  gateIndex: number;
  mean: Float64Array;
  channels: number;
}

/**
 * Replace each chosen block's gate by a constant [1, C, 1, 1] vector; the rewriter's garbage
 * collection removes the gate subgraph that only fed it. Returns a new model; the input model is
 * not modified.
 */
export function replaceGates(model: Model, replacements: { block: AttentionBlock; mean: Float64Array }[]): Model {
  const work = model.clone();
  const chosen = new Map(replacements.map((r) => [r.block.mul.name, r]));
  const dtype = work.graph.initializers.values().next().value?.dtype ?? DataType.FLOAT;
  const meanGate: Rule<GateMatch> = {
    name: "approximate-attention",
    description: "replace a channel-attention gate by its calibration mean (an approximation, only on request)",
    rootOps: ["Mul"],
    benefit: 1,
    match(mul, ctx) {
      const r = chosen.get(mul.name);
      if (!r) return notCandidate("not a chosen attention block");
      const gateIndex = mul.inputs.findIndex((i) => i !== r.block.input);
      if (ctx.constant(mul.inputs[gateIndex]!)) return notCandidate("its gate is a constant already"); // the new Mul keeps the name
      return { anchor: mul, remove: [mul], gateIndex, mean: r.mean, channels: r.block.channels };
    },
    rewrite({ anchor: mul, gateIndex, mean, channels }, ctx) {
      const gate = Tensor.fromFloat64(ctx.uniqueName(`${mul.name || "attention"}/mean_gate`), dtype, [1, channels, 1, 1], mean);
      const inputs = mul.inputs.map((t, i) => (i === gateIndex ? gate.name : t));
      return {
        add: [new Node(mul.name, mul.opType, inputs, [...mul.outputs], mul.attributes, mul.domain)], initializers: [gate],
        summary: `gate of ${mul.name} replaced by its calibration mean (approximation)`,
      };
    },
  };
  runRules(work, [meanGate]);
  return work;
}
