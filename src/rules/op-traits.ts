// What the rules know about ONNX ops, in one table every rule reads (docs/rules.md §3): which ops
// only reinterpret a buffer (views), which act on each row of a tensor, which are linear, and
// which activations keep zero at zero. A rule that needs a new fact adds it here.

/** Ops that never move an element of the C-order buffer: only the shape they report changes. */
export const VIEW_OPS: ReadonlySet<string> = new Set(["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"]);

/** Views plus Expand: what may carry a per-channel gate vector from its activation to the Mul it scales. */
export const GATE_VIEW_OPS: ReadonlySet<string> = new Set([...VIEW_OPS, "Expand"]);

/** Elementwise arithmetic that is affine in one operand when the other is a constant (c / x is not: see constantOperand). */
export const AFFINE_BINARY_OPS: ReadonlySet<string> = new Set(["Mul", "Add", "Sub", "Div"]);

/** Ops that add their operands (a branch sum). */
export const SUM_OPS: ReadonlySet<string> = new Set(["Add", "Sub", "Sum"]);

/** Reductions that sum (or average) a stack of tensors over the stacked axis (torch.stack(xs).sum(0)). */
export const STACK_REDUCE_OPS: ReadonlySet<string> = new Set(["ReduceSum", "ReduceMean"]);

/** Ops the linear reader (rules/linear/read.ts) may read as a linear map, given constant parameters. */
export const LINEAR_OPS: ReadonlySet<string> = new Set(["Conv", "Gemm", "MatMul", "BatchNormalization", "Add", "Sub", "Mul", "Div", "Sum", "Neg", "AveragePool", "Pad", "ScatterND", "Identity", "Dropout", "Slice", ...STACK_REDUCE_OPS]);

/** Fully connected layers (a matrix on the last axis). */
export const DENSE_OPS: ReadonlySet<string> = new Set(["Gemm", "MatMul"]);

/** Layers with a weight a composition multiplies through (kernel or matrix as input 1). */
export const WEIGHTED_LAYER_OPS: ReadonlySet<string> = new Set(["Conv", "Gemm", "MatMul"]);

/**
 * Activations with f(0) = 0 whose extra inputs (if any) are constant parameters: a channel that is
 * exactly zero stays zero through them (PRelu: slope·0 = 0; LeakyRelu, Elu, Selu, Celu likewise).
 * Clip and Dropout keep zero under conditions the reader checks (the range holds 0; the mask is unused).
 */
export const ZERO_PRESERVING_ACTIVATIONS: ReadonlySet<string> = new Set(["Relu", "LeakyRelu", "Tanh", "HardSwish", "Identity", "Gelu", "Elu", "Selu", "Celu", "Softsign", "Mish", "PRelu"]);

/** Activations that gate channel attention (SE: gate = Sigmoid(FC(GAP(x)))). */
export const GATE_ACTIVATIONS: ReadonlySet<string> = new Set(["Sigmoid", "HardSigmoid"]);
