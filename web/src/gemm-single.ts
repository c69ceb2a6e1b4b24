// The browser's side of src/algebra/gemm-parallel.ts (Node worker threads): web/build.mjs bundles
// this file in its place. The page's compiler already runs in a Web Worker; its products run on
// that one thread with gemm.ts's kernels (WebAssembly SIMD where the browser has it), which
// gemm-parallel.ts guarantees give the same bits as its threaded split, so the page writes the
// same weights as the CLI.
import { gemmAccumulate, singleThreadWorkspace } from "../../src/algebra/gemm.js";
import type { GemmWorkspace } from "../../src/algebra/gemm-wasm.js";
import type * as Threaded from "../../src/algebra/gemm-parallel.js";

export type { GemmWorkspace, TeamSetup } from "../../src/algebra/gemm-parallel.js";

export function gemmAccumulateParallel(
  A: Float64Array, aOff: number, B: Float64Array, bOff: number, C: Float64Array, cOff: number, M: number, K: number, N: number,
): void {
  gemmAccumulate(A, aOff, B, bOff, C, cOff, M, K, N);
}

export function gemmWorkspace(M: number, K: number, N: number): GemmWorkspace {
  return singleThreadWorkspace(M, K, N);
}

/** Only gemm-worker.ts (a Node worker thread, never bundled) calls it. */
export function serveBlocks(_setup: Threaded.TeamSetup): void {
  throw new Error("gemm worker threads are not used in the browser");
}

export function gemmThreadStats(): { workers: number; jobs: number; workerBlocks: number } {
  return { workers: 0, jobs: 0, workerBlocks: 0 };
}

const sameExports: typeof Threaded = { gemmAccumulateParallel, gemmWorkspace, serveBlocks, gemmThreadStats };
void sameExports;
