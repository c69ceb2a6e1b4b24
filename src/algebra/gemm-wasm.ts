// gemm.ts's product on the WebAssembly SIMD kernel (gemm-kernel.wat; docs/rules.md §7.6):
// the operands are copied into the kernel's memory, the same K and M blocking as
// the JS kernel runs there two columns per instruction, and C is copied back. Every element's sum
// is taken in the same order with the same IEEE-754 operations as the JS kernel, so the bits are
// the same; the copies are O(MK + KN + MN) against the product's O(MKN).
import { GEMM_KERNEL_WASM } from "./gemm-kernel-wasm.js";

/** Rows of A (and C) one cache block holds. */
const MC = 64;
/** Depth of one block of the sum: a 4-column strip of B (KC x 4) stays in L1. */
const KC = 256;
/** Largest kernel memory kept from one product to the next; a larger product gets its own, dropped after. */
const KEEP_BYTES = 32 << 20;
/** Largest product the kernel takes (its addresses are 32-bit); larger ones stay in JS. */
const MAX_BYTES = 1 << 30;
const PAGE = 65536;

type Block = (a: number, b: number, c: number, K: number, N: number, i0: number, i1: number, k0: number, k1: number) => void;

interface Instance {
  memory: WebAssembly.Memory;
  block: Block;
}

let compiled: WebAssembly.Module | null | undefined;
let kept: Instance | undefined;

/** The compiled kernel, or null where WebAssembly or its SIMD instructions are unavailable. */
function kernelModule(): WebAssembly.Module | null {
  if (compiled !== undefined) return compiled;
  compiled = null;
  try {
    if (typeof WebAssembly === "object") {
      const bytes = Uint8Array.from(atob(GEMM_KERNEL_WASM), (ch) => ch.charCodeAt(0));
      compiled = new WebAssembly.Module(bytes);
    }
  } catch {
    // No SIMD (an old engine rejects the module): the JS kernel does the work.
  }
  return compiled;
}

function instantiate(module: WebAssembly.Module, bytes: number): Instance {
  const memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / PAGE) });
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  return { memory, block: instance.exports.block as Block };
}

/** An instance whose memory holds `bytes`: the kept one (grown if needed) or, for a large product, a fresh one. */
function instanceFor(module: WebAssembly.Module, bytes: number): Instance {
  if (bytes > KEEP_BYTES) return instantiate(module, bytes);
  if (!kept) kept = instantiate(module, bytes);
  const have = kept.memory.buffer.byteLength;
  if (have < bytes) kept.memory.grow(Math.ceil((bytes - have) / PAGE));
  return kept;
}

/** Whether the WebAssembly kernel can run here. */
export function wasmGemmAvailable(): boolean {
  return kernelModule() !== null;
}

const align16 = (bytes: number): number => (bytes + 15) & ~15;

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
  const a = 0, b = align16(M * K * 8), c = b + align16(K * N * 8), end = c + M * N * 8;
  if (end > MAX_BYTES) return false;
  const kernel = instanceFor(module, end);
  const heap = kernel.memory.buffer;
  new Float64Array(heap, a, M * K).set(A.subarray(aOff, aOff + M * K));
  new Float64Array(heap, b, K * N).set(B.subarray(bOff, bOff + K * N));
  const c64 = new Float64Array(heap, c, M * N);
  c64.set(C.subarray(cOff, cOff + M * N));
  for (let k0 = 0; k0 < K; k0 += KC) {
    const k1 = Math.min(K, k0 + KC);
    for (let i0 = 0; i0 < M; i0 += MC) kernel.block(a, b, c, K, N, i0, Math.min(M, i0 + MC), k0, k1);
  }
  C.set(c64, cOff);
  return true;
}
