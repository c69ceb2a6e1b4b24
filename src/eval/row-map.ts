// The affine map a chain of row-wise linear nodes computes on each row of a flat buffer, read off
// by running the chain in float64 on the unit basis (plus the zero row for the bias).
//
// A "row-wise" node acts alike on every slice along its input's axis 0 (Conv, BatchNormalization,
// Gemm/MatMul rows, a Mul by a constant that does not vary along axis 0, a Transpose keeping axis 0),
// so on a C-order buffer it is block diagonal with identical blocks of `rowIn` → `rowOut` elements.
// Views (Reshape, Flatten, …) never move elements in that buffer and are left out of the chain.
import { gcd, isRefusal, refuse, type Refusal } from "../algebra/linear-map.js";
import { DataType } from "../ir/dtype.js";
import type { Node } from "../ir/graph.js";
import type { Tensor } from "../ir/tensor.js";
import { evaluateNode } from "./evaluate.js";
import { MAX_WORK, valueFromTensor, type Value } from "./value.js";

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
  /**
   * Contiguous equal blocks one natural row splits into, each read only by its own output block
   * (a Conv's groups); "diagonal" for elementwise maps (BN, Mul by a constant), which split any way.
   */
  blocks: number | "diagonal";
}

/**
 * An affine map on region rows, block diagonal with `groups` equal blocks: `matrix` is row-major
 * [rows, cols / groups] (a grouped 1x1 conv's weight): entry (r, c) is the weight of input element
 * g·(cols/groups) + c for output r in block g = floor(r / (rows/groups)).
 */
export interface AffineRowMap {
  rows: number;
  cols: number;
  groups: number;
  matrix: Float64Array;
  bias: Float64Array;
}


/**
 * How many contiguous equal blocks a region row of `width` provably splits into along the chain:
 * a node whose natural rows each split into n blocks splits a region row (k natural rows) into
 * k·n, and a chain keeps a split into G blocks when G divides every node's count (views keep
 * positions). Structure, not values: zero weights never make the count larger.
 */
export function chainBlocks(steps: RowStep[], width: number): number {
  let current = width, groups = width;
  for (const step of steps) {
    const k = current / step.rowIn;
    if (step.blocks !== "diagonal") groups = gcd(groups, k * step.blocks);
    current = k * step.rowOut;
  }
  return gcd(groups, current);
}

/** Largest dense row map (rows × cols entries) this probe builds. */
export const MAX_ROW_MAP_ENTRIES = 2 ** 26;

/**
 * The map a chain computes on a region row of `width` elements (each step must tile it: its
 * current width a multiple of the step's rowIn). The unit basis goes through in chunks, so each
 * node evaluation stays within the evaluator's size and work limits. Returns a reason when the
 * map is too large or the evaluator declines a node.
 */
export function probeRowMap(steps: RowStep[], width: number, groups: number, constant: (name: string) => Tensor | undefined, opset: number): AffineRowMap | Refusal {
  // Widths along the chain, and the work one probe row costs at the widest step.
  let current = width, widest = width, workPerRow = 0;
  for (const step of steps) {
    if (current % step.rowIn !== 0) return refuse(`${step.node.opType} '${step.node.name}' rows of ${step.rowIn} do not tile a region row of ${current}`);
    const k = current / step.rowIn;
    const w = step.node.opType === "Conv" || step.node.opType === "Gemm" || step.node.opType === "MatMul" ? constant(step.node.inputs[1]!) : undefined;
    workPerRow = Math.max(workPerRow, k * step.rowOut * (w ? (step.node.opType === "Conv" ? w.size / w.dims[0]! : step.rowIn) : 1));
    current = k * step.rowOut;
    widest = Math.max(widest, current);
  }
  const rows = current;
  if (width % groups !== 0 || rows % groups !== 0) return refuse(`a row of ${width} → ${rows} does not split into ${groups} blocks`);
  // With G independent blocks, probe j sets element j of every block at once: block g of the
  // response is column j of block g (the blocks never read each other), so cols/G + 1 probes do.
  const probes = width / groups;
  if (rows * probes > MAX_ROW_MAP_ENTRIES) return refuse(`the [${rows}, ${probes}] row map is larger than ${MAX_ROW_MAP_ENTRIES} entries`);
  const chunk = Math.max(1, Math.min(probes + 1, Math.floor(2 ** 22 / widest), Math.floor(MAX_WORK / 2 / Math.max(1, workPerRow))));
  // Constant operands as float64 values, decoded once for all chunks.
  const operands = steps.map((step) => step.node.inputs.map((name, i) => {
    const t = i === step.dataInput || !name ? undefined : constant(name);
    if (!t) return undefined;
    const v = valueFromTensor(t);
    return { dtype: DataType.DOUBLE, dims: v.dims, data: v.data };
  }));
  const matrix = new Float64Array(rows * probes);
  let bias: Float64Array | undefined;
  // Probe p is the zero vector for p = 0 (the bias), element p−1 of every block otherwise.
  for (let first = 0; first <= probes; first += chunk) {
    const count = Math.min(chunk, probes + 1 - first);
    const out = runChain(steps, operands, width, groups, first, count, opset);
    if ("refused" in out) return out;
    if (first === 0) bias = out.slice(0, rows);
    for (let p = first === 0 ? 1 : 0; p < count; p++) {
      const c = first + p - 1;
      for (let r = 0; r < rows; r++) matrix[r * probes + c] = out[p * rows + r]! - bias![r]!;
    }
  }
  return { rows, cols: width, groups, matrix, bias: bias! };
}

/** The chain's outputs for probe rows first .. first+count−1, row-major. */
function runChain(steps: RowStep[], operands: (Value | undefined)[][], width: number, groups: number, first: number, count: number, opset: number): Float64Array | Refusal {
  const probes = width / groups;
  let data: Float64Array = new Float64Array(count * width);
  for (let p = 0; p < count; p++) if (first + p > 0) for (let g = 0; g < groups; g++) data[p * width + g * probes + first + p - 1] = 1;
  let current = width;
  for (const [s, step] of steps.entries()) {
    const k = current / step.rowIn;
    const dims = step.matrixRows ? [count * k, step.rowIn] : [count * k, ...step.inRow];
    const inputs = operands[s]!.map((v, i) => (i === step.dataInput ? { dtype: DataType.DOUBLE, dims, data } : v));
    const out = evaluateNode(step.node, inputs, opset);
    if (isRefusal(out)) return refuse(`${step.node.opType} '${step.node.name}': ${out.refused}`);
    data = out[0]!.data;
    current = k * step.rowOut;
    if (data.length !== count * current) return refuse(`${step.node.opType} '${step.node.name}' does not give rows of ${step.rowOut}`);
  }
  return data;
}
