// Optimizers keyed by parameter name (not position), so branches can be added and removed during
// training (DyRep) and the state round-trips through checkpoints. Weight decay applies to conv/FC
// weights (rank ≥ 2), not to BN parameters, biases or branch scales.
import { tf } from "./backend.js";

export type OptimizerKind = "sgd" | "adam";

export interface OptimizerConfig {
  kind: OptimizerKind;
  lr: number;
  momentum: number;
  weightDecay: number;
}

export interface NamedParam {
  name: string;
  v: tf.Variable;
}

export class Optimizer {
  /** name → slot → tensor (kept outside tidy scopes). */
  private readonly slots = new Map<string, Record<string, tf.Tensor>>();
  step = 0;

  constructor(readonly config: OptimizerConfig) {}

  apply(params: NamedParam[], grads: Record<string, tf.Tensor>, lr: number): void {
    this.step++;
    const { kind, momentum: mu, weightDecay } = this.config;
    const b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const t = this.step;
    for (const { name, v } of params) {
      const g0 = grads[v.name];
      if (!g0) continue;
      const slots = this.slots.get(name) ?? {};
      const decay = v.rank >= 2 && weightDecay > 0;
      const next: Record<string, tf.Tensor> = tf.tidy((): Record<string, tf.Tensor> => {
        if (kind === "sgd") {
          const g = decay ? tf.add(g0, tf.mul(v, weightDecay)) : g0;
          const buf = slots.m ? tf.add(tf.mul(slots.m, mu), g) : g.clone();
          // Nesterov: θ ← θ − lr·(g + μ·buf)
          v.assign(tf.sub(v, tf.mul(tf.add(g, tf.mul(buf, mu)), lr)));
          return { m: buf };
        }
        const m = slots.m ? tf.add(tf.mul(slots.m, b1), tf.mul(g0, 1 - b1)) : tf.mul(g0, 1 - b1);
        const s = slots.v ? tf.add(tf.mul(slots.v, b2), tf.mul(tf.square(g0), 1 - b2)) : tf.mul(tf.square(g0), 1 - b2);
        const mHat = tf.div(m, 1 - b1 ** t), sHat = tf.div(s, 1 - b2 ** t);
        let update = tf.div(mHat, tf.add(tf.sqrt(sHat), eps));
        if (decay) update = tf.add(update, tf.mul(v, weightDecay)); // AdamW (decoupled)
        v.assign(tf.sub(v, tf.mul(update, lr)));
        return { m, v: s };
      });
      for (const old of Object.values(slots)) old.dispose();
      for (const kept of Object.values(next)) tf.keep(kept);
      this.slots.set(name, next);
    }
  }

  /** Drops state of parameters that no longer exist (pruned branches). */
  retain(names: Set<string>): void {
    for (const [name, slots] of this.slots)
      if (!names.has(name)) {
        for (const s of Object.values(slots)) s.dispose();
        this.slots.delete(name);
      }
  }

  /** Rescales the momentum of a parameter (DyRep folds a branch into a conv and keeps its momentum). */
  slotsOf(name: string): Record<string, tf.Tensor> | undefined {
    return this.slots.get(name);
  }

  state(): { step: number; tensors: { name: string; slot: string; shape: number[]; data: Float32Array }[] } {
    const tensors = [];
    for (const [name, slots] of this.slots)
      for (const [slot, t] of Object.entries(slots)) tensors.push({ name, slot, shape: t.shape, data: t.dataSync() as Float32Array });
    return { step: this.step, tensors };
  }

  load(step: number, tensors: { name: string; slot: string; shape: number[]; data: Float32Array }[]): void {
    this.dispose();
    this.step = step;
    for (const t of tensors) {
      const slots = this.slots.get(t.name) ?? {};
      slots[t.slot] = tf.keep(tf.tensor(t.data, t.shape));
      this.slots.set(t.name, slots);
    }
  }

  dispose(): void {
    for (const slots of this.slots.values()) for (const s of Object.values(slots)) s.dispose();
    this.slots.clear();
  }
}

/** Cosine decay to 0 after a linear warm-up (over the whole run, so a resumed run continues the curve). */
export function learningRate(base: number, step: number, total: number, warmup: number): number {
  if (step < warmup) return (base * (step + 1)) / warmup;
  const p = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  return base * 0.5 * (1 + Math.cos(Math.PI * p));
}
