// gemm.ts over the machine's cores (docs/rules.md §7.6): the operands of a large product sit in one
// shared WebAssembly memory that every thread's instance of the kernel (gemm-kernel.wat) reads, C
// is cut into blocks of rows, and worker threads and the calling thread take blocks from one
// shared counter until none is left. Every element of C is still computed by one thread with the
// same kernel, so results are bit-identical to the single-threaded product whatever the split.
// The caller stays synchronous: it works on blocks itself and then waits (Atomics.wait) for blocks
// a worker has taken. Workers sleep in Atomics.wait between products (no message per product); a
// worker that has not started yet (or cannot start, e.g. under a TypeScript test runner) simply
// takes none.
import * as fs from "node:fs";
import * as os from "node:os";
import { Worker } from "node:worker_threads";
import { gemmAccumulate, singleThreadWorkspace, wasmKernelEnabled } from "./gemm.js";
import { SHARED_PAGES } from "./gemm-kernel-wasm.js";
import { ensureBytes, kernelModule, kernelOn, layout, packPanels, PAGE, runRows, type BlockKernel, type GemmWorkspace } from "./gemm-wasm.js";

export type { GemmWorkspace } from "./gemm-wasm.js";

/** Below this many multiply-adds a product runs on the calling thread (waking the workers costs ~0.1 ms). */
const PARALLEL_WORK = 1 << 22;
/** Rows of C per block. */
const BLOCK_ROWS = 64;
/** The shared memory's size limit: a product whose operands need more runs on one thread. */
const WORKSPACE_BYTES = SHARED_PAGES * PAGE;

// The control words (Int32 in a SharedArrayBuffer): the job's generation (workers wait on it), the
// claim word (generation << INDEX_BITS | next block), blocks done, and the job.
const GEN = 0, CLAIM = 1, DONE = 2, JOB_M = 3, JOB_K = 4, JOB_N = 5, JOB_A = 6, JOB_B = 7, JOB_C = 8, BLOCKS = 9, ROWS = 10;
const INDEX_BITS = 12;
const INDEX_MASK = (1 << INDEX_BITS) - 1;
/** Generations wrap at 2^20 (the claim word's upper bits). */
const GEN_MASK = (1 << (32 - INDEX_BITS)) - 1;

/** What a worker is started with. */
export interface TeamSetup {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
}

interface Team {
  memory: WebAssembly.Memory;
  control: Int32Array;
  block: BlockKernel;
  workers: Worker[];
  generation: number;
  /** Products run on several threads, and the blocks workers (not the caller) did. */
  jobs: number;
  workerBlocks: number;
}

let team: Team | null | undefined;

/** How long a product may go without a block finishing before the workers are taken for dead. */
const STALL_MS = 120_000;

/** The shared memory, the calling thread's kernel on it, and the workers (started on first use). */
function teamOf(): Team | null {
  if (team !== undefined) return team;
  team = null;
  const module = wasmKernelEnabled() ? kernelModule(true) : null;
  if (!module) return null;
  let memory: WebAssembly.Memory;
  try {
    memory = new WebAssembly.Memory({ initial: 1, maximum: SHARED_PAGES, shared: true });
  } catch {
    return null;
  }
  const control = new SharedArrayBuffer(16 * 4);
  team = {
    memory, control: new Int32Array(control), block: kernelOn(module, memory), workers: startWorkers({ module, memory, control }),
    generation: 0, jobs: 0, workerBlocks: 0,
  };
  return team;
}

function startWorkers(setup: TeamSetup): Worker[] {
  const pool: Worker[] = [];
  const count = Math.min(Number(process.env.REPARAM_THREADS ?? os.availableParallelism()), 8) - 1;
  const script = new URL("./gemm-worker.js", import.meta.url);
  if (!(count >= 1) || !fs.existsSync(script)) return pool;
  for (let i = 0; i < count; i++) {
    try {
      // The parent's flags, less --input-type (a worker started from `node --input-type=module -e`
      // would otherwise fail to load its file).
      const execArgv = process.execArgv.filter((a) => !a.startsWith("--input-type"));
      const w = new Worker(script, { workerData: setup, execArgv });
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

/** A worker's life: sleep until a product is published, take its blocks, sleep again. */
export function serveBlocks(setup: TeamSetup): void {
  const block = kernelOn(setup.module, setup.memory);
  const control = new Int32Array(setup.control);
  let seen = Atomics.load(control, GEN);
  for (;;) {
    Atomics.wait(control, GEN, seen);
    seen = Atomics.load(control, GEN);
    takeBlocks(block, control, seen);
  }
}

/**
 * Take blocks of job `gen` until none is left; returns how many this thread did. The job's words
 * are read before a block is claimed, and a claim succeeds only while the claim word still carries
 * `gen` — the caller replaces the claim word before it writes the next job — so a thread that woke
 * late never runs a block with a mix of two jobs' words.
 */
function takeBlocks(block: BlockKernel, control: Int32Array, gen: number): number {
  const M = control[JOB_M]!, K = control[JOB_K]!, N = control[JOB_N]!;
  const a = control[JOB_A]!, b = control[JOB_B]!, c = control[JOB_C]!, blocks = control[BLOCKS]!, rows = control[ROWS]!;
  const tag = (gen << INDEX_BITS) | 0;
  let done = 0;
  for (;;) {
    const word = Atomics.load(control, CLAIM);
    const index = word & INDEX_MASK;
    if ((word & ~INDEX_MASK) !== tag || index >= blocks) return done;
    if (Atomics.compareExchange(control, CLAIM, word, word + 1) !== word) continue;
    const r0 = index * rows;
    runRows(block, a, b, c, K, N, r0, Math.min(M, r0 + rows));
    done++;
    Atomics.add(control, DONE, 1);
    Atomics.notify(control, DONE);
  }
}

/** The product laid out at `at` in the shared memory, on every thread that takes a block. */
function runShared(t: Team, at: { a: number; b: number; c: number }, M: number, K: number, N: number): void {
  if (t.workers.length === 0 || M * K * N < PARALLEL_WORK || M <= BLOCK_ROWS) return runRows(t.block, at.a, at.b, at.c, K, N, 0, M);
  const control = t.control;
  const gen = (t.generation = (t.generation + 1) & GEN_MASK);
  const rows = Math.max(BLOCK_ROWS, Math.ceil(M / INDEX_MASK));
  const blocks = Math.ceil(M / rows);
  Atomics.exchange(control, CLAIM, (gen << INDEX_BITS) | 0);
  control[JOB_M] = M; control[JOB_K] = K; control[JOB_N] = N;
  control[JOB_A] = at.a; control[JOB_B] = at.b; control[JOB_C] = at.c;
  control[BLOCKS] = blocks; control[ROWS] = rows;
  Atomics.store(control, DONE, 0);
  Atomics.store(control, GEN, gen);
  Atomics.notify(control, GEN);
  const mine = takeBlocks(t.block, control, gen);
  // A worker that died holding a claimed block (its C rows half added) would leave this wait
  // forever, and its error event cannot arrive while this thread waits: a product that makes no
  // progress for STALL_MS is an internal error (the block cannot be redone: C already holds part of it).
  let last = Atomics.load(control, DONE), since = performance.now();
  while (last < blocks) {
    Atomics.wait(control, DONE, last, 1000);
    const now = Atomics.load(control, DONE);
    if (now !== last) [last, since] = [now, performance.now()];
    else if (performance.now() - since > STALL_MS) throw new Error(`internal error: a worker thread stopped during a matrix product (${blocks - now} of ${blocks} blocks unfinished for ${STALL_MS / 1000} s); set REPARAM_THREADS=1 to run on one thread`);
  }
  t.jobs++;
  t.workerBlocks += blocks - mine;
}

/**
 * The operands of one product C += A·B, to be filled in place (no copies on the way in or out):
 * in the shared memory, run on several threads when large, where the kernel can take it; else in
 * the one-thread kernel's memory, or plain arrays and the JS kernel. Valid until the next workspace.
 */
export function gemmWorkspace(M: number, K: number, N: number): GemmWorkspace {
  const t = teamOf();
  const at = layout(M, K, N);
  if (t && at.end <= WORKSPACE_BYTES) {
    ensureBytes(t.memory, at.end);
    const heap = t.memory.buffer;
    const B = new Float64Array(heap, at.b, K * N);
    return {
      A: new Float64Array(heap, at.a, M * K), C: new Float64Array(heap, at.c, M * N),
      setB: (src, offset) => packPanels(src, offset, K, N, B),
      run: () => runShared(t, at, M, K, N),
    };
  }
  return singleThreadWorkspace(M, K, N);
}

/**
 * gemmAccumulate (row-major, contiguous, C += A·B with each sum in order k = 0…K−1), on several
 * threads when the product is large. Same arguments, same bits.
 */
export function gemmAccumulateParallel(
  A: Float64Array, aOff: number, B: Float64Array, bOff: number, C: Float64Array, cOff: number, M: number, K: number, N: number,
): void {
  const t = M * K * N >= PARALLEL_WORK && M > BLOCK_ROWS ? teamOf() : null;
  if (!t || t.workers.length === 0 || layout(M, K, N).end > WORKSPACE_BYTES) return gemmAccumulate(A, aOff, B, bOff, C, cOff, M, K, N);
  const w = gemmWorkspace(M, K, N);
  w.A.set(A.subarray(aOff, aOff + M * K));
  w.setB(B, bOff);
  w.C.set(C.subarray(cOff, cOff + M * N));
  w.run();
  C.set(w.C, cOff);
}

/** How many products ran on several threads, and how many blocks of them worker threads did. */
export function gemmThreadStats(): { workers: number; jobs: number; workerBlocks: number } {
  return { workers: team?.workers.length ?? 0, jobs: team?.jobs ?? 0, workerBlocks: team?.workerBlocks ?? 0 };
}
