// A float64 reference evaluator for ONNX ops on constant tensors (the engine of constant folding).
export { EVALUATED_OPS, evaluateNode } from "./evaluate.js";
export {
  MAX_ELEMENTS, MAX_WORK, isEvaluableDtype, recycle, tensorFromValue, tensorUnsupported, valueFromTensor, withRecycling, type EvalResult,
  type Value,
} from "./value.js";
