// The one matrix product the kernel arithmetic and the evaluator share: C += A·B in float64, with
// every element's sum taken in the textbook order — c, then + a[i,0]·b[0,j], + a[i,1]·b[1,j], … —
// so a result is bit-identical to the triple loop `for i, for k, for j: C[i,j] += A[i,k]·B[k,j]`.
// Speed comes only from reuse, never from reassociation: 4x4 blocks of C live in registers while
// k runs (16 products per 8 loads instead of 1 per 2), and K and M are cut into blocks that keep the
// operands in cache; a block's partial sums go back to C and continue from there in the same order.
// Where WebAssembly SIMD runs, products that are not tiny go to gemm-wasm.ts: the same blocking and
// the same per-element order, two columns per instruction, the same bits (docs/rules.md §7.6).
import { gemmAccumulateWasm, wasmGemmAvailable, wasmWorkspace, type GemmWorkspace } from "./gemm-wasm.js";

/** Rows of A (and C) one cache block holds. */
const MC = 64;
/** Depth of one block of the sum: a 4-column strip of B (KC x 4) stays in L1. */
const KC = 256;

/** Below this many multiply-adds the JS kernel runs (copying into the WebAssembly kernel's memory costs more). */
const WASM_WORK = 1 << 12;

/** Which kernel gemmAccumulate uses: REPARAM_GEMM=js forces the JS kernel (for A/B timing). */
const forceJs = typeof process !== "undefined" && process.env?.REPARAM_GEMM === "js";

/** Whether products run on the WebAssembly kernel (available, and not forced off). */
export function wasmKernelEnabled(): boolean {
  return !forceJs && wasmGemmAvailable();
}

/**
 * C[cOff + i·N + j] += Σ_k A[aOff + i·K + k] · B[bOff + k·N + j] (row-major, contiguous), each sum
 * accumulated in order k = 0…K−1 onto C's current value.
 */
export function gemmAccumulate(
  A: Float64Array, aOff: number, B: Float64Array, bOff: number, C: Float64Array, cOff: number, M: number, K: number, N: number,
): void {
  if (!forceJs && M * K * N >= WASM_WORK && N > 1 && gemmAccumulateWasm(A, aOff, B, bOff, C, cOff, M, K, N)) return;
  gemmAccumulateJs(A, aOff, B, bOff, C, cOff, M, K, N);
}

/** A workspace on this thread: the WebAssembly kernel's memory where it runs, else plain arrays and the JS kernel. */
export function singleThreadWorkspace(M: number, K: number, N: number): GemmWorkspace {
  const inKernel = wasmKernelEnabled() ? wasmWorkspace(M, K, N) : undefined;
  if (inKernel) return inKernel;
  const A = new Float64Array(M * K), B = new Float64Array(K * N), C = new Float64Array(M * N);
  return { A, C, setB: (src, offset) => B.set(src.subarray(offset, offset + K * N)), run: () => gemmAccumulate(A, 0, B, 0, C, 0, M, K, N) };
}

/** gemmAccumulate on the JS kernel alone (the reference the WebAssembly kernel is tested against). */
export function gemmAccumulateJs(
  A: Float64Array, aOff: number, B: Float64Array, bOff: number, C: Float64Array, cOff: number, M: number, K: number, N: number,
): void {
  M |= 0; K |= 0; N |= 0;
  for (let k0 = 0; k0 < K; k0 += KC) {
    const k1 = Math.min(K, k0 + KC) | 0;
    for (let i0 = 0; i0 < M; i0 += MC) {
      const i1 = Math.min(M, i0 + MC) | 0;
      block(A, aOff, B, bOff, C, cOff, K, N, i0, i1, k0, k1);
    }
  }
}

function block(A: Float64Array, aOff: number, B: Float64Array, bOff: number, C: Float64Array, cOff: number, K: number, N: number, i0: number, i1: number, k0: number, k1: number): void {
  const i4 = (i0 + (((i1 - i0) >> 2) << 2)) | 0;
  const n4 = ((N >> 2) << 2) | 0;
  for (let j = 0; j < n4; j += 4) {
    for (let i = i0; i < i4; i += 4) {
      const a0 = (aOff + i * K) | 0, a1 = (a0 + K) | 0, a2 = (a1 + K) | 0, a3 = (a2 + K) | 0;
      const r0 = (cOff + i * N + j) | 0, r1 = (r0 + N) | 0, r2 = (r1 + N) | 0, r3 = (r2 + N) | 0;
      let c00 = C[r0]!, c01 = C[r0 + 1]!, c02 = C[r0 + 2]!, c03 = C[r0 + 3]!;
      let c10 = C[r1]!, c11 = C[r1 + 1]!, c12 = C[r1 + 2]!, c13 = C[r1 + 3]!;
      let c20 = C[r2]!, c21 = C[r2 + 1]!, c22 = C[r2 + 2]!, c23 = C[r2 + 3]!;
      let c30 = C[r3]!, c31 = C[r3 + 1]!, c32 = C[r3 + 2]!, c33 = C[r3 + 3]!;
      let b = (bOff + k0 * N + j) | 0;
      for (let k = k0; k < k1; k++) {
        const b0 = B[b]!, b1 = B[b + 1]!, b2 = B[b + 2]!, b3 = B[b + 3]!;
        const x0 = A[a0 + k]!, x1 = A[a1 + k]!, x2 = A[a2 + k]!, x3 = A[a3 + k]!;
        c00 += x0 * b0; c01 += x0 * b1; c02 += x0 * b2; c03 += x0 * b3;
        c10 += x1 * b0; c11 += x1 * b1; c12 += x1 * b2; c13 += x1 * b3;
        c20 += x2 * b0; c21 += x2 * b1; c22 += x2 * b2; c23 += x2 * b3;
        c30 += x3 * b0; c31 += x3 * b1; c32 += x3 * b2; c33 += x3 * b3;
        b = (b + N) | 0;
      }
      C[r0] = c00; C[r0 + 1] = c01; C[r0 + 2] = c02; C[r0 + 3] = c03;
      C[r1] = c10; C[r1 + 1] = c11; C[r1 + 2] = c12; C[r1 + 3] = c13;
      C[r2] = c20; C[r2 + 1] = c21; C[r2 + 2] = c22; C[r2 + 3] = c23;
      C[r3] = c30; C[r3 + 1] = c31; C[r3 + 2] = c32; C[r3 + 3] = c33;
    }
    // Rows left over (fewer than 4): one row at a time, the same 4 columns.
    for (let i = i4; i < i1; i++) {
      const a = (aOff + i * K) | 0, r = (cOff + i * N + j) | 0;
      let c0 = C[r]!, c1 = C[r + 1]!, c2 = C[r + 2]!, c3 = C[r + 3]!;
      let b = (bOff + k0 * N + j) | 0;
      for (let k = k0; k < k1; k++) {
        const x = A[a + k]!;
        c0 += x * B[b]!; c1 += x * B[b + 1]!; c2 += x * B[b + 2]!; c3 += x * B[b + 3]!;
        b = (b + N) | 0;
      }
      C[r] = c0; C[r + 1] = c1; C[r + 2] = c2; C[r + 3] = c3;
    }
  }
  // Columns left over (fewer than 4): one element at a time.
  for (let j = n4; j < N; j++)
    for (let i = i0; i < i1; i++) {
      const a = (aOff + i * K) | 0, r = (cOff + i * N + j) | 0;
      let c = C[r]!;
      let b = (bOff + k0 * N + j) | 0;
      for (let k = k0; k < k1; k++) {
        c += A[a + k]! * B[b]!;
        b = (b + N) | 0;
      }
      C[r] = c;
    }
}
