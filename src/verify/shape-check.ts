// Shape inference checked against onnxruntime: every tensor whose shape the inference claims to
// know (in part) becomes a graph output, the model runs once, and each claimed dim is compared
// with the dim onnxruntime produced. Passes build proofs on these shapes, so a wrong dim matters.
import { valueInfo } from "../ir/builder.js";
import type { Model } from "../ir/graph.js";
import { shapesWithConstants } from "../ir/constants.js";
import { dimsOf } from "../ir/shapes.js";
import { makeInputs, runModel } from "./verify.js";

export interface ShapeCheck {
  /** Dims the inference stated and onnxruntime confirmed or contradicted. */
  checkedDims: number;
  /** "tensor: inferred [..], onnxruntime [..]" for each contradiction. */
  wrong: string[];
}

/** Run `model` on inputs of `inputShapes` and compare every inferred dim with the actual one. */
export async function checkInferredShapes(model: Model, inputShapes: Record<string, number[]>): Promise<ShapeCheck> {
  const shapes = shapesWithConstants(model.graph);
  const probe = model.clone();
  const named = new Set(probe.graph.outputs.map((o) => o.name));
  const claimed: string[] = [];
  for (const n of probe.graph.nodes)
    for (const o of n.outputs) {
      const info = shapes.get(o);
      if (!o || named.has(o) || !info?.dims || info.dtype === undefined || !info.dims.some((d) => d !== undefined)) continue;
      probe.graph.outputs.push(valueInfo(o, info.dtype));
      named.add(o);
      claimed.push(o);
    }
  const outs = await runModel(probe, makeInputs(model, 0, { shapes: inputShapes }));
  const result: ShapeCheck = { checkedDims: 0, wrong: [] };
  for (const name of claimed) {
    const actual = outs[name]?.dims;
    const dims = shapes.get(name)!.dims!;
    if (!actual) continue;
    result.checkedDims += dims.filter((d) => d !== undefined).length;
    if (actual.length !== dims.length || dims.some((d, i) => d !== undefined && d !== Number(actual[i])))
      result.wrong.push(`${name}: inferred [${dims.map((d) => d ?? "?")}], onnxruntime [${actual}]`);
  }
  return result;
}

/** Input shapes with every dynamic dim set to `value` (3: neither 1 nor a channel count). */
export function concreteInputShapes(model: Model, value = 3): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const v of model.graph.realInputs())
    out[v.name ?? ""] = (dimsOf(v) ?? []).map((d) => d ?? value);
  return out;
}
