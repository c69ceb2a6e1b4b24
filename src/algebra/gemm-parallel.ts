// gemm.ts over the machine's cores: large products are cut into blocks of rows of C, and worker
// threads and the calling thread take blocks from one shared counter until none is left. Every
// element of C is still computed by one thread with gemm.ts's code, so results are bit-identical
// to the single-threaded product whatever the split. The caller stays synchronous: it works on
// blocks itself and then waits (Atomics.wait) for blocks a worker has taken; a worker that has not
// started yet (or cannot start, e.g. under a TypeScript test runner) simply takes none.
import * as fs from "node:fs";
import * as os from "node:os";
import { Worker } from "node:worker_threads";
import { gemmAccumulate } from "./gemm.js";

/** Below this many multiply-adds a product runs on the calling thread (handing out costs ~0.1 ms). */
const PARALLEL_WORK = 1 << 24;
/** Rows of C per block. */
const BLOCK_ROWS = 64;

let pool: Worker[] | undefined;

function workers(): Worker[] {
  if (pool) return pool;
  pool = [];
  const count = Math.min(Number(process.env.REPARAM_THREADS ?? os.availableParallelism()), 8) - 1;
  const script = new URL("./gemm-worker.js", import.meta.url);
  if (count < 1 || !fs.existsSync(script)) return pool;
  for (let i = 0; i < count; i++) {
    try {
      const w = new Worker(script);
      w.unref();
      // A worker that fails takes no blocks: the calling thread does them.
      w.on("error", () => undefined);
      pool.push(w);
    } catch {
      break;
    }
  }
  return pool;
}

/** What a worker is sent: the operands in shared memory and the job's counters. */
export interface GemmJob {
  a: SharedArrayBuffer;
  b: SharedArrayBuffer;
  c: SharedArrayBuffer;
  /** [next block to take, blocks done] */
  counters: SharedArrayBuffer;
  M: number;
  K: number;
  N: number;
}

/** Take blocks until none is left; returns after the last one taken is done. */
export function runBlocks(job: GemmJob): void {
  const A = new Float64Array(job.a), B = new Float64Array(job.b), C = new Float64Array(job.c);
  const counters = new Int32Array(job.counters);
  const blocks = Math.ceil(job.M / BLOCK_ROWS);
  for (;;) {
    const k = Atomics.add(counters, 0, 1);
    if (k >= blocks) return;
    const r0 = k * BLOCK_ROWS, rows = Math.min(BLOCK_ROWS, job.M - r0);
    gemmAccumulate(A, r0 * job.K, B, 0, C, r0 * job.N, rows, job.K, job.N);
    Atomics.add(counters, 1, 1);
    Atomics.notify(counters, 1);
  }
}

/**
 * Shared copies of the operands, in buffers kept from one product to the next (a fresh buffer per
 * product leaves the garbage collector hundreds of MB behind on a DBB model). Reuse is safe: a
 * product returns only after every block taken is done, and a worker that reads a job late finds
 * its counter exhausted before it touches any data.
 */
const buffers: (SharedArrayBuffer | undefined)[] = [];
/** Largest operand buffer kept between products. */
const KEEP_BYTES = 16 << 20;

function shared(slot: number, x: Float64Array, n: number): SharedArrayBuffer {
  let buffer = buffers[slot];
  if (!buffer || buffer.byteLength !== n * 8) buffer = buffers[slot] = new SharedArrayBuffer(n * 8);
  new Float64Array(buffer).set(x.subarray(0, n));
  return buffer;
}

/**
 * gemmAccumulate (row-major, contiguous, C += A·B with each sum in order k = 0…K−1), on several
 * threads when the product is large. Same arguments, same bits.
 */
export function gemmAccumulateParallel(
  A: Float64Array, aOff: number, B: Float64Array, bOff: number, C: Float64Array, cOff: number, M: number, K: number, N: number,
): void {
  const team = M * K * N >= PARALLEL_WORK && M > BLOCK_ROWS ? workers() : [];
  if (team.length === 0) return gemmAccumulate(A, aOff, B, bOff, C, cOff, M, K, N);
  const job: GemmJob = {
    a: shared(0, A.subarray(aOff), M * K), b: shared(1, B.subarray(bOff), K * N), c: shared(2, C.subarray(cOff), M * N),
    counters: new SharedArrayBuffer(8), M, K, N,
  };
  for (const w of team) w.postMessage(job);
  runBlocks(job);
  const counters = new Int32Array(job.counters);
  const blocks = Math.ceil(M / BLOCK_ROWS);
  for (let done = Atomics.load(counters, 1); done < blocks; done = Atomics.load(counters, 1)) Atomics.wait(counters, 1, done, 1000);
  C.set(new Float64Array(job.c), cOff);
  // Small buffers are kept for the next product; large ones are not held for the process's life.
  for (let slot = 0; slot < buffers.length; slot++) if ((buffers[slot]?.byteLength ?? 0) > KEEP_BYTES) buffers[slot] = undefined;
}
