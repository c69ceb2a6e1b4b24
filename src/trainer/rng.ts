// The trainer's PRNG, apart from the network code so that data loading (used by `eval` too)
// does not load TensorFlow.js.

/** Deterministic PRNG (mulberry32): weight init and data order do not depend on the backend. */
export class Rng {
  private a: number;
  constructor(seed: number) {
    this.a = seed >>> 0;
  }
  next(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(this.a ^ (this.a >>> 15), this.a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(n: number, bound: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (this.next() * 2 - 1) * bound;
    return out;
  }
  state(): number {
    return this.a;
  }
}
