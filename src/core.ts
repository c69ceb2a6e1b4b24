// The public API without files: models from and to bytes, the optimize workflow and its rules,
// writing your own rule, verification. It has
// no Node import, so it runs in a browser too (the web app in web/ bundles it, with onnxruntime-web
// in place of onnxruntime-node: see src/verify/runtime.ts). src/index.ts adds file I/O.
export { decodeModelBytes, modelToBytes, modelToParts, PROTOBUF_LIMIT, type ExternalFiles } from "./ir/bytes.js";
export { Model, Graph, Node, attr } from "./ir/graph.js";
export { Tensor } from "./ir/tensor.js";
export { DataType } from "./ir/dtype.js";
export { GraphBuilder } from "./ir/builder.js";
export { ModelError, UsageError } from "./ir/errors.js";
export { optimize, defaultRules, type OptimizeOptions, type OptimizeReport, type PassReport } from "./app/optimize.js";
export { findCulprit, skipFailing } from "./app/bisect.js";
export { runRules, MatchMutatedGraphError, type DriverOptions, type RefusalRecord, type Convergence, type ProgressEvent } from "./pipeline/driver.js";
export { RuleContext, type RuleOptions } from "./pipeline/context.js";
export { refuse, notCandidate, isRefusal, type Rule, type Match, type Replacement, type Refusal, type Note, type RewriteRecord, type RewriteFilter } from "./pipeline/rule.js";
export * as rules from "./rules/index.js";
export { verifyModels, verifyModels as verify, cudaAvailable, type VerifyOptions, type VerifyReport } from "./verify/verify.js";
export * as algebra from "./algebra/index.js";
