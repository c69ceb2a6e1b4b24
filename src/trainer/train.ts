// The training loop: shuffled mini-batches (the order depends only on seed and epoch), softmax
// cross-entropy, SGD/Adam with cosine decay, BN running statistics, an atomic checkpoint after every
// epoch (and every N steps when asked), resumption from it at the exact step, and a stop request
// (Ctrl-C) honoured between steps.
import { UsageError } from "../ir/errors.js";
import { tf } from "./backend.js";
import { loadCheckpoint, saveCheckpoint, type CheckpointHeader, type TensorRecord } from "./checkpoint.js";
import { batchOf, epochOrder, type Dataset, type DataSplits } from "./data.js";
import type { DynamicConfig, DynamicState } from "./dynamic.js";
import { Net, toNhwc } from "./model.js";
import { learningRate, Optimizer, type NamedParam, type OptimizerConfig } from "./optim.js";
import type { NetSpec } from "./spec.js";

export interface TrainConfig {
  epochs: number;
  batch: number;
  optimizer: OptimizerConfig;
  seed: number;
  online: boolean;
  /** Checkpoint file written after every epoch (atomically); none when undefined. */
  checkpoint?: string;
  /** Also write the checkpoint every this many steps within an epoch (0/undefined: per epoch only). */
  checkpointEvery?: number;
  /** Evaluate on the test split after every epoch. */
  evalTest: boolean;
  /** Linear warm-up steps (default: 3% of the run, at most 300). */
  warmupSteps?: number;
  dynamic?: DynamicConfig;
  /** Limit of steps per epoch (benchmarks, tests). */
  stepsPerEpoch?: number;
  /** Data-parallel worker threads (1: train in this thread). */
  workers?: number;
}

export interface StepProgress {
  epoch: number;
  epochs: number;
  step: number;
  steps: number;
  loss: number;
  acc: number;
  imagesPerSec: number;
  elapsed: number;
}

export interface EpochRecord {
  epoch: number;
  loss: number;
  trainAcc: number;
  testAcc?: number;
  seconds: number;
  imagesPerSec: number;
  checkpoint?: string;
  dynamic?: string[];
  [key: string]: unknown;
}

export interface TrainHooks {
  onStep?: (p: StepProgress) => void;
  onEpoch?: (r: EpochRecord) => void;
  /** Polled between steps; true stops the run (the last checkpoint stays as it is). */
  shouldStop?: () => boolean;
}

export interface TrainResult {
  history: EpochRecord[];
  /** Epochs completed in total (including those before a resume). */
  epochsDone: number;
  stopped: boolean;
  resumedFrom?: number;
  trainSeconds: number;
}

/** Where a run stopped inside an epoch: steps done in epoch `epochsDone + 1`, with their running sums. */
export interface EpochPosition {
  step: number;
  lossSum: number;
  correct: number;
  seen: number;
}

export class Trainer {
  readonly net: Net;
  readonly opt: Optimizer;
  history: EpochRecord[] = [];
  epochsDone = 0;
  resumedFrom?: number;
  /** Steps already done in the next epoch (a mid-epoch checkpoint); undefined at an epoch boundary. */
  position?: EpochPosition;
  dynamicState?: DynamicState;
  private pool?: import("./parallel.js").WorkerPool;
  private readonly options: Record<string, unknown>;

  constructor(spec: NetSpec, readonly data: DataSplits, readonly config: TrainConfig) {
    this.net = new Net(spec, config.online, config.seed, !!config.dynamic);
    this.opt = new Optimizer(config.optimizer);
    this.options = { batch: config.batch, optimizer: config.optimizer, seed: config.seed, epochs: config.epochs, dynamic: config.dynamic, data: data.name, trainImages: data.train.n };
  }

  params(): NamedParam[] {
    return this.net.trainables().map((v) => ({ name: this.net.nameOf(v), v }));
  }

  stepsPerEpoch(): number {
    const full = Math.floor(this.data.train.n / this.config.batch);
    const steps = Math.max(1, full);
    return this.config.stepsPerEpoch ? Math.min(steps, this.config.stepsPerEpoch) : steps;
  }

  totalSteps(): number {
    return this.stepsPerEpoch() * this.config.epochs;
  }

  /** The learning rate of the next step. */
  lr(): number {
    return this.lrAt(this.opt.step);
  }

  /** The learning rate at optimizer step `step` (0-based) of a run of `epochs` epochs. */
  lrAt(step: number, epochs = this.config.epochs): number {
    const total = this.stepsPerEpoch() * epochs;
    const warmup = this.config.warmupSteps ?? Math.min(300, Math.ceil(total * 0.03));
    return learningRate(this.config.optimizer.lr, step, total, warmup);
  }

  /**
   * One optimization step on a batch (NCHW float32 images, int labels). Returns the loss and the
   * number of correct predictions. With `grads`, also hands the gradients to the caller before they
   * are freed (DyRep importance).
   */
  async step(x: Float32Array, y: Int32Array, onGrads?: (grads: Record<string, tf.Tensor>) => void): Promise<{ loss: number; correct: number }> {
    if (this.pool) {
      const { grads, loss, correct } = await this.pool.step(this.net, x, y);
      try {
        onGrads?.(grads);
        this.opt.apply(this.params(), grads, this.lr());
      } finally {
        for (const g of Object.values(grads)) g.dispose();
      }
      if (!Number.isFinite(loss)) throw new UsageError(`training diverged (loss ${loss}); lower --lr`);
      return { loss, correct };
    }
    return this.localStep(x, y, onGrads);
  }

  private localStep(x: Float32Array, y: Int32Array, onGrads?: (grads: Record<string, tf.Tensor>) => void): { loss: number; correct: number } {
    const net = this.net;
    const [c, h, w] = net.spec.input;
    const n = y.length;
    net.beginStep();
    let pred: tf.Tensor | undefined;
    const vars = net.trainables();
    const { value, grads } = tf.variableGrads(() => {
      const xt = toNhwc(x, n, c, h, w);
      const logits = net.forward(xt, { training: true });
      pred = tf.keep(tf.argMax(logits, 1));
      const labels = tf.oneHot(tf.tensor1d(y, "int32"), net.spec.classes);
      return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
    }, vars);
    onGrads?.(grads);
    this.opt.apply(this.params(), grads, this.lr());
    net.endStep();
    const loss = value.dataSync()[0]!;
    const p = pred!.dataSync();
    let correct = 0;
    for (let i = 0; i < n; i++) if (p[i] === y[i]) correct++;
    value.dispose();
    pred!.dispose();
    for (const g of Object.values(grads)) g.dispose();
    if (!Number.isFinite(loss)) throw new UsageError(`training diverged (loss ${loss}); lower --lr`);
    return { loss, correct };
  }

  /** Accuracy of the tfjs model in inference mode (running statistics). */
  evaluate(d: Dataset, limit = d.n): { correct: number; n: number; accuracy: number; predictions: Int32Array } {
    const n = Math.min(limit, d.n);
    const idx = Uint32Array.from({ length: n }, (_, i) => i);
    const { x, y } = batchOf(d, idx);
    const logits = this.net.predict(x, n);
    const predictions = argmaxRows(logits, n, this.net.spec.classes);
    let correct = 0;
    for (let i = 0; i < n; i++) if (predictions[i] === y[i]) correct++;
    return { correct, n, accuracy: correct / n, predictions };
  }

  /** Starts the data-parallel workers (when configured); run() calls it. */
  async prepare(): Promise<void> {
    const n = this.config.workers ?? 1;
    if (n > 1 && !this.pool) {
      const { WorkerPool } = await import("./parallel.js");
      const backend = tf.getBackend() === "tensorflow" ? "tfjs-node" : (tf.getBackend() as "wasm" | "cpu");
      this.pool = await WorkerPool.create(n, this.net, backend);
    }
  }

  async run(hooks: TrainHooks = {}): Promise<TrainResult> {
    const cfg = this.config;
    const steps = this.stepsPerEpoch();
    const t0 = performance.now();
    await this.prepare();
    let stopped = false;
    const { DynamicController } = cfg.dynamic ? await import("./dynamic.js") : { DynamicController: undefined };
    const dyn = cfg.dynamic && DynamicController ? new DynamicController(this, cfg.dynamic, this.dynamicState) : undefined;
    for (let epoch = this.epochsDone + 1; epoch <= cfg.epochs && !stopped; epoch++) {
      const order = epochOrder(this.data.train.n, cfg.seed, epoch);
      const te = performance.now();
      // A mid-epoch checkpoint resumes at its step, with the epoch's running sums.
      const from = this.position;
      this.position = undefined;
      let lossSum = from?.lossSum ?? 0, correct = from?.correct ?? 0, seen = from?.seen ?? 0;
      for (let s = from?.step ?? 0; s < steps; s++) {
        const idx = order.subarray(s * cfg.batch, (s + 1) * cfg.batch);
        const { x, y } = batchOf(this.data.train, idx);
        const r = await this.step(x, y, dyn?.wantsGrads(epoch, s, steps) ? (g) => dyn.accumulate(g) : undefined);
        lossSum += r.loss * y.length;
        correct += r.correct;
        seen += y.length;
        const elapsed = (performance.now() - te) / 1000;
        hooks.onStep?.({ epoch, epochs: cfg.epochs, step: s + 1, steps, loss: lossSum / seen, acc: correct / seen, imagesPerSec: seen / elapsed, elapsed });
        // Every N steps (not the last, which the epoch's checkpoint covers; not while DyRep is
        // accumulating scores for a decision, which a checkpoint does not hold).
        if (cfg.checkpoint && cfg.checkpointEvery && (s + 1) % cfg.checkpointEvery === 0 && s + 1 < steps && !dyn?.wantsGrads(epoch, s + 1, steps)) {
          this.position = { step: s + 1, lossSum, correct, seen };
          this.save(cfg.checkpoint);
          this.position = undefined;
          this.lastCheckpoint = { epoch: epoch - 1, step: s + 1 };
        }
        // Let signal handlers (Ctrl-C) run: the loop itself never yields otherwise.
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (hooks.shouldStop?.()) {
          stopped = true;
          break;
        }
      }
      if (stopped) break;
      const seconds = (performance.now() - te) / 1000;
      const record: EpochRecord = { epoch, loss: lossSum / seen, trainAcc: correct / seen, seconds, imagesPerSec: seen / seconds };
      if (dyn) {
        const events = dyn.endEpoch(epoch);
        if (events.length) record.dynamic = events;
        this.dynamicState = dyn.state();
      }
      if (cfg.evalTest) record.testAcc = this.evaluate(this.data.test).accuracy;
      this.epochsDone = epoch;
      if (cfg.checkpoint) record.checkpoint = cfg.checkpoint;
      this.history.push(record);
      if (cfg.checkpoint) {
        this.save(cfg.checkpoint);
        this.lastCheckpoint = { epoch, step: 0 };
      }
      hooks.onEpoch?.(record);
      // A stop request during the last epoch's evaluation still completes the run.
      if (hooks.shouldStop?.() && epoch < cfg.epochs) stopped = true;
    }
    return { history: this.history, epochsDone: this.epochsDone, stopped, resumedFrom: this.resumedFrom, trainSeconds: (performance.now() - t0) / 1000 };
  }

  /** The last checkpoint written by this run: epochs done, and steps into the next one. */
  lastCheckpoint?: { epoch: number; step: number };

  save(file: string): void {
    const tensors: TensorRecord[] = [];
    for (const [name, v] of this.net.vars) tensors.push({ name, slot: "param", shape: v.shape, data: v.dataSync() as Float32Array });
    const st = this.opt.state();
    for (const t of st.tensors) tensors.push(t);
    const header: CheckpointHeader = {
      version: 1,
      spec: this.net.spec,
      online: this.net.online,
      epoch: this.epochsDone,
      optimizerStep: st.step,
      structure: this.net.structure(),
      options: this.options,
      history: this.history,
      dynamic: this.dynamicState,
      position: this.position,
    };
    saveCheckpoint(file, header, tensors);
  }

  /** Restores parameters, optimizer state, history and DyRep state from a checkpoint. */
  restore(file: string): void {
    const { header, tensors } = loadCheckpoint(file);
    if (header.online !== this.net.online) throw new UsageError(`${file}: checkpoint is ${header.online ? "" : "not "}an --online run; resume with the same flags`);
    if (JSON.stringify(header.spec.layers) !== JSON.stringify(this.net.spec.layers) || header.spec.classes !== this.net.spec.classes)
      throw new UsageError(`${file}: checkpoint is for a different network (${header.spec.name}); resume with the same --arch / --block-spec`);
    this.net.restructure(header.structure);
    const seen = new Set<string>();
    for (const t of tensors) {
      if (t.slot !== "param") continue;
      const v = this.net.vars.get(t.name);
      if (!v) throw new UsageError(`${file}: checkpoint has parameter ${t.name} the network lacks`);
      if (v.size !== t.data.length) throw new UsageError(`${file}: parameter ${t.name} has ${t.data.length} values, expected ${v.size}`);
      tf.tidy(() => v.assign(tf.tensor(t.data, v.shape)));
      seen.add(t.name);
    }
    for (const name of this.net.vars.keys()) if (!seen.has(name)) throw new UsageError(`${file}: checkpoint lacks parameter ${name}`);
    this.opt.load(header.optimizerStep, tensors.filter((t) => t.slot !== "param"));
    this.history = header.history as EpochRecord[];
    this.epochsDone = header.epoch;
    this.resumedFrom = header.epoch;
    this.position = header.position as EpochPosition | undefined;
    this.dynamicState = header.dynamic as DynamicState | undefined;
  }

  async dispose(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    this.opt.dispose();
    this.net.dispose();
    await pool?.close();
  }
}

export function argmaxRows(logits: Float32Array, n: number, classes: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < classes; j++) if (logits[i * classes + j]! > logits[i * classes + best]!) best = j;
    out[i] = best;
  }
  return out;
}
