export * from "./linear-map.js";
export * from "./affine.js";
export * from "./sum.js";
export * from "./compose.js";
export * from "./pool.js";
