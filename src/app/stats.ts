// Model statistics for reports: op histogram, Conv weight elements, multiply-accumulates, bytes.
import type { Model } from "../ir/graph.js";
import { inferShapes, knownProduct } from "../ir/shapes.js";
import { shapeValues } from "../ir/constants.js";
import { dtypeName, isFloatType } from "../ir/dtype.js";

export interface ModelStats {
  nodes: number;
  ops: Record<string, number>;
  convWeights: number;
  /** Conv + Gemm/MatMul multiply-accumulates for one input at the resolved shapes (0 where unknown). */
  macs: number;
  weightBytes: number;
  dtype: string;
}

export function modelStats(model: Model, shapes?: Record<string, number[]>): ModelStats {
  const g = model.graph;
  const ops: Record<string, number> = {};
  for (const n of g.nodes) ops[n.opType] = (ops[n.opType] ?? 0) + 1;
  const sorted = Object.fromEntries(Object.entries(ops).sort(([a], [b]) => a.localeCompare(b)));
  const shapeMap = inferShapes(g, { overrides: shapes, symbolicDim: 1, constant: (name) => {
    const t = g.initializers.get(name);
    return t ? shapeValues(t) : undefined;
  } });
  let convWeights = 0, macs = 0;
  for (const n of g.nodes) {
    if (n.opType === "Conv") {
      const w = g.initializers.get(n.inputs[1] ?? "");
      if (w) {
        convWeights += w.size;
        const out = shapeMap.get(n.outputs[0] ?? "")?.dims;
        const spatial = out && knownProduct(out.slice(2));
        if (spatial !== undefined) macs += (w.size / 1) * spatial;
      }
    } else if (n.opType === "Gemm" || n.opType === "MatMul") {
      const w = g.initializers.get(n.inputs[1] ?? "");
      const out = shapeMap.get(n.outputs[0] ?? "")?.dims;
      if (w && out) {
        const rows = knownProduct(out.slice(0, -1));
        if (rows !== undefined) macs += w.size * rows;
      }
    }
  }
  let weightBytes = 0;
  const floatTypes = new Map<number, number>();
  for (const t of g.initializers.values()) {
    weightBytes += t.byteLength;
    if (isFloatType(t.dtype)) floatTypes.set(t.dtype, (floatTypes.get(t.dtype) ?? 0) + t.size);
  }
  const main = [...floatTypes].sort((a, b) => b[1] - a[1])[0];
  return { nodes: g.nodes.length, ops: sorted, convWeights, macs, weightBytes, dtype: main ? dtypeName(main[0]) : "none" };
}
