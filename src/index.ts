// Public API: load/save, the pass pipeline, verification. See README "Programmatic use".
export { loadModel, saveModel, modelFromBytes, modelToBytes } from "./ir/io.js";
export { Model, Graph, Node, attr } from "./ir/graph.js";
export { Tensor } from "./ir/tensor.js";
export { DataType } from "./ir/dtype.js";
export { GraphBuilder } from "./ir/builder.js";
export { ModelError, UsageError } from "./ir/errors.js";
export { optimize, defaultPasses, type OptimizeOptions, type OptimizeReport } from "./pipeline/optimize.js";
export type { Pass } from "./pipeline/pass.js";
export { PassContext } from "./pipeline/context.js";
export { verifyModels, verifyModels as verify, cudaAvailable, type VerifyOptions, type VerifyReport } from "./verify/verify.js";
export { readNpy, writeNpy } from "./verify/npy.js";
export * as algebra from "./algebra/index.js";
