// gemm.ts's product on the WebAssembly SIMD kernel (gemm-kernel.wat; docs/rules.md §7.6): the
// operands sit in the kernel's memory, the same K and M blocking as the JS kernel runs there two
// columns per instruction. Every element's sum is taken in the same order with the same IEEE-754
// operations as the JS kernel, so the bits are the same. A caller either copies its operands in
// and out (gemmAccumulateWasm: O(MK + KN + MN) against the product's O(MKN)) or builds them in
// place (wasmWorkspace: the composition packs straight into the kernel's memory). B is stored in
// panels of 4 columns (packPanels), so the depth loop reads it contiguously.
import { GEMM_KERNEL_WASM, GEMM_KERNEL_WASM_SHARED } from "./gemm-kernel-wasm.js";

/** Rows of A (and C) one cache block holds. */
const MC = 64;
/** Depth of one block of the sum: a 4-column strip of B (KC x 4) stays in L1. */
const KC = 256;
/** Largest kernel memory kept from one product to the next; a larger product gets its own, dropped after. */
const KEEP_BYTES = 32 << 20;
/** Largest product the kernel takes (its addresses are 32-bit); larger ones stay in JS. */
const MAX_BYTES = 1 << 30;
export const PAGE = 65536;

/** The kernel's export: rows i0…i1−1 of C += A·B over depths k0…k1−1 (byte addresses a, b, c). */
export type BlockKernel = (a: number, b: number, c: number, K: number, N: number, i0: number, i1: number, k0: number, k1: number) => void;

const compiled: (WebAssembly.Module | null | undefined)[] = [undefined, undefined];

/**
 * The compiled kernel (on a plain or a shared memory), or null where WebAssembly or its SIMD
 * instructions (or, for `shared`, its threads) are unavailable.
 */
export function kernelModule(shared = false): WebAssembly.Module | null {
  const slot = shared ? 1 : 0;
  if (compiled[slot] !== undefined) return compiled[slot]!;
  compiled[slot] = null;
  try {
    if (typeof WebAssembly === "object") {
      const text = atob(shared ? GEMM_KERNEL_WASM_SHARED : GEMM_KERNEL_WASM);
      compiled[slot] = new WebAssembly.Module(Uint8Array.from(text, (ch) => ch.charCodeAt(0)));
    }
  } catch {
    // No SIMD (an old engine rejects the module): the JS kernel does the work.
  }
  return compiled[slot]!;
}

export function kernelOn(module: WebAssembly.Module, memory: WebAssembly.Memory): BlockKernel {
  return new WebAssembly.Instance(module, { env: { memory } }).exports.block as BlockKernel;
}

/** Rows r0…r1−1 of C += A·B in the kernel's memory, blocked as gemm.ts blocks (K blocks outer). */
export function runRows(block: BlockKernel, a: number, b: number, c: number, K: number, N: number, r0: number, r1: number): void {
  for (let k0 = 0; k0 < K; k0 += KC) {
    const k1 = Math.min(K, k0 + KC);
    for (let i0 = r0; i0 < r1; i0 += MC) block(a, b, c, K, N, i0, Math.min(r1, i0 + MC), k0, k1);
  }
}

const align16 = (bytes: number): number => (bytes + 15) & ~15;

/** Byte addresses of A, B and C for one product, and the bytes they need. */
export function layout(M: number, K: number, N: number): { a: number; b: number; c: number; end: number } {
  const b = align16(M * K * 8), c = b + align16(K * N * 8);
  return { a: 0, b, c, end: c + M * N * 8 };
}

/** Grow `memory` to at least `bytes`. */
export function ensureBytes(memory: WebAssembly.Memory, bytes: number): void {
  const have = memory.buffer.byteLength;
  if (have < bytes) memory.grow(Math.ceil((bytes - have) / PAGE));
}

interface Instance {
  memory: WebAssembly.Memory;
  block: BlockKernel;
}

let kept: Instance | undefined;

/** An instance whose memory holds `bytes`: the kept one (grown if needed) or, for a large product, a fresh one. */
function instanceFor(module: WebAssembly.Module, bytes: number): Instance {
  const fresh = (): Instance => {
    const memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / PAGE) });
    return { memory, block: kernelOn(module, memory) };
  };
  if (bytes > KEEP_BYTES) return fresh();
  kept ??= fresh();
  ensureBytes(kept.memory, bytes);
  return kept;
}

/** Whether the WebAssembly kernel can run here. */
export function wasmGemmAvailable(): boolean {
  return kernelModule() !== null;
}

/**
 * The operands of one product C += A·B (M x K, K x N, M x N): the caller fills A (row-major) and C's
 * starting values (row-major), gives B (row-major at src[offset…]) to setB — which stores it in the
 * kernel's layout — calls run(), and reads C. Views are valid until the next workspace is taken.
 */
export interface GemmWorkspace {
  A: Float64Array;
  C: Float64Array;
  setB(src: Float64Array | Float32Array, offset: number): void;
  run(): void;
}

/**
 * B (K x N, row-major at src[offset…]) in the kernel's layout (gemm-kernel.wat's header): panels of
 * 4 columns, each K rows of 4 contiguous values, then the N mod 4 last columns row-major.
 */
export function packPanels(src: Float64Array | Float32Array, offset: number, K: number, N: number, dst: Float64Array): void {
  const n4 = N & ~3, tail = N - n4;
  for (let k = 0; k < K; k++) {
    const row = (offset + k * N) | 0;
    for (let j = 0; j < n4; j += 4) {
      const d = (j * K + 4 * k) | 0;
      dst[d] = src[row + j]!; dst[d + 1] = src[row + j + 1]!; dst[d + 2] = src[row + j + 2]!; dst[d + 3] = src[row + j + 3]!;
    }
    for (let j = n4; j < N; j++) dst[(n4 * K + k * tail + j - n4) | 0] = src[row + j]!;
  }
}

/** A workspace in the kept kernel memory (one thread), or undefined where the kernel cannot take it. */
export function wasmWorkspace(M: number, K: number, N: number): GemmWorkspace | undefined {
  const module = kernelModule();
  const at = layout(M, K, N);
  if (!module || at.end > KEEP_BYTES) return undefined;
  const kernel = instanceFor(module, at.end);
  const heap = kernel.memory.buffer;
  const B = new Float64Array(heap, at.b, K * N);
  return {
    A: new Float64Array(heap, at.a, M * K), C: new Float64Array(heap, at.c, M * N),
    setB: (src, offset) => packPanels(src, offset, K, N, B),
    run: () => runRows(kernel.block, at.a, at.b, at.c, K, N, 0, M),
  };
}

/**
 * C[cOff + i·N + j] += Σ_k A[aOff + i·K + k] · B[bOff + k·N + j] on the WebAssembly kernel, each sum
 * in order k = 0…K−1 onto C's current value (the same bits as gemm.ts's JS kernel). Returns false,
 * having done nothing, where the kernel is unavailable or the operands do not fit its memory.
 */
export function gemmAccumulateWasm(
  A: Float64Array, aOff: number, B: Float64Array, bOff: number, C: Float64Array, cOff: number, M: number, K: number, N: number,
): boolean {
  const module = kernelModule();
  if (!module) return false;
  const at = layout(M, K, N);
  if (at.end > MAX_BYTES) return false;
  const kernel = instanceFor(module, at.end);
  const heap = kernel.memory.buffer;
  new Float64Array(heap, at.a, M * K).set(A.subarray(aOff, aOff + M * K));
  packPanels(B, bOff, K, N, new Float64Array(heap, at.b, K * N));
  const c64 = new Float64Array(heap, at.c, M * N);
  c64.set(C.subarray(cOff, cOff + M * N));
  runRows(kernel.block, at.a, at.b, at.c, K, N, 0, M);
  C.set(c64, cOff);
  return true;
}
