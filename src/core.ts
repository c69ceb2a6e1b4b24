// The public API without files: models from and to bytes, the pass pipeline, verification. It has
// no Node import, so it runs in a browser too (the web app in web/ bundles it, with onnxruntime-web
// in place of onnxruntime-node: see src/verify/runtime.ts). src/index.ts adds file I/O.
export { decodeModelBytes, modelToBytes, modelToParts, PROTOBUF_LIMIT, type ExternalFiles } from "./ir/bytes.js";
export { Model, Graph, Node, attr } from "./ir/graph.js";
export { Tensor } from "./ir/tensor.js";
export { DataType } from "./ir/dtype.js";
export { GraphBuilder } from "./ir/builder.js";
export { ModelError, UsageError } from "./ir/errors.js";
export { optimize, defaultPasses, type OptimizeOptions, type OptimizeReport } from "./pipeline/optimize.js";
export type { Pass } from "./pipeline/pass.js";
export { PassContext } from "./pipeline/context.js";
export { verifyModels, verifyModels as verify, cudaAvailable, type VerifyOptions, type VerifyReport } from "./verify/verify.js";
export * as algebra from "./algebra/index.js";
