// Where kernel-sized float64 arrays come from. By default: fresh arrays. Inside `withScratch`, a
// reusable arena: a fresh multi-megabyte Float64Array costs a page fault per 4 KiB on first touch
// (5x the arithmetic on this kind of machine), and a region's working kernels are garbage as soon
// as the region is emitted. The arena is reset by its owner between regions; nothing allocated
// from it may be kept past a reset (emitted weights are copied into the model's dtype first).

class Arena {
  private chunks: Float64Array[] = [];
  private used: number[] = [];

  alloc(n: number): Float64Array {
    for (let i = 0; i < this.chunks.length; i++) {
      const chunk = this.chunks[i]!;
      if (chunk.length - this.used[i]! >= n) {
        const view = chunk.subarray(this.used[i]!, this.used[i]! + n);
        this.used[i]! += n;
        view.fill(0);
        return view;
      }
    }
    const chunk = new Float64Array(Math.max(n, 1 << 21));
    this.chunks.push(chunk);
    this.used.push(n);
    return chunk.subarray(0, n);
  }

  reset(): void {
    this.used.fill(0);
  }

  get bytes(): number {
    return this.chunks.reduce((s, c) => s + c.byteLength, 0);
  }
}

let active: Arena | undefined;

/** A zeroed float64 array for kernel values (from the active arena, if any). */
export function kernelArray(n: number): Float64Array {
  return active && n >= 4096 ? active.alloc(n) : new Float64Array(n);
}

/** Run `fn` with kernel arrays drawn from an arena; `reset` (given to fn) recycles them all. */
export function withScratch<T>(fn: (reset: () => void) => T): T {
  const previous = active;
  const arena = new Arena();
  active = arena;
  try {
    return fn(() => arena.reset());
  } finally {
    active = previous;
  }
}
