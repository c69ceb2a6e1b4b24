// `reparam-onnx train` and `reparam-onnx eval`: the bundled TensorFlow.js trainer and the
// onnxruntime accuracy check. Loaded on demand by main.ts (tfjs is not imported by optimize/verify).
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as ort from "onnxruntime-node";
import { UsageError } from "../ir/errors.js";
import { loadModel, modelFromBytes, modelToBytes, saveModel } from "../ir/io.js";
import { dimsOf } from "../ir/shapes.js";
import { createSession, type Provider } from "../verify/verify.js";
import type { Flags } from "./program.js";

/** The flags train and eval read (the whole set: program.ts declares which command takes which). */
export type TrainFlags = Flags;

const int = (flag: string, v: string | undefined, fallback: number, min = 1): number => {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${flag} '${v}': expected an integer ≥ ${min}`);
  return n;
};

const positive = (flag: string, v: string | undefined, fallback: number, allowZero = false): number => {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) throw new UsageError(`--${flag} '${v}': expected a ${allowZero ? "non-negative" : "positive"} number`);
  return n;
};

function checkWritable(file: string, flag: string): void {
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UsageError(`${flag} ${file}: cannot write (folder ${dir} does not exist)`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new UsageError(`${flag} ${file}: cannot write (folder ${dir} is not writable)`);
  }
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new UsageError(`${flag} ${file}: is a directory`);
}

const fmtInt = (n: number) => n.toLocaleString("en-US");
const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
function duration(s: number): string {
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.round(s - 60 * m)).padStart(2, "0")}s`;
}

function opHistogram(nodes: { opType: string }[]): string {
  const h = new Map<string, number>();
  for (const n of nodes) h.set(n.opType, (h.get(n.opType) ?? 0) + 1);
  return [...h].map(([k, v]) => `${k} ${v}`).join(", ");
}

/** A one-line progress bar on stderr, redrawn at most every 100 ms (only on a TTY). */
class ProgressBar {
  private last = 0;
  private shown = false;
  constructor(private readonly enabled: boolean) {}
  update(p: { epoch: number; epochs: number; step: number; steps: number; loss: number; acc: number; imagesPerSec: number; elapsed: number }): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.last < 100 && p.step !== p.steps) return;
    this.last = now;
    const width = 24;
    const filled = Math.round((width * p.step) / p.steps);
    const eta = p.step > 0 ? (p.elapsed * (p.steps - p.step)) / p.step : 0;
    const line = `epoch ${p.epoch}/${p.epochs} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${p.step}/${p.steps} loss ${p.loss.toFixed(4)} acc ${pct(p.acc)} ${Math.round(p.imagesPerSec)} img/s eta ${duration(eta)}`;
    process.stderr.write(`\r\x1b[K${line}`);
    this.shown = true;
  }
  clear(): void {
    if (this.shown) process.stderr.write("\r\x1b[K");
    this.shown = false;
  }
}

/** The TensorFlow.js packages `train` needs: optional peer dependencies, not installed with reparam-onnx. */
export const TRAINER_PACKAGES = ["@tensorflow/tfjs@^4.22.0", "@tensorflow/tfjs-backend-wasm@^4.22.0"];

/** The trainer's entry module; when TensorFlow.js is not installed, one line saying how to add it. */
async function loadTrainer(): Promise<typeof import("../trainer/backend.js")> {
  try {
    return await import("../trainer/backend.js");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ERR_MODULE_NOT_FOUND" && /@tensorflow\/tfjs/.test(err.message))
      throw new UsageError(`train needs TensorFlow.js, which is not installed (reparam-onnx installs the compiler alone); add the trainer with: npm install ${TRAINER_PACKAGES.join(" ")}`);
    throw e;
  }
}

export async function cmdTrain(args: string[], f: TrainFlags): Promise<number> {
  if (args.length) throw new UsageError(`train takes no file arguments (got ${args.join(" ")}); use --out FILE.onnx`);
  // Every flag is checked before any work.
  const out = f.out ?? "model.onnx";
  if (!out.endsWith(".onnx")) throw new UsageError(`--out ${out}: expected a .onnx file name`);
  checkWritable(out, "--out");
  const checkpoint = f.checkpoint ?? `${out}.ckpt`;
  checkWritable(checkpoint, "--checkpoint");
  // Hyper-parameters as given (undefined: not on the command line). A fresh run takes the
  // defaults for the rest; --resume takes the checkpoint's and refuses a changed one.
  if (f.optimizer !== undefined && f.optimizer !== "sgd" && f.optimizer !== "adam") throw new UsageError(`--optimizer '${f.optimizer}': expected sgd or adam`);
  const given = {
    epochs: f.epochs === undefined ? undefined : int("epochs", f.epochs, 2),
    batch: f.batch === undefined ? undefined : int("batch", f.batch, 64, 2),
    optimizer: f.optimizer as "sgd" | "adam" | undefined,
    lr: f.lr === undefined ? undefined : positive("lr", f.lr, 0),
    weightDecay: f["weight-decay"] === undefined ? undefined : positive("weight-decay", f["weight-decay"], 0, true),
    seed: f.seed === undefined ? undefined : int("seed", f.seed, 1, 0),
    dynamicEvery: f["dynamic-every"] === undefined ? undefined : int("dynamic-every", f["dynamic-every"], 1),
  };
  const checkpointEvery = f["checkpoint-every"] === undefined ? 0 : int("checkpoint-every", f["checkpoint-every"], 1);
  const limit = f.limit === undefined ? undefined : int("limit", f.limit, 0);
  const saved = f.resume ? (await import("../trainer/checkpoint.js")).loadCheckpoint(checkpoint).header : undefined;
  const resume = saved ? resumedSettings(checkpoint, saved, given, !!f.dynamic) : undefined;
  const optimizerKind = resume?.optimizer ?? given.optimizer ?? "sgd";
  const epochs = given.epochs ?? resume?.epochs ?? 2;
  const batch = resume?.batch ?? given.batch ?? 64;
  const lr = resume?.lr ?? given.lr ?? (optimizerKind === "sgd" ? 0.1 : 0.003);
  const weightDecay = resume?.weightDecay ?? given.weightDecay ?? (optimizerKind === "sgd" ? 1e-4 : 0.01);
  const seed = resume?.seed ?? given.seed ?? 1;
  const dynamicEvery = resume?.dynamicEvery ?? given.dynamicEvery ?? 1;
  const workers = f.workers === undefined || f.workers === "auto" ? "auto" : int("workers", f.workers, 1);
  const { backendChoice, selectBackend } = await loadTrainer();
  const choice = backendChoice(f.backend);

  const { loadData } = await import("../trainer/data.js");
  const { resolveNet } = await import("../trainer/spec.js");
  const { Trainer } = await import("../trainer/train.js");
  const { exportNet } = await import("../trainer/export.js");

  const dataName = f.data ?? "fashion-mnist";
  const data = loadData(dataName, { limit, seed });
  const spec = resolveNet({ arch: f.arch, blockSpec: f["block-spec"], asr: f.asr, input: data.train.shape, classes: data.classes });
  const online = !!f.online || spec.families.every((fam) => fam === "orepa");
  if (f.dynamic && online) throw new UsageError("--dynamic grows and prunes BN branches of multi-branch training; it cannot be combined with --online (or an OREPA arch)");
  const info = await selectBackend(choice);
  const nWorkers = workers === "auto" ? (info.name === "wasm" ? Math.min(2, os.availableParallelism()) : 1) : workers;

  if (saved) {
    if (typeof saved.options.data === "string" && saved.options.data !== data.name) throw new UsageError(`${checkpoint}: checkpoint was trained on ${saved.options.data}, not ${data.name}; resume with the same --data`);
    if (typeof saved.options.trainImages === "number" && saved.options.trainImages !== data.train.n) throw new UsageError(`${checkpoint}: checkpoint was trained on ${saved.options.trainImages} training images, not ${data.train.n}; resume with the same --data and --limit`);
  }
  const trainer = new Trainer(spec, data, {
    epochs, batch, seed, online, checkpoint, checkpointEvery, evalTest: true,
    optimizer: { kind: optimizerKind, lr, momentum: 0.9, weightDecay },
    dynamic: f.dynamic ? { every: dynamicEvery } : undefined,
    workers: nWorkers,
  });
  const lines: string[] = [];
  const say = (line: string) => {
    lines.push(line);
    if (!f.json) process.stdout.write(line + "\n");
  };
  let stop = false, interrupts = 0;
  const onSigint = () => {
    interrupts++;
    stop = true;
    if (interrupts > 1) process.exit(130);
  };
  process.on("SIGINT", onSigint);
  const bar = new ProgressBar(!f.json && !f["no-progress"] && !!process.stderr.isTTY);
  try {
    if (f.resume) trainer.restore(checkpoint);
    const form = online ? "online (OREPA-style: one conv per layer in the forward pass)" : "multi-branch";
    say(`reparam-onnx train: ${spec.name} (${form}${f.dynamic ? ", dynamic DyRep branches" : ""}) on ${data.name} (${fmtInt(data.train.n)} train / ${fmtInt(data.test.n)} test, ${data.train.shape.join("x")}, ${data.classes} classes)`);
    say(`  backend ${info.label}${nWorkers > 1 ? `, ${nWorkers} data-parallel workers` : ""}${info.skipped.length ? ` (skipped ${info.skipped.join("; ")})` : ""}`);
    say(`  ${spec.layers.length} re-parameterizable layers, ${fmtInt(trainer.net.paramCount())} trainable parameters; batch ${batch}, ${optimizerKind} lr ${lr} (cosine), weight decay ${weightDecay}, seed ${seed}`);
    if (trainer.resumedFrom !== undefined) {
      const at = trainer.position ? `at epoch ${trainer.resumedFrom + 1}, step ${trainer.position.step} of ${trainer.stepsPerEpoch()}` : `after epoch ${trainer.resumedFrom}`;
      say(`  resumed from ${checkpoint} ${at}: ${resume!.inherited.length ? `${resume!.inherited.join(", ")} as in the checkpoint` : "the checkpoint's hyper-parameters"}`);
      if (resume!.savedEpochs !== undefined && epochs !== resume!.savedEpochs) say(`  ${scheduleNote(trainer, resume!.savedEpochs)}`);
    }
    const result = await trainer.run({
      onStep: (p) => bar.update(p),
      onEpoch: (r) => {
        bar.clear();
        say(`  epoch ${r.epoch}/${epochs}: loss ${r.loss.toFixed(4)}, train acc ${pct(r.trainAcc)}, test acc ${r.testAcc === undefined ? "-" : pct(r.testAcc)}, ${duration(r.seconds)} (${fmtInt(Math.round(r.imagesPerSec))} img/s)${r.checkpoint ? `, checkpoint ${r.checkpoint}` : ""}`);
        for (const e of r.dynamic ?? []) say(`    dynamic: ${e}`);
      },
      shouldStop: () => stop,
    });
    bar.clear();
    if (result.stopped) {
      const last = trainer.lastCheckpoint ?? (trainer.resumedFrom !== undefined ? { epoch: trainer.resumedFrom, step: 0 } : undefined);
      const where = last ? `epoch ${last.epoch}${last.step ? `, step ${last.step} of epoch ${last.epoch + 1}` : ""}` : "";
      process.stderr.write(`reparam-onnx: interrupted; ${last ? `the last checkpoint (${checkpoint}, ${where}) is intact: continue with --resume` : "no epoch finished, no checkpoint written"}; nothing exported\n`);
      if (f.json) process.stdout.write(JSON.stringify({ interrupted: true, epochsDone: trainer.epochsDone, checkpoint: last ? checkpoint : null }) + "\n");
      return 130;
    }
    const finalTrain = trainer.history.at(-1);
    const model = modelFromBytes(modelToBytes(exportNet(trainer.net, { "reparam-onnx.data": data.name, "reparam-onnx.classes": (data.classNames ?? []).join(",") })));
    const written = saveModel(model, out);
    const testAcc = finalTrain?.testAcc;
    const deploy = out.replace(/\.onnx$/, ".deploy.onnx");
    say(`  final: train acc ${finalTrain ? pct(finalTrain.trainAcc) : "-"}, test acc ${testAcc === undefined ? "-" : pct(testAcc)} (tfjs, inference mode), training time ${duration(trainer.history.reduce((s, r) => s + r.seconds, 0))} over ${trainer.epochsDone} epochs`);
    say(`  wrote ${out} (${fmtInt(written.bytes)} bytes): ${online ? "online-linearized" : "multi-branch"} training form, ${model.graph.nodes.length} nodes (${opHistogram(model.graph.nodes)})`);
    say(`  next: npx reparam-onnx optimize ${out} ${deploy}`);
    say(`        npx reparam-onnx eval ${deploy} --data ${dataName}${limit ? ` --limit ${limit}` : ""}`);
    if (f.json)
      process.stdout.write(JSON.stringify({
        out, checkpoint, arch: spec.name, form: online ? "online" : "multi-branch", dynamic: !!f.dynamic, backend: info.label, workers: nWorkers,
        data: data.name, epochs: trainer.epochsDone, history: trainer.history, testAccuracy: testAcc ?? null, bytes: written.bytes,
        nodes: model.graph.nodes.length, structure: trainer.net.structure(), optimizeCommand: `npx reparam-onnx optimize ${out} ${deploy}`,
      }, null, 2) + "\n");
    return 0;
  } finally {
    bar.clear();
    process.off("SIGINT", onSigint);
    await trainer.dispose();
  }
}

interface ResumedSettings {
  optimizer: "sgd" | "adam";
  batch: number;
  lr: number;
  weightDecay: number;
  seed: number;
  dynamicEvery?: number;
  epochs?: number;
  /** --epochs the checkpoint's run was started with. */
  savedEpochs?: number;
  /** The flags taken from the checkpoint, as text ("--batch 64", …). */
  inherited: string[];
}

/**
 * --resume: the checkpoint's hyper-parameters. A flag given with another value would change the
 * run mid-way (the optimizer state, the schedule and the data order belong to those values), so it
 * is refused, naming each; --epochs may change (the schedule is stretched, and the run says how).
 */
function resumedSettings(file: string, header: import("../trainer/checkpoint.js").CheckpointHeader, given: { epochs?: number; batch?: number; optimizer?: "sgd" | "adam"; lr?: number; weightDecay?: number; seed?: number; dynamicEvery?: number }, dynamic: boolean): ResumedSettings {
  const o = header.options as { batch?: number; optimizer?: { kind?: "sgd" | "adam"; lr?: number; weightDecay?: number }; seed?: number; epochs?: number; dynamic?: { every?: number } };
  const savedValues = { batch: o.batch, optimizer: o.optimizer?.kind, lr: o.optimizer?.lr, weightDecay: o.optimizer?.weightDecay, seed: o.seed, dynamicEvery: o.dynamic?.every };
  const flag: Record<keyof typeof savedValues, string> = { batch: "--batch", optimizer: "--optimizer", lr: "--lr", weightDecay: "--weight-decay", seed: "--seed", dynamicEvery: "--dynamic-every" };
  const changed: string[] = [];
  const inherited: string[] = [];
  for (const key of Object.keys(savedValues) as (keyof typeof savedValues)[]) {
    const was = savedValues[key], now = given[key];
    if (was === undefined) continue;
    if (now !== undefined && now !== was) changed.push(`${flag[key]} ${now} (checkpoint: ${was})`);
    else if (now === undefined && (key !== "dynamicEvery" || dynamic)) inherited.push(`${flag[key]} ${was}`);
  }
  if (!!o.dynamic !== dynamic) changed.push(dynamic ? "--dynamic (the checkpoint's run is not dynamic)" : "no --dynamic (the checkpoint's run is)");
  if (changed.length)
    throw new UsageError(`${file}: resuming with ${changed.join(", ")} would change the run mid-way; drop ${changed.length === 1 ? "that flag" : "those flags"} (the checkpoint's values are used) or train anew without --resume`);
  if (given.epochs !== undefined && given.epochs < header.epoch) throw new UsageError(`${file}: checkpoint has already trained ${header.epoch} epochs; --epochs ${given.epochs} is fewer`);
  if (given.epochs === undefined && o.epochs !== undefined) inherited.push(`--epochs ${o.epochs}`);
  return {
    optimizer: savedValues.optimizer ?? "sgd", batch: savedValues.batch ?? 64, lr: savedValues.lr ?? 0.1, weightDecay: savedValues.weightDecay ?? 1e-4, seed: savedValues.seed ?? 1,
    dynamicEvery: savedValues.dynamicEvery, epochs: o.epochs, savedEpochs: o.epochs, inherited,
  };
}

/** How a changed --epochs applies on --resume: the cosine schedule spans the new total. */
function scheduleNote(trainer: import("../trainer/train.js").Trainer, savedEpochs: number): string {
  const now = trainer.config.epochs, steps = trainer.stepsPerEpoch();
  const next = trainer.opt.step;
  return `--epochs ${now} (checkpoint: ${savedEpochs}): training continues to epoch ${now}; the cosine learning-rate schedule now spans ${now} epochs (${(now * steps).toLocaleString("en-US")} steps), so the next step (${next + 1}) runs at lr ${trainer.lrAt(next).toPrecision(3)} where the ${savedEpochs}-epoch schedule had ${trainer.lrAt(next, savedEpochs) === 0 ? "ended (lr 0)" : trainer.lrAt(next, savedEpochs).toPrecision(3)}`;
}

/** Accuracy of an ONNX classifier in onnxruntime on an IDX/synthetic data split. */
export async function evaluateOnnx(file: string, dataName: string, options: { split?: "test" | "train"; limit?: number; batch?: number; provider?: Provider } = {}) {
  const { loadData, batchOf } = await import("../trainer/data.js");
  const model = loadModel(file);
  const data = loadData(dataName, { limit: options.limit });
  const split = options.split ?? "test";
  const d = split === "test" ? data.test : data.train;
  const inputs = model.graph.realInputs();
  if (inputs.length !== 1) throw new UsageError(`${file}: expected one input (an image batch), found ${inputs.length}`);
  const input = inputs[0]!;
  const dims = dimsOf(input);
  const [c, h, w] = d.shape;
  if (dims && (dims.length !== 4 || (dims[1] !== undefined && dims[1] !== c) || (dims[2] !== undefined && dims[2] !== h) || (dims[3] !== undefined && dims[3] !== w)))
    throw new UsageError(`${file}: input '${input.name}' has shape [${dims.map((x) => x ?? "?").join(", ")}], the data is [N, ${c}, ${h}, ${w}]`);
  const fixedBatch = dims && dims[0] !== undefined ? dims[0] : undefined;
  const batch = fixedBatch ?? options.batch ?? 500;
  const session = await createSession(model, options.provider ?? "cpu");
  const t0 = performance.now();
  let correct = 0;
  const predictions = new Int32Array(d.n);
  const perClass = new Map<number, [number, number]>();
  try {
    for (let i = 0; i < d.n; i += batch) {
      const m = Math.min(batch, d.n - i);
      const idx = Uint32Array.from({ length: fixedBatch ?? m }, (_, j) => Math.min(i + j, d.n - 1));
      const { x, y } = batchOf(d, idx);
      const res = await session.run({ [input.name!]: new ort.Tensor("float32", x, [idx.length, c, h, w]) });
      const outName = session.outputNames[0]!;
      const logits = res[outName]!.data as Float32Array;
      const classes = logits.length / idx.length;
      if (!Number.isInteger(classes) || classes < 2) throw new UsageError(`${file}: output '${outName}' is not [N, classes] logits`);
      for (let j = 0; j < m; j++) {
        let best = 0;
        for (let k = 1; k < classes; k++) if (logits[j * classes + k]! > logits[j * classes + best]!) best = k;
        predictions[i + j] = best;
        const pc = perClass.get(y[j]!) ?? [0, 0];
        pc[1]++;
        if (best === y[j]) {
          correct++;
          pc[0]++;
        }
        perClass.set(y[j]!, pc);
      }
    }
  } finally {
    await session.release();
  }
  const digest = createHash("sha256").update(new Uint8Array(predictions.buffer)).digest("hex").slice(0, 16);
  return { file, data: data.name, split, n: d.n, correct, accuracy: correct / d.n, seconds: (performance.now() - t0) / 1000, predictionsDigest: digest, perClass, classNames: data.classNames };
}

export async function cmdEval(args: string[], f: TrainFlags): Promise<number> {
  if (args.length !== 1) throw new UsageError(`eval takes 1 file argument (MODEL.onnx), got ${args.length}`);
  const split = f.split ?? "test";
  if (split !== "test" && split !== "train") throw new UsageError(`--split '${split}': expected test or train`);
  const limit = f.limit === undefined ? undefined : int("limit", f.limit, 0);
  const batch = int("batch", f.batch, 500);
  const provider = f.provider === undefined || f.provider === "cpu" ? "cpu" : f.provider === "cuda" ? "cuda" : undefined;
  if (!provider) throw new UsageError(`--provider '${f.provider}': expected cpu or cuda`);
  const r = await evaluateOnnx(args[0]!, f.data ?? "fashion-mnist", { split, limit, batch, provider });
  if (f.json) {
    process.stdout.write(JSON.stringify({ ...r, perClass: Object.fromEntries([...r.perClass].map(([k, [c, n]]) => [r.classNames?.[k] ?? String(k), { correct: c, n }])) }, null, 2) + "\n");
    return 0;
  }
  const lines = [
    `reparam-onnx eval ${r.file} on ${r.data} (${r.split}, ${fmtInt(r.n)} images, onnxruntime ${provider})`,
    `  accuracy ${pct(r.accuracy)} (${fmtInt(r.correct)}/${fmtInt(r.n)}), ${duration(r.seconds)}; predictions digest ${r.predictionsDigest}`,
    `  per class: ${[...r.perClass].sort((a, b) => a[0] - b[0]).map(([k, [c, n]]) => `${r.classNames?.[k] ?? k} ${pct(c / n)}`).join(", ")}`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
  return 0;
}
