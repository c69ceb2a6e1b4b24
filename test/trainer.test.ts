// The bundled trainer on a tiny synthetic data set: every block family in both training forms
// exports an ONNX model that reproduces the tfjs model in onnxruntime and that `optimize` folds to
// one Conv per layer; training learns; checkpoints resume exactly; eval gives identical accuracy
// before and after folding.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, saveModel } from "../src/ir/io.js";
import type { Model } from "../src/ir/graph.js";
import { optimize } from "../src/app/optimize.js";
import { runModel, verifyModels } from "../src/verify/verify.js";
import { selectBackend, tf } from "../src/trainer/backend.js";
import { batchOf, loadData, syntheticData, type DataSplits } from "../src/trainer/data.js";
import { exportNet } from "../src/trainer/export.js";
import { batchNormTrain } from "../src/trainer/ops.js";
import { buildNet, resolveNet, type BlockSpecFile, type Family } from "../src/trainer/spec.js";
import { Trainer, type TrainConfig } from "../src/trainer/train.js";
import { foldIntoMain, missingBranches } from "../src/trainer/dynamic.js";
import { evaluateOnnx } from "../src/cli/train.js";

const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-trainer-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

let data: DataSplits;
beforeAll(async () => {
  await selectBackend("wasm");
  data = syntheticData(256, 64, 3, 12);
});

const config = (over: Partial<TrainConfig> = {}): TrainConfig => ({
  epochs: 1, batch: 32, seed: 5, online: false, evalTest: false,
  optimizer: { kind: "sgd", lr: 0.05, momentum: 0.9, weightDecay: 1e-4 }, ...over,
});

function tinySpec(block: Family, extra: Partial<BlockSpecFile> = {}) {
  return buildNet({ name: `${block}-tiny`, input: [1, 12, 12], classes: 10, block, stem: { width: 8 }, stages: [{ width: 16, stride: 2 }, { width: 16 }], ...extra });
}

/** Saved and loaded again: the model as `optimize` sees it from a file. */
function roundTrip(model: Model, name: string): Model {
  const file = path.join(work, name);
  saveModel(model, file);
  return loadModel(file);
}

function ops(m: Model): Record<string, number> {
  const h: Record<string, number> = {};
  for (const n of m.graph.nodes) h[n.opType] = (h[n.opType] ?? 0) + 1;
  return h;
}

async function onnxLogits(model: Model, x: Float32Array, n: number): Promise<Float32Array> {
  const out = await runModel(model, { input: new ort.Tensor("float32", x, [n, 1, 12, 12]) });
  return out.logits!.data as Float32Array;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

describe("fast BatchNorm (training mode)", () => {
  it("matches tf.moments + tf.batchNorm: value and gradients", () => {
    tf.tidy(() => {
      const x = tf.add(tf.mul(tf.randomNormal([3, 5, 7, 4], 0, 1, "float32", 1), 2), 0.7) as tf.Tensor4D;
      const g = tf.tensor1d([1, 0.5, -2, 0]), b = tf.tensor1d([0.1, 0, -0.3, 2]);
      const r = tf.randomNormal([3, 5, 7, 4], 0, 1, "float32", 2);
      const stats: { mean: tf.Tensor; variance: tf.Tensor }[] = [];
      const ours = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => tf.sum(tf.mul(batchNormTrain(xi as tf.Tensor4D, gi as tf.Tensor1D, bi as tf.Tensor1D, 1e-5, (s) => stats.push(s)), r));
      const ref = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => {
        const { mean, variance } = tf.moments(xi, [0, 1, 2]);
        return tf.sum(tf.mul(tf.batchNorm4d(xi as tf.Tensor4D, mean as tf.Tensor1D, variance as tf.Tensor1D, bi as tf.Tensor1D, gi as tf.Tensor1D, 1e-5), r));
      };
      const a = tf.grads(ours)([x, g, b]), e = tf.grads(ref)([x, g, b]);
      for (let i = 0; i < 3; i++) expect(maxAbsDiff(a[i]!.dataSync() as Float32Array, e[i]!.dataSync() as Float32Array)).toBeLessThan(2e-4);
      expect(ours(x, g, b).dataSync()[0]).toBeCloseTo(ref(x, g, b).dataSync()[0]!, 2);
      const { mean, variance } = tf.moments(x, [0, 1, 2]);
      expect(maxAbsDiff(stats[0]!.mean.dataSync() as Float32Array, mean.dataSync() as Float32Array)).toBeLessThan(1e-5);
      expect(maxAbsDiff(stats[0]!.variance.dataSync() as Float32Array, variance.dataSync() as Float32Array)).toBeLessThan(1e-4);
      for (const s of stats) { s.mean.dispose(); s.variance.dispose(); }
    });
  });
});

const FAMILIES: Family[] = ["repvgg", "acb", "dbb", "mobileone", "repghost", "orepa"];

describe("export: the ONNX model reproduces tfjs and optimize folds it to one Conv per layer", () => {
  for (const online of [false, true])
    for (const fam of FAMILIES) {
      if (fam === "orepa" && !online) continue; // OREPA blocks are online by construction
      it(`${fam} ${online ? "online" : "multi-branch"}`, async () => {
        const spec = tinySpec(fam);
        const tr = new Trainer(spec, data, config({ online, stepsPerEpoch: 3 }));
        try {
          await tr.run(); // a few steps: BN running statistics and weights move away from init
          const model = roundTrip(exportNet(tr.net), `${fam}-${online}.onnx`);
          expect(model.opset()).toBeGreaterThanOrEqual(13);
          const names = model.graph.nodes.map((n) => n.name);
          expect(new Set(names).size).toBe(names.length);
          expect(names.every((n) => n.length > 0)).toBe(true);
          const n = 8;
          const { x } = batchOf(data.test, Uint32Array.from({ length: n }, (_, i) => i));
          const ref = tr.net.predict(x, n);
          const got = await onnxLogits(model, x, n);
          const scale = Math.max(1, ...Array.from(ref, Math.abs));
          expect(maxAbsDiff(got, ref) / scale).toBeLessThan(1e-4);
          const { model: folded } = optimize(model);
          const h = ops(folded);
          expect(h.Conv).toBe(spec.layers.length);
          for (const op of ["BatchNormalization", "Add", "Mul", "Sub", "Pad", "AveragePool"]) expect(h[op] ?? 0).toBe(0);
          const v = await verifyModels(model, folded, { runs: 2 });
          expect(v.ok).toBe(true);
          const got2 = await onnxLogits(folded, x, n);
          expect(maxAbsDiff(got2, ref) / scale).toBeLessThan(1e-4);
        } finally {
          tr.dispose();
        }
      });
    }

  it("ASR constant attention folds away (fold-constants + collapse)", async () => {
    const spec = tinySpec("repvgg", { asr: true });
    const tr = new Trainer(spec, data, config({ stepsPerEpoch: 2 }));
    try {
      await tr.run();
      const model = roundTrip(exportNet(tr.net), "asr.onnx");
      expect(ops(model).Sigmoid).toBe(spec.layers.length);
      const n = 4;
      const { x } = batchOf(data.test, Uint32Array.from({ length: n }, (_, i) => i));
      expect(maxAbsDiff(await onnxLogits(model, x, n), tr.net.predict(x, n))).toBeLessThan(1e-4);
      const { model: folded } = optimize(model);
      expect(ops(folded).Conv).toBe(spec.layers.length);
      expect(ops(folded).Sigmoid ?? 0).toBe(0);
      expect((await verifyModels(model, folded, { runs: 2 })).ok).toBe(true);
    } finally {
      tr.dispose();
    }
  });
});

describe("training", () => {
  it("learns the synthetic textures, and eval gives identical accuracy before and after folding", async () => {
    // eval reads the data itself: the same synthetic set by its name.
    const spec = "synthetic:512";
    const d = loadData(spec);
    const tr = new Trainer(tinySpec("repvgg", { input: [1, 16, 16] }), d, config({ epochs: 3, evalTest: true, optimizer: { kind: "sgd", lr: 0.1, momentum: 0.9, weightDecay: 1e-4 } }));
    try {
      const r = await tr.run();
      expect(r.history).toHaveLength(3);
      expect(r.history[2]!.testAcc!).toBeGreaterThan(0.8);
      const file = path.join(work, "learned.onnx");
      saveModel(exportNet(tr.net), file);
      const folded = path.join(work, "learned.deploy.onnx");
      saveModel(optimize(loadModel(file)).model, folded);
      const a = await evaluateOnnx(file, spec), b = await evaluateOnnx(folded, spec);
      expect(a.n).toBe(loadData(spec).test.n);
      expect(b.correct).toBe(a.correct);
      expect(b.predictionsDigest).toBe(a.predictionsDigest);
    } finally {
      tr.dispose();
    }
  });

  it("data-parallel workers: full-batch BN statistics, no tensor leaks", async () => {
    // Needs the compiled worker (npm test builds first).
    const spec = tinySpec("repvgg");
    const one = new Trainer(spec, data, config({ epochs: 1, stepsPerEpoch: 1 }));
    const two = new Trainer(spec, data, config({ epochs: 1, stepsPerEpoch: 1, workers: 2 }));
    try {
      await one.run();
      await two.run();
      // The stem sees the same activations however the batch is split: its BN running statistics
      // (combined from the slices) equal the single-thread ones.
      for (const name of ["stem.kxk.bn.running_mean", "stem.kxk.bn.running_var", "stem.1x1.bn.running_var"]) {
        const a = one.net.vars.get(name)!.dataSync() as Float32Array, b = two.net.vars.get(name)!.dataSync() as Float32Array;
        expect(maxAbsDiff(a, b), name).toBeLessThan(1e-5);
      }
      const pool = (two as unknown as { pool: { workerTensors: number[] } }).pool;
      const main = tf.memory().numTensors;
      const before = [...pool.workerTensors];
      const { x, y } = batchOf(data.train, Uint32Array.from({ length: 32 }, (_, i) => i));
      for (let i = 0; i < 3; i++) await two.step(x, y);
      expect(pool.workerTensors).toEqual(before);
      expect(tf.memory().numTensors).toBe(main);
    } finally {
      await one.dispose();
      await two.dispose();
    }
  });

  it("a resumed run continues exactly where the checkpoint left off", async () => {
    const ckpt = path.join(work, "resume.ckpt");
    const spec = tinySpec("dbb");
    const cfg = config({ epochs: 2, stepsPerEpoch: 3, checkpoint: ckpt });
    const straight = new Trainer(spec, data, config({ epochs: 2, stepsPerEpoch: 3 }));
    const partial = new Trainer(spec, data, cfg);
    const resumed = new Trainer(spec, data, cfg);
    try {
      await straight.run();
      // Stopped (as by Ctrl-C) after the first epoch: its checkpoint is what resumes.
      const p = await partial.run({ shouldStop: () => partial.epochsDone >= 1 });
      expect(p.stopped).toBe(true);
      expect(p.epochsDone).toBe(1);
      resumed.restore(ckpt);
      expect(resumed.epochsDone).toBe(1);
      const r = await resumed.run();
      expect(r.resumedFrom).toBe(1);
      expect(r.epochsDone).toBe(2);
      expect(r.history.map((h) => h.epoch)).toEqual([1, 2]);
      for (const [name, v] of straight.net.vars) {
        const w = resumed.net.vars.get(name)!;
        expect(Array.from(w.dataSync()), name).toEqual(Array.from(v.dataSync()));
      }
    } finally {
      straight.dispose();
      partial.dispose();
      resumed.dispose();
    }
  });
});

describe("checkpoints every N steps", () => {
  it("a run stopped mid-epoch resumes at the step of its last step checkpoint and ends bit-identical", async () => {
    const ckpt = path.join(work, "steps.ckpt");
    const spec = tinySpec("repvgg");
    const cfg = config({ epochs: 2, stepsPerEpoch: 5, checkpoint: ckpt, checkpointEvery: 2 });
    const straight = new Trainer(spec, data, config({ epochs: 2, stepsPerEpoch: 5 }));
    const partial = new Trainer(spec, data, cfg);
    const resumed = new Trainer(spec, data, cfg);
    try {
      const full = await straight.run();
      // Stopped after step 3 of epoch 2: the last checkpoint is epoch 2's step 2 (step checkpoints every 2 steps).
      let steps = 0;
      const p = await partial.run({ onStep: () => steps++, shouldStop: () => steps >= 5 + 3 });
      expect(p.stopped).toBe(true);
      expect(partial.lastCheckpoint).toEqual({ epoch: 1, step: 2 });
      resumed.restore(ckpt);
      expect(resumed.epochsDone).toBe(1);
      expect(resumed.position?.step).toBe(2);
      const seen: number[] = [];
      const r = await resumed.run({ onStep: (s) => seen.push(s.step) });
      expect(seen).toEqual([3, 4, 5]);
      expect(r.epochsDone).toBe(2);
      // Epoch 2's loss and accuracy cover all its steps, as in the uninterrupted run.
      expect(r.history[1]!.loss).toBeCloseTo(full.history[1]!.loss, 12);
      expect(r.history[1]!.trainAcc).toBe(full.history[1]!.trainAcc);
      for (const [name, v] of straight.net.vars) expect(Array.from(resumed.net.vars.get(name)!.dataSync()), name).toEqual(Array.from(v.dataSync()));
    } finally {
      straight.dispose();
      partial.dispose();
      resumed.dispose();
    }
  });
});

describe("dynamic (DyRep) branches", () => {
  it("folding any branch into the main conv (Dep) keeps the inference function; growing (Rep) too", async () => {
    const all = ["kxk", "1x1", "identity", "1xk", "kx1", "1x1_avg", "1x1_kxk", "dw_pw"] as const;
    for (const [label, spec] of [
      ["dense", buildNet({ input: [1, 12, 12], classes: 10, stem: { width: 8 }, stages: [{ width: 8, branches: [...all] }, { width: 12, stride: 2, branches: [...all] }] })],
      ["depthwise", tinySpec("mobileone", { stages: [{ width: 8, stride: 2, branches: ["kxk", "1x1", "identity", "1xk", "kx1", "1x1_avg", "1x1_kxk"] }] })],
    ] as const) {
      const tr = new Trainer(spec, data, config({ stepsPerEpoch: 4 }));
      try {
        await tr.run();
        const n = 6;
        const { x } = batchOf(data.test, Uint32Array.from({ length: n }, (_, i) => i));
        const before = tr.net.predict(x, n);
        const scale = Math.max(1, ...Array.from(before, Math.abs));
        let folded = 0;
        for (const layer of tr.net.layers) {
          const main = layer.branches.find((b) => b.kind === "kxk")!;
          for (const br of [...layer.branches]) if (br !== main && foldIntoMain(tr.net, layer, br, main)) folded++;
          expect(layer.branches.map((b) => b.kind)).toEqual(["kxk"]);
        }
        expect(folded, label).toBeGreaterThan(6);
        expect(maxAbsDiff(tr.net.predict(x, n), before) / scale, label).toBeLessThan(1e-4);
        for (const layer of tr.net.layers) for (const kind of missingBranches(layer)) tr.net.addBranch(layer, kind, true);
        expect(maxAbsDiff(tr.net.predict(x, n), before) / scale, label).toBeLessThan(1e-4);
      } finally {
        await tr.dispose();
      }
    }
  });

  it("grows and prunes during training; the export has a branch subset per layer and folds", async () => {
    const spec = tinySpec("dbb", { stages: [{ width: 16, stride: 2 }, { width: 16 }, { width: 16 }] });
    const tr = new Trainer(spec, data, config({ epochs: 3, stepsPerEpoch: 4, dynamic: { every: 1, window: 3, grow: 0.5, prune: 0.5 } }));
    try {
      expect(tr.net.layers.every((l) => l.branches.length === 1)).toBe(true);
      const r = await tr.run();
      const events = r.history.flatMap((h) => h.dynamic ?? []);
      expect(events.some((e) => /grew/.test(e))).toBe(true);
      const counts = tr.net.layers.map((l) => l.branches.length);
      expect(new Set(counts).size, JSON.stringify(tr.net.structure())).toBeGreaterThan(1);
      const model = roundTrip(exportNet(tr.net), "dynamic.onnx");
      const n = 6;
      const { x } = batchOf(data.test, Uint32Array.from({ length: n }, (_, i) => i));
      expect(maxAbsDiff(await onnxLogits(model, x, n), tr.net.predict(x, n))).toBeLessThan(1e-4);
      const { model: folded } = optimize(model);
      expect(ops(folded).Conv).toBe(spec.layers.length);
      expect((await verifyModels(model, folded, { runs: 2 })).ok).toBe(true);
    } finally {
      await tr.dispose();
    }
  });
});

describe("data and specs", () => {
  it("reads gzipped and raw IDX files from a folder", () => {
    const dir = path.join(work, "idx");
    fs.mkdirSync(dir);
    const idx = (dims: number[], data: Uint8Array) => {
      const head = Buffer.alloc(4 + 4 * dims.length);
      head.writeUInt8(0x08, 2);
      head.writeUInt8(dims.length, 3);
      dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
      return Buffer.concat([head, Buffer.from(data)]);
    };
    const imgs = Uint8Array.from({ length: 5 * 4 * 4 }, (_, i) => i % 256);
    fs.writeFileSync(path.join(dir, "train-images-idx3-ubyte.gz"), zlib.gzipSync(idx([5, 4, 4], imgs)));
    fs.writeFileSync(path.join(dir, "train-labels-idx1-ubyte"), idx([5], Uint8Array.from([0, 1, 2, 1, 0])));
    fs.writeFileSync(path.join(dir, "t10k-images-idx3-ubyte.gz"), zlib.gzipSync(idx([2, 4, 4], imgs.subarray(0, 32))));
    fs.writeFileSync(path.join(dir, "t10k-labels-idx1-ubyte.gz"), zlib.gzipSync(idx([2], Uint8Array.from([2, 0]))));
    const d = loadData(dir);
    expect(d.train.n).toBe(5);
    expect(d.test.n).toBe(2);
    expect(d.classes).toBe(3);
    expect(d.train.shape).toEqual([1, 4, 4]);
    expect(Array.from(d.train.images.subarray(0, 3))).toEqual([0, 1, 2]);
    fs.writeFileSync(path.join(dir, "t10k-labels-idx1-ubyte.gz"), zlib.gzipSync(idx([3], Uint8Array.from([2, 0, 1]))));
    expect(() => loadData(dir)).toThrow(/3 labels for 2 images/);
  });

  it("explains how to install a missing data set", () => {
    const old = process.env.REPARAM_DATASETS;
    process.env.REPARAM_DATASETS = path.join(work, "nowhere");
    try {
      expect(() => loadData("fashion-mnist")).toThrow(/apt-get install dataset-fashion-mnist/);
    } finally {
      if (old === undefined) delete process.env.REPARAM_DATASETS;
      else process.env.REPARAM_DATASETS = old;
    }
  });

  it("builds presets and validates --block-spec files", () => {
    const net = resolveNet({ arch: "mobileone-mini", input: [1, 28, 28], classes: 10 });
    expect(net.layers.map((l) => l.name)).toEqual(["stem", "stages.0.dw", "stages.0.pw", "stages.1.dw", "stages.1.pw", "stages.2.dw", "stages.2.pw"]);
    expect(net.layers[3]!.branches).toEqual(["kxk", "kxk", "kxk", "1x1", "identity"]);
    const file = path.join(work, "spec.json");
    fs.writeFileSync(file, JSON.stringify({ block: "acb", stages: [{ width: 8, depth: 2, stride: 2, branches: ["kxk", "1x1", "identity"] }] }));
    const custom = resolveNet({ blockSpec: file, input: [1, 28, 28], classes: 10 });
    expect(custom.layers.map((l) => l.branches)).toEqual([["kxk", "1x1"], ["kxk", "1x1", "identity"]]);
    fs.writeFileSync(file, JSON.stringify({ stages: [{ width: 8, stride: 3 }] }));
    expect(() => resolveNet({ blockSpec: file })).toThrow(/'stride' must be 1 or 2/);
    fs.writeFileSync(file, JSON.stringify({ stages: [{ width: 8, branches: ["1x1", "nope"] }] }));
    expect(() => resolveNet({ blockSpec: file })).toThrow(/branch 'nope'/);
    expect(() => resolveNet({ arch: "resnet-50" })).toThrow(/--arch 'resnet-50': expected one of/);
  });
});
