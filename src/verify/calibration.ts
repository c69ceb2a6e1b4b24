// Calibration data and what is measured on it: per attention block the mean gate vector and its
// spread across inputs (the Stripe statistic), and end to end the error (and accuracy) of an
// approximated model against the original.
import * as fs from "node:fs";
import * as path from "node:path";
import * as ort from "onnxruntime-node";
import { UsageError } from "../ir/errors.js";
import type { Model } from "../ir/graph.js";
import { onnx } from "../ir/proto.js";
import { readNpy } from "./npy.js";
import { createSession, tensorToFloat64 } from "./verify.js";

export interface CalibrationSet {
  /** Batches for the model's single input (float32). */
  batches: ort.Tensor[];
  samples: number;
}

/** A .npy of shape [K, ...input dims] or a folder of .npy files (each one sample or a batch). */
export function readCalibration(source: string, model: Model): CalibrationSet {
  const inputs = model.graph.realInputs();
  if (inputs.length !== 1) throw new UsageError(`${source}: calibration needs a model with one input (this one has ${inputs.length})`);
  const rank = inputs[0]!.type?.tensorType?.shape?.dim?.length ?? 4;
  let files: string[];
  try {
    files = fs.statSync(source).isDirectory() ? fs.readdirSync(source).filter((f) => f.endsWith(".npy")).sort().map((f) => path.join(source, f)) : [source];
  } catch {
    throw new UsageError(`${source}: no such calibration file or folder`);
  }
  if (files.length === 0) throw new UsageError(`${source}: no .npy files`);
  const batches: ort.Tensor[] = [];
  let samples = 0;
  for (const file of files) {
    const arr = readNpy(file);
    if (arr.dtype !== "float32" && arr.dtype !== "float64") throw new UsageError(`${file}: calibration data must be float32 or float64, not ${arr.dtype}`);
    const dims = arr.dims.length === rank - 1 ? [1, ...arr.dims] : arr.dims;
    if (dims.length !== rank) throw new UsageError(`${file}: shape [${arr.dims}] does not fit the model input of rank ${rank}`);
    const data = Float32Array.from(arr.data as ArrayLike<number>);
    const per = dims.slice(1).reduce((a, b) => a * b, 1);
    for (let start = 0; start < dims[0]!; start += 16) {
      const n = Math.min(16, dims[0]! - start);
      batches.push(new ort.Tensor("float32", data.slice(start * per, (start + n) * per), [n, ...dims.slice(1)]));
      samples += n;
    }
  }
  return { batches, samples };
}

/** What the statistics need of a channel-attention block (src/app/approximate-attention.ts finds them). */
export interface GateProbe {
  /** The Mul applying the gate (named in messages). */
  mul: { name: string };
  /** The gate tensor measured: C values per sample. */
  gate: string;
  channels: number;
}

export interface AttentionStat {
  block: string;
  channels: number;
  mean: number[];
  /** Largest per-channel standard deviation of the gate over the calibration set. */
  spreadMaxStd: number;
  /** Largest per-channel max − min. */
  spreadMaxRange: number;
}

/** Run the calibration set with every gate tensor exposed as an extra output and summarize it. */
export async function attentionStats(model: Model, blocks: GateProbe[], calib: CalibrationSet): Promise<AttentionStat[]> {
  const probe = model.clone();
  for (const b of blocks) probe.graph.outputs.push(onnx.ValueInfoProto.create({ name: b.gate }));
  const session = await createSession(probe, "cpu", "calibration");
  const values: number[][][] = blocks.map(() => []);
  try {
    for (const batch of calib.batches) {
      const out = await session.run({ [session.inputNames[0]!]: batch });
      blocks.forEach((b, k) => {
        const v = tensorToFloat64(out[b.gate] as ort.Tensor)!;
        const n = batch.dims[0]!;
        if (v.length !== n * b.channels) throw new UsageError(`attention '${b.mul.name}': its gate has ${v.length / n} values per input, not one per channel (${b.channels})`);
        for (let s = 0; s < n; s++) values[k]!.push(Array.from(v.subarray(s * b.channels, (s + 1) * b.channels)));
      });
    }
  } finally {
    await session.release();
  }
  return blocks.map((b, k) => {
    const rows = values[k]!;
    const mean = new Array(b.channels).fill(0), sq = new Array(b.channels).fill(0);
    const lo = new Array(b.channels).fill(Infinity), hi = new Array(b.channels).fill(-Infinity);
    for (const r of rows)
      r.forEach((v, c) => {
        mean[c] += v / rows.length;
        sq[c] += (v * v) / rows.length;
        lo[c] = Math.min(lo[c], v);
        hi[c] = Math.max(hi[c], v);
      });
    const std = mean.map((m, c) => Math.sqrt(Math.max(0, sq[c] - m * m)));
    return { block: b.mul.name, channels: b.channels, mean, spreadMaxStd: Math.max(...std), spreadMaxRange: Math.max(...hi.map((h, c) => h - lo[c])) };
  });
}

export interface ApproximationError {
  samples: number;
  maxAbs: number;
  maxRel: number;
  /** Fraction of samples whose arg-max class is unchanged (for classifier outputs). */
  top1Agreement: number;
  /** Accuracy of the original and of the approximated model, when labels are given. */
  accuracy?: { original: number; approximated: number };
}

/** End-to-end error of `approximated` against `original` on the calibration set (first output). */
export async function approximationError(original: Model, approximated: Model, calib: CalibrationSet, labels?: number[]): Promise<ApproximationError> {
  const a = await createSession(original, "cpu", "original"), b = await createSession(approximated, "cpu", "approximated");
  let maxAbs = 0, scale = 1, agree = 0, correctA = 0, correctB = 0, seen = 0;
  try {
    for (const batch of calib.batches) {
      const feeds = { [a.inputNames[0]!]: batch };
      const ya = tensorToFloat64((await a.run(feeds))[a.outputNames[0]!] as ort.Tensor)!;
      const yb = tensorToFloat64((await b.run({ [b.inputNames[0]!]: batch }))[b.outputNames[0]!] as ort.Tensor)!;
      for (let i = 0; i < ya.length; i++) {
        maxAbs = Math.max(maxAbs, Math.abs(ya[i]! - yb[i]!));
        scale = Math.max(scale, Math.abs(ya[i]!));
      }
      const n = batch.dims[0]!, per = ya.length / n;
      for (let s = 0; s < n; s++) {
        const argmax = (y: Float64Array) => { let best = 0; for (let j = 1; j < per; j++) if (y[s * per + j]! > y[s * per + best]!) best = j; return best; };
        const pa = argmax(ya), pb = argmax(yb);
        if (pa === pb) agree++;
        if (labels) {
          if (pa === labels[seen]) correctA++;
          if (pb === labels[seen]) correctB++;
        }
        seen++;
      }
    }
  } finally {
    await a.release();
    await b.release();
  }
  return {
    samples: seen, maxAbs, maxRel: maxAbs / scale, top1Agreement: agree / Math.max(1, seen),
    ...(labels ? { accuracy: { original: correctA / seen, approximated: correctB / seen } } : {}),
  };
}
