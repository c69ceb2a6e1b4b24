// Data parallelism over worker threads (the wasm backend runs one thread per Node isolate, so this
// is how training uses more than one core). Each step the batch is split into equal slices; every
// worker computes the gradient of its slice's mean loss with the current parameters; the main thread
// averages the gradients (weighted by slice size), combines the BN batch statistics into the full
// batch's, and applies the optimizer and the running-statistics update. BN normalizes each slice
// with its own statistics during the forward pass, as PyTorch DistributedDataParallel without
// SyncBatchNorm does; everything else is the single-thread computation.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { tf, type BackendChoice } from "./backend.js";
import type { Net } from "./model.js";
import { BN_MOMENTUM } from "./model.js";
import type { StepReply, StepRequest } from "./worker.js";

function workerScript(): string {
  const here = fileURLToPath(import.meta.url);
  const js = here.replace(/parallel\.(ts|js)$/, "worker.js");
  if (here.endsWith(".js") || fs.existsSync(js)) return js;
  // Running from TypeScript sources (tests): the compiled worker next to the compiled sources.
  const root = path.resolve(path.dirname(here), "..", "..");
  const dist = path.join(root, "dist", "src", "trainer", "worker.js");
  if (!fs.existsSync(dist)) throw new Error(`data-parallel workers need the compiled worker (${dist}): run 'npm run build'`);
  return dist;
}

interface Slot {
  worker: Worker;
  pending?: { resolve: (r: StepReply) => void; reject: (e: Error) => void };
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private namesSent = "";
  /** Live tensors per worker after the last step (tests check they stay constant). */
  workerTensors: number[] = [];
  private structureSent = "";

  private constructor() {}

  static async create(n: number, net: Net, backend: BackendChoice): Promise<WorkerPool> {
    const pool = new WorkerPool();
    const script = workerScript();
    await Promise.all(
      Array.from({ length: n }, () =>
        new Promise<void>((resolve, reject) => {
          const worker = new Worker(script, { workerData: { spec: net.spec, online: net.online, backend } });
          const slot: Slot = { worker };
          pool.slots.push(slot);
          worker.once("error", reject);
          worker.on("message", (m: StepReply | { type: "ready" } | { type: "error"; message: string; stack?: string }) => {
            if (m.type === "ready") return resolve();
            const p = slot.pending;
            slot.pending = undefined;
            if (!p) return;
            if (m.type === "error") p.reject(new Error(`training worker: ${m.message}`));
            else p.resolve(m);
          });
          worker.on("error", (e) => {
            slot.pending?.reject(e);
            slot.pending = undefined;
          });
        }),
      ),
    );
    return pool;
  }

  get size(): number {
    return this.slots.length;
  }

  /**
   * One data-parallel step: returns the averaged gradients as tensors keyed by variable name (the
   * caller applies and disposes them), the batch loss and correct count. BN running statistics of
   * `net` are updated here from the combined batch statistics.
   */
  async step(net: Net, x: Float32Array, y: Int32Array): Promise<{ grads: Record<string, tf.Tensor>; loss: number; correct: number }> {
    const names = [...net.vars.keys()];
    const namesKey = names.join("\n");
    const structure = net.structure();
    const structureKey = JSON.stringify(structure);
    const sendNames = namesKey !== this.namesSent;
    const sendStructure = structureKey !== this.structureSent;
    const vars = names.map((nm) => net.vars.get(nm)!);
    const total = vars.reduce((s, v) => s + v.size, 0);
    const n = y.length;
    const per = x.length / n;
    const k = Math.min(this.slots.length, n);
    const replies = await Promise.all(
      this.slots.slice(0, k).map((slot, i) => {
        const a = Math.floor((i * n) / k), b = Math.floor(((i + 1) * n) / k);
        // Each worker gets its own parameter copy (transferred, not cloned twice).
        const params = new Float32Array(total);
        let off = 0;
        for (const v of vars) {
          params.set(v.dataSync() as Float32Array, off);
          off += v.size;
        }
        const req: StepRequest = {
          type: "step", params,
          x: x.slice(a * per, b * per), y: y.slice(a, b),
          names: sendNames ? names : undefined,
          structure: sendStructure ? structure : undefined,
        };
        return new Promise<StepReply>((resolve, reject) => {
          slot.pending = { resolve, reject };
          slot.worker.postMessage(req, [req.params.buffer as ArrayBuffer, req.x.buffer as ArrayBuffer, req.y.buffer as ArrayBuffer]);
        }).then((r) => ({ r, m: b - a }));
      }),
    );
    this.workerTensors = replies.map((x) => x.r.tensors);
    this.namesSent = namesKey;
    this.structureSent = structureKey;
    // Gradient of the full batch's mean loss = Σ (m_i / n) · gradient of slice i's mean loss.
    const trainable = vars.filter((v) => v.trainable);
    const sum = new Float32Array(replies[0]!.r.grads.length);
    let loss = 0, correct = 0;
    for (const { r, m } of replies) {
      const w = m / n;
      for (let i = 0; i < sum.length; i++) sum[i]! += w * r.grads[i]!;
      loss += w * r.loss;
      correct += r.correct;
    }
    const grads: Record<string, tf.Tensor> = {};
    let off = 0;
    for (const v of trainable) {
      grads[v.name] = tf.tensor(sum.subarray(off, off + v.size), v.shape);
      off += v.size;
    }
    this.applyStats(net, replies.map((x) => x.r));
    return { grads, loss, correct };
  }

  /** Full-batch BN statistics from the slices' (exact for mean and biased variance), then the running update. */
  private applyStats(net: Net, replies: StepReply[]): void {
    const byName = new Map<string, StepReply["stats"]>();
    for (const r of replies) for (const s of r.stats) byName.set(s.name, [...(byName.get(s.name) ?? []), s]);
    const bns = new Map(net.allBns().map((b) => [b.name, b]));
    tf.tidy(() => {
      for (const [name, parts] of byName) {
        const bn = bns.get(name);
        if (!bn) continue;
        const c = bn.channels;
        const count = parts.reduce((s, p) => s + p.count, 0);
        const mean = new Float32Array(c), sq = new Float32Array(c);
        for (const p of parts)
          for (let j = 0; j < c; j++) {
            mean[j]! += (p.count / count) * p.mean[j]!;
            sq[j]! += (p.count / count) * (p.variance[j]! + p.mean[j]! * p.mean[j]!);
          }
        const variance = sq.map((s, j) => Math.max(0, s - mean[j]! * mean[j]!));
        const m = BN_MOMENTUM;
        bn.mean.assign(tf.add(tf.mul(bn.mean, 1 - m), tf.mul(tf.tensor1d(mean), m)));
        bn.variance.assign(tf.add(tf.mul(bn.variance, 1 - m), tf.mul(tf.tensor1d(variance), (m * count) / Math.max(1, count - 1))));
      }
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }
}
