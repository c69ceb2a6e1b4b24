// npm run bench:gemm — the exact matrix product's rate (docs/rules.md §7.6) on the shapes the
// compositions run (rows = outputs·taps of a 1x1 → 3x3 block, depth = intermediate channels,
// columns = input channels): the JS kernel, the WebAssembly SIMD kernel on one thread, and the
// WebAssembly kernel on the worker threads (gemm-parallel.ts, every core unless REPARAM_THREADS caps
// them). Round-robin (one run of each in turn per round) so other load spreads over all three;
// best and median GMAC/s (10⁹ multiply-adds per second), and whether all three give the same bits.
// Usage: node dist/bench/gemm-bench.js [--rounds 7] [--shapes 2043x192x192,2043x512x512]
import { parseArgs } from "node:util";
import { gemmAccumulateJs } from "../src/algebra/gemm.js";
import { gemmAccumulateParallel, gemmThreadStats } from "../src/algebra/gemm-parallel.js";
import { gemmAccumulateWasm } from "../src/algebra/gemm-wasm.js";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "7" }, shapes: { type: "string", default: "2043x96x96,2043x192x192,2043x256x256,2043x512x512" } } });
const rounds = Number(values.rounds);
type Product = (A: Float64Array, aOff: number, B: Float64Array, bOff: number, C: Float64Array, cOff: number, M: number, K: number, N: number) => void;
const kernels: [string, Product][] = [
  ["JS, 1 thread", gemmAccumulateJs],
  ["wasm, 1 thread", (...args) => { if (!gemmAccumulateWasm(...args)) throw new Error("the WebAssembly kernel is unavailable here"); }],
  ["wasm, threads", gemmAccumulateParallel],
];
let seed = 7;
const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;

// Start the worker threads before timing (they start in the background on first use).
gemmAccumulateParallel(new Float64Array(512 * 128), 0, new Float64Array(128 * 128), 0, new Float64Array(512 * 128), 0, 512, 128, 128);
await new Promise((resolve) => setTimeout(resolve, 300));

console.log(`exact float64 C += A·B, ${rounds} rounds round-robin, GMAC/s best / median (workers: ${gemmThreadStats().workers})`);
for (const shape of values.shapes.split(",")) {
  const [M, K, N] = shape.split("x").map(Number) as [number, number, number];
  const A = Float64Array.from({ length: M * K }, random), B = Float64Array.from({ length: K * N }, random);
  const C0 = Float64Array.from({ length: M * N }, random);
  const times: number[][] = kernels.map(() => []);
  const results = kernels.map(() => C0.slice());
  for (let r = 0; r < rounds; r++)
    for (const [k, [, run]] of kernels.entries()) {
      const C = r === 0 ? results[k]! : C0.slice();
      const t = performance.now();
      run(A, 0, B, 0, C, 0, M, K, N);
      times[k]!.push(performance.now() - t);
    }
  const same = results.every((C) => C.every((x, i) => Object.is(x, results[0]![i])));
  const rate = (ms: number): string => (M * K * N / ms / 1e6).toFixed(2);
  const cells = kernels.map(([name], k) => {
    const ts = times[k]!.sort((a, b) => a - b);
    return `${name} ${rate(ts[0]!)} / ${rate(ts[Math.floor(ts.length / 2)]!)}`;
  });
  console.log(`${shape}: ${cells.join(" | ")} | same bits: ${same ? "yes" : "NO"}`);
  if (!same) process.exitCode = 1;
}
