// The WebAssembly SIMD kernel (src/algebra/gemm-kernel.wat) gives the JS kernel's bits: every
// element of C, on random shapes with ragged edges (rows and columns not multiples of 4, depths
// across the K block, rows across the M block), with signed zeros, subnormals and infinities among
// the operands. And the committed binary is the assembly of the committed .wat.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { gemmAccumulate, gemmAccumulateJs } from "../src/algebra/gemm.js";
import { gemmAccumulateWasm, wasmGemmAvailable } from "../src/algebra/gemm-wasm.js";
import { rng } from "./helpers/random.js";

const root = path.resolve(import.meta.dirname, "..");

/** A value as the kernels may meet it: mostly ordinary, sometimes ±0, subnormal, huge or infinite. */
function draw(r: () => number, specials: boolean): number {
  const u = r();
  if (specials && u < 0.04) return [0, -0, 5e-324, -3e-310, 1e300, -1e300, Infinity, -Infinity][Math.floor(r() * 8)]!;
  return (r() * 2 - 1) * 2 ** Math.floor(r() * 8 - 4);
}

function sameBits(x: Float64Array, y: Float64Array): number {
  let differ = 0;
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) differ++;
  return differ;
}

describe("gemm on the WebAssembly SIMD kernel", () => {
  it("runs here (Node 20 has WebAssembly SIMD), so the cases below test the kernel", () => {
    expect(wasmGemmAvailable()).toBe(true);
  });

  it("gives the JS kernel's bits on random shapes, offsets and ragged edges", () => {
    const r = rng(15);
    const shapes: [number, number, number][] = [[1, 1, 1], [4, 4, 4], [5, 3, 7], [3, 1, 2], [1, 300, 6], [130, 257, 9], [67, 520, 5], [9, 64, 130]];
    for (let t = 0; t < 60; t++) shapes.push([1 + Math.floor(r() * 40), 1 + Math.floor(r() * 40), 1 + Math.floor(r() * 40)]);
    let cases = 0;
    for (const [M, K, N] of shapes)
      for (const specials of [false, true]) {
        const aOff = Math.floor(r() * 3), bOff = Math.floor(r() * 3), cOff = Math.floor(r() * 3);
        const A = Float64Array.from({ length: aOff + M * K }, () => draw(r, specials));
        const B = Float64Array.from({ length: bOff + K * N }, () => draw(r, specials));
        const C0 = Float64Array.from({ length: cOff + M * N + 2 }, () => draw(r, false));
        const C1 = C0.slice();
        gemmAccumulateJs(A, aOff, B, bOff, C0, cOff, M, K, N);
        expect(gemmAccumulateWasm(A, aOff, B, bOff, C1, cOff, M, K, N)).toBe(true);
        expect(sameBits(C0, C1), `${M}x${K}x${N} specials=${specials}`).toBe(0);
        cases++;
      }
    expect(cases).toBe(136);
  });

  it("the sums are the textbook order: ((c + a0·b0) + a1·b1) + … (a reordered sum would differ here)", () => {
    // 1 + 2^-53 + 2^-53 is 1 in order but 1 + 2^-52 if the two small terms were added first.
    const A = Float64Array.of(1, 1, 1, 1, 1, 1), B = Float64Array.from({ length: 3 * 4 }, (_, i) => (i < 4 ? 1 : 2 ** -53));
    const C = new Float64Array(2 * 4);
    gemmAccumulate(A, 0, B, 0, C, 0, 2, 3, 4);
    expect([...C]).toEqual(new Array(8).fill(1));
  });

  it("gemmAccumulate (which picks the kernel) matches the JS kernel on a product the size of a DBB composition block", () => {
    const r = rng(7);
    const [M, K, N] = [261, 96, 64];
    const A = Float64Array.from({ length: M * K }, () => r() - 0.5), B = Float64Array.from({ length: K * N }, () => r() - 0.5);
    const C0 = new Float64Array(M * N), C1 = new Float64Array(M * N);
    gemmAccumulateJs(A, 0, B, 0, C0, 0, M, K, N);
    gemmAccumulate(A, 0, B, 0, C1, 0, M, K, N);
    expect(sameBits(C0, C1)).toBe(0);
  });

  it("the committed binary (gemm-kernel-wasm.ts) is the assembly of gemm-kernel.wat (npm run build:wasm)", async () => {
    const { generate } = await import(path.join(root, "scripts/build-wasm.mjs"));
    expect(await generate()).toBe(fs.readFileSync(path.join(root, "src/algebra/gemm-kernel-wasm.ts"), "utf8"));
  });
});
