// The affine map a chain of row-wise linear nodes computes on each row of a flat buffer, read off
// by running the chain in float64 on the unit basis (plus the zero row for the bias).
//
// A "row-wise" node acts alike on every slice along its input's axis 0 (Conv, BatchNormalization,
// Gemm/MatMul rows, a Mul by a constant that does not vary along axis 0, a Transpose keeping axis 0),
// so on a C-order buffer it is block diagonal with identical blocks of `rowIn` → `rowOut` elements.
// Views (Reshape, Flatten, …) never move elements in that buffer and are left out of the chain.
import { DataType } from "../ir/dtype.js";
import type { Node } from "../ir/graph.js";
import type { Tensor } from "../ir/tensor.js";
import { evaluateNode } from "./evaluate.js";
import { MAX_ELEMENTS, valueFromTensor, type Value } from "./value.js";

export interface RowStep {
  node: Node;
  /** Index of the input that carries the data; the others are constants. */
  dataInput: number;
  /** Shape of the data input with axis 0 left out (one natural row). */
  inRow: number[];
  /** Elements of one natural input row and of the matching output row. */
  rowIn: number;
  rowOut: number;
  /** Gemm/MatMul work on 2-D rows of their last axis: the data is given as [rows, rowIn]. */
  matrixRows?: boolean;
}

export interface AffineRowMap {
  rows: number;
  cols: number;
  /** Row-major [rows, cols]: output element r of a region row from input element c. */
  matrix: Float64Array;
  bias: Float64Array;
}

/**
 * The map a chain computes on a region row of `width` elements (each step must tile it: its
 * current width a multiple of the step's rowIn). Returns a reason when the evaluator declines.
 */
export function probeRowMap(steps: RowStep[], width: number, constant: (name: string) => Tensor | undefined, opset: number): AffineRowMap | { refused: string } {
  const batch = width + 1;
  let current = width;
  // Row 0 is the zero vector (gives the bias), row 1 + c the unit vector e_c.
  let data: Float64Array = new Float64Array(batch * width);
  for (let c = 0; c < width; c++) data[(c + 1) * width + c] = 1;
  for (const step of steps) {
    if (current % step.rowIn !== 0) return { refused: `${step.node.opType} '${step.node.name}' rows of ${step.rowIn} do not tile a region row of ${current}` };
    const k = current / step.rowIn;
    if (batch * k * Math.max(step.rowIn, step.rowOut) > MAX_ELEMENTS) return { refused: `probing a ${width}-element row through ${step.node.opType} needs more than ${MAX_ELEMENTS} values` };
    const dims = step.matrixRows ? [batch * k, step.rowIn] : [batch * k, ...step.inRow];
    const inputs: (Value | undefined)[] = step.node.inputs.map((name, i) => {
      if (i === step.dataInput) return { dtype: DataType.DOUBLE, dims, data };
      if (!name) return undefined;
      const t = constant(name);
      if (!t) return undefined;
      const v = valueFromTensor(t);
      return { dtype: DataType.DOUBLE, dims: v.dims, data: v.data };
    });
    const out = evaluateNode(step.node, inputs, opset);
    if ("unsupported" in out) return { refused: `${step.node.opType} '${step.node.name}': ${out.unsupported}` };
    data = out[0]!.data;
    current = k * step.rowOut;
    if (data.length !== batch * current) return { refused: `${step.node.opType} '${step.node.name}' does not give rows of ${step.rowOut}` };
  }
  const matrix = new Float64Array(current * width), bias = data.slice(0, current);
  for (let c = 0; c < width; c++) {
    const base = (c + 1) * current;
    for (let r = 0; r < current; r++) matrix[r * width + c] = data[base + r]! - bias[r]!;
  }
  return { rows: current, cols: width, matrix, bias };
}
