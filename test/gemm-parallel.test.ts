// The threaded matrix product gives the single-threaded product's bits, and the worker threads
// really take blocks of it. Worker threads run from the built dist/ (npm test builds first); under
// the TypeScript test runner alone the calling thread does every block, which the second case checks.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { gemmAccumulate } from "../src/algebra/gemm.js";
import { gemmAccumulateParallel } from "../src/algebra/gemm-parallel.js";
import { rng } from "./helpers/random.js";

const dist = path.resolve(import.meta.dirname, "../dist/src/algebra");

describe("gemm on several threads", () => {
  it.skipIf(!fs.existsSync(path.join(dist, "gemm-worker.js")))("worker threads (built dist/) compute the same bits as one thread", () => {
    const script = `
      import { gemmAccumulate } from ${JSON.stringify(path.join(dist, "gemm.js"))};
      import { gemmAccumulateParallel, gemmThreadStats } from ${JSON.stringify(path.join(dist, "gemm-parallel.js"))};
      let seed = 5; const r = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
      let same = 0;
      for (const [M, K, N] of [[600, 250, 130], [257, 300, 257]]) {
        const A = Float64Array.from({ length: M * K }, r), B = Float64Array.from({ length: K * N }, r);
        const C0 = Float64Array.from({ length: M * N }, r), C1 = C0.slice();
        gemmAccumulate(A, 0, B, 0, C0, 0, M, K, N);
        gemmAccumulateParallel(A, 0, B, 0, C1, 0, M, K, N);
        if (C0.every((x, i) => Object.is(x, C1[i]))) same++;
      }
      // The workers really take blocks (they start in the background, and a loaded machine may not
      // run one during a given product: products until one did, for at most 20 s).
      const A = Float64Array.from({ length: 1000 * 200 }, r), B = Float64Array.from({ length: 200 * 200 }, r);
      const t0 = Date.now();
      while (gemmThreadStats().workerBlocks === 0 && Date.now() - t0 < 20000) gemmAccumulateParallel(A, 0, B, 0, new Float64Array(1000 * 200), 0, 1000, 200, 200);
      const { workers, workerBlocks } = gemmThreadStats();
      console.log(same, workers, workerBlocks > 0);`;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", env: { ...process.env, REPARAM_THREADS: "3" } });
    expect(out.trim()).toBe("2 2 true");
  });

  it("with no worker available the calling thread does every block", () => {
    const r = rng(3);
    const [M, K, N] = [300, 200, 300];
    const A = Float64Array.from({ length: M * K }, () => r() - 0.5), B = Float64Array.from({ length: K * N }, () => r() - 0.5);
    const C0 = new Float64Array(M * N), C1 = new Float64Array(M * N);
    gemmAccumulate(A, 0, B, 0, C0, 0, M, K, N);
    gemmAccumulateParallel(A, 0, B, 0, C1, 0, M, K, N);
    expect(C1).toEqual(C0);
  });
});
