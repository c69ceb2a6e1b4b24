// Deterministic randomness for tests: the same generator verification uses.
import { mulberry32 } from "../../src/verify/verify.js";

export const rng = mulberry32;

export function randomArray(r: () => number, n: number, scale = 1): Float64Array {
  return Float64Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

export function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}
