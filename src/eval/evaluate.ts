// evaluateNode: dispatch by op type, the input checks every op shares, and the final rounding of
// outputs to their dtype. Anything not evaluated exactly comes back as a Refusal with the reason.
import { refuse } from "../algebra/linear-map.js";
import { dtypeName } from "../ir/dtype.js";
import type { Node } from "../ir/graph.js";
import {
  BINARY_OPS, COMPARE_OPS, UNARY_OPS, VARIADIC_OPS, evalBinary, evalClip, evalCompare, evalUnary, evalVariadic, evalWhere,
} from "./elementwise.js";
import { evalBatchNorm, evalConv, evalConvTranspose, evalEinsum, evalGemm, evalMatMul, evalPool } from "./linalg.js";
import { REDUCE_OPS, evalArgMinMax, evalReduce, evalSoftmax } from "./reduce.js";
import {
  evalCast, evalConcat, evalConstant, evalConstantOfShape, evalCumSum, evalExpand, evalFlatten, evalGather, evalGatherElements,
  evalGatherND, evalIdentity, evalNonZero, evalPad, evalRange, evalReshape, evalScatterElements, evalScatterND, evalShape, evalSlice,
  evalSplit, evalSqueeze, evalTile, evalTranspose, evalTrilu, evalUnsqueeze, scatterIsPlain,
} from "./shape-ops.js";
import {
  NotEvaluated, finalize, isEvaluableDtype, isFloat, isInt, notEvaluated, sizeOf, withOverwritable, type EvalResult, type Value,
} from "./value.js";

type Handler = (node: Node, ins: (Value | undefined)[], opset: number) => Value[];

const HANDLERS: Record<string, Handler> = {
  Identity: evalIdentity,
  Dropout: evalIdentity,
  Cast: (n, i) => evalCast(n, i),
  CastLike: (n, i) => evalCast(n, i),
  Constant: (n) => evalConstant(n),
  ConstantOfShape: (n, i) => evalConstantOfShape(n, i),
  Shape: evalShape,
  Size: evalShape,
  Range: (_, i) => evalRange(i),
  Reshape: evalReshape,
  Flatten: (n, i) => evalFlatten(n, i),
  Squeeze: evalSqueeze,
  Unsqueeze: evalUnsqueeze,
  Transpose: (n, i) => evalTranspose(n, i),
  Concat: (n, i) => evalConcat(n, i),
  Split: evalSplit,
  Slice: evalSlice,
  Expand: (_, i) => evalExpand(i),
  Tile: (_, i) => evalTile(i),
  Pad: evalPad,
  Gather: (n, i) => evalGather(n, i),
  GatherElements: (n, i) => evalGatherElements(n, i),
  GatherND: (n, i) => evalGatherND(n, i),
  ScatterND: evalScatterND,
  ScatterElements: evalScatterElements,
  Scatter: (n, i, o) => (o >= 11 ? opNotEvaluated(n) : evalScatterElements(n, i, o)),
  Trilu: (n, i) => evalTrilu(n, i),
  CumSum: (n, i) => evalCumSum(n, i),
  NonZero: (_, i) => evalNonZero(i),
  Where: (_, i) => evalWhere(i),
  Clip: evalClip,
  MatMul: (_, i) => evalMatMul(i),
  Gemm: (n, i) => evalGemm(n, i),
  Einsum: (n, i) => evalEinsum(n, i),
  Conv: (n, i) => evalConv(n, i),
  ConvTranspose: (n, i) => evalConvTranspose(n, i),
  AveragePool: evalPool,
  MaxPool: evalPool,
  GlobalAveragePool: evalPool,
  GlobalMaxPool: evalPool,
  BatchNormalization: evalBatchNorm,
  Softmax: evalSoftmax,
  LogSoftmax: evalSoftmax,
  ArgMax: evalArgMinMax,
  ArgMin: evalArgMinMax,
};
for (const op of UNARY_OPS) HANDLERS[op] = (n, i) => evalUnary(n, i);
for (const op of BINARY_OPS) HANDLERS[op] = evalBinary;
for (const op of COMPARE_OPS) HANDLERS[op] = (n, i) => evalCompare(n, i);
for (const op of VARIADIC_OPS) HANDLERS[op] = (n, i) => evalVariadic(n, i);
for (const op of REDUCE_OPS) HANDLERS[op] = evalReduce;

function opNotEvaluated(node: Node): never {
  notEvaluated(`op ${node.opType} is not evaluated`);
}

/** Op types evaluateNode computes (default ONNX domain). */
export const EVALUATED_OPS: ReadonlySet<string> = new Set(Object.keys(HANDLERS));

/**
 * Ops that only move, select or compare values: int64 INT64_MAX/MIN (held as ±2^63) may pass
 * through them. Every other op refuses them (arithmetic on them would not be exact).
 */
const MOVES_VALUES = new Set([
  "Identity", "Dropout", "Cast", "CastLike", "Constant", "ConstantOfShape", "Shape", "Size", "Reshape", "Flatten", "Squeeze",
  "Unsqueeze", "Transpose", "Concat", "Split", "Slice", "Expand", "Tile", "Pad", "Gather", "GatherElements", "GatherND", "Where",
  "Min", "Max", "Clip", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "ReduceMax", "ReduceMin", "ArgMax", "ArgMin",
  "Trilu", "NonZero",
]);

/** Ops whose output may take over an overwritable input's data (evaluateNode). */
const WRITES_IN_PLACE = new Set(["Add", "Sub", "Mul", "Div", "Einsum"]);

/** Ops that read only the shape of their first input. */
const SHAPE_ONLY = new Set(["Shape", "Size"]);

function movesValues(node: Node, opset: number): boolean {
  if (node.opType === "ScatterND" || node.opType === "ScatterElements" || node.opType === "Scatter") return scatterIsPlain(node, opset);
  return MOVES_VALUES.has(node.opType);
}

function checkInputs(node: Node, inputs: (Value | undefined)[], opset: number): void {
  const exactOnly = !movesValues(node, opset);
  inputs.forEach((v, i) => {
    if (!v) return;
    // Shape and Size read only the dims of their input: a tensor whose shape is known but whose
    // values are not (a placeholder with no data) is enough, at any size and of any dtype.
    if (i === 0 && SHAPE_ONLY.has(node.opType)) {
      if (!v.dims.every((d) => Number.isSafeInteger(d) && d >= 0)) notEvaluated(`input 0 has shape [${v.dims}]`);
      return;
    }
    if (!isEvaluableDtype(v.dtype)) notEvaluated(`input ${i} has dtype ${dtypeName(v.dtype)}`);
    if (v.data.length !== sizeOf(v.dims, `input ${i}`)) notEvaluated(`input ${i} holds ${v.data.length} values for shape [${v.dims}]`);
    if (!isInt(v.dtype)) return;
    for (let j = 0; j < v.data.length; j++) {
      const x = v.data[j]!;
      if (Number.isSafeInteger(x)) continue;
      if (x !== x) notEvaluated(`input ${i} holds an int64 value beyond 2^53`);
      if (exactOnly) notEvaluated(`input ${i} holds ${x === 2 ** 63 ? "INT64_MAX" : x === -(2 ** 63) ? "INT64_MIN" : x}, not exact in ${node.opType}`);
    }
  });
}

/**
 * Evaluate one node on constant inputs (`undefined` = optional input absent). The result holds one
 * value per node output; an entry for an output named "" that the op does not compute is an empty
 * placeholder. Never throws for model content: anything not evaluated is a Refusal (`refuse(reason)`).
 * `overwritable`: inputs the caller will not read again and nothing else shares; Add, Sub, Mul,
 * Div and Einsum may write their output over a float one. Only these, on floats: once they start
 * writing nothing refuses the node, so an input is never left half overwritten by a node that
 * stays in the graph (and whose inputs are then written as they are).
 */
export function evaluateNode(node: Node, inputs: (Value | undefined)[], opset: number, overwritable?: ReadonlySet<Value>): EvalResult {
  if (!node.isDefaultDomain) return refuse(`op ${node.domain}.${node.opType} is not evaluated`);
  const handler = HANDLERS[node.opType];
  if (!handler) return refuse(`op ${node.opType} is not evaluated`);
  if (node.hasSubgraph()) return refuse(`op ${node.opType} with a subgraph is not evaluated`);
  try {
    const ins = [...inputs];
    // Trailing/empty names mean absent optional inputs.
    node.inputs.forEach((name, i) => {
      if (name === "") ins[i] = undefined;
    });
    checkInputs(node, ins, opset);
    const reuse = overwritable && WRITES_IN_PLACE.has(node.opType) ? ins.filter((v): v is Value => !!v && overwritable.has(v) && isFloat(v.dtype)) : undefined;
    const outs = withOverwritable(reuse, () => handler(node, ins, opset));
    const sentinels = movesValues(node, opset);
    const result: Value[] = [];
    for (let i = 0; i < node.outputs.length; i++) {
      const v = outs[i];
      if (v) result.push(finalize(v, sentinels));
      else if (node.outputs[i] === "") result.push({ dtype: outs[0]?.dtype ?? 1, dims: [0], data: new Float64Array(0) });
      else return refuse(`${node.opType} output ${i} ('${node.outputs[i]}') is not evaluated`);
    }
    return result;
  } catch (e) {
    if (e instanceof NotEvaluated) return refuse(e.message);
    // Malformed attributes and the like: refuse rather than fail the caller.
    return refuse(`${node.opType} could not be evaluated: ${(e as Error).message}`);
  }
}
