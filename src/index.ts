// Public API: load/save, the optimize workflow and its rules, writing your own rule, verification.
// See README "Programmatic use" and examples/. src/core.ts is everything but the files (it also
// runs in a browser); this adds them.
export * from "./core.js";
export { loadModel, saveModel, modelFromBytes } from "./ir/io.js";
export { readNpy, writeNpy } from "./verify/npy.js";
