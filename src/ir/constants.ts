// Which tensors of a graph have fixed values: initializers no graph input can override, and
// Constant nodes' outputs. Shape inference reads them for Reshape targets and Pad amounts.
import type { Graph, Node } from "./graph.js";
import { inferShapes, type ShapeMap } from "./shapes.js";
import { Tensor } from "./tensor.js";

/** The fixed value of `name`, or undefined (`producers`: the graph's producer map, for Constants). */
export function constantTensor(graph: Graph, producers: Map<string, Node>, name: string): Tensor | undefined {
  const init = graph.initializers.get(name);
  if (init) return graph.inputs.some((i) => i.name === name) ? undefined : init;
  const producer = producers.get(name);
  if (producer?.opType === "Constant" && producer.isDefaultDomain) {
    const t = producer.tensor("value");
    if (t) return t;
    const f = producer.attr("value_float"), fs = producer.attr("value_floats");
    if (f) return Tensor.fromFloat64(name, 1, [], Float64Array.of(Number(f.f)));
    if (fs) return Tensor.fromFloat64(name, 1, [fs.floats!.length], Float64Array.from(fs.floats!));
  }
  return undefined;
}

/**
 * A constant's values as shape inference reads them (Reshape targets, Pad amounts, values it
 * follows through Shape arithmetic), or undefined for a tensor of rank ≥ 2 with more than 64
 * values: inference keeps values only for tensors of rank ≤ 1 and at most 64 entries, and no op
 * it follows turns a rank-≥2 tensor of more than 64 values into one (Squeeze keeps the count,
 * Gather needs a 1-D input), so such a weight cannot matter — and listing a conv kernel's
 * millions of values as a JS array is what made inference slow on models with weights in Mul/Add.
 */
export function shapeValues(t: Tensor): number[] | undefined {
  if (t.dims.length >= 2 && t.size > 64) return undefined;
  return Array.from(t.toFloat64());
}

/** Shapes of every tensor, reading constants' values (Reshape targets, Pad amounts). */
export function shapesWithConstants(graph: Graph, overrides?: Record<string, number[]>): ShapeMap {
  const producers = graph.producers();
  return inferShapes(graph, {
    overrides,
    constant: (name) => {
      const t = constantTensor(graph, producers, name);
      return t ? shapeValues(t) : undefined;
    },
  });
}
