// The browser's side of src/algebra/gemm-parallel.ts (Node worker threads): web/build.mjs bundles
// this file in its place. The page's compiler already runs in a Web Worker; its products run on
// that one thread with gemm.ts's code, which gemm-parallel.ts guarantees gives the same bits as
// its threaded split, so the page writes the same weights as the CLI.
import { gemmAccumulate } from "../../src/algebra/gemm.js";
import type * as Threaded from "../../src/algebra/gemm-parallel.js";

export type { GemmJob } from "../../src/algebra/gemm-parallel.js";

export function gemmAccumulateParallel(
  A: Float64Array, aOff: number, B: Float64Array, bOff: number, C: Float64Array, cOff: number, M: number, K: number, N: number,
): void {
  gemmAccumulate(A, aOff, B, bOff, C, cOff, M, K, N);
}

/** Only gemm-worker.ts (a Node worker thread, never bundled) calls it. */
export function runBlocks(_job: Threaded.GemmJob): void {
  throw new Error("gemm worker threads are not used in the browser");
}

const sameExports: typeof Threaded = { gemmAccumulateParallel, runBlocks };
void sameExports;
