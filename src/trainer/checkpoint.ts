// Training checkpoints: one file, "RPCKPT1\n" + uint32 header length + JSON header + float32 data.
// Written atomically (temp file in the same folder, fsync, rename): the path holds the previous
// checkpoint or the new one, never a partial file — also when the run is interrupted (Ctrl-C).
import * as fs from "node:fs";
import * as path from "node:path";
import { UsageError } from "../ir/errors.js";
import type { BranchKind, NetSpec } from "./spec.js";

const MAGIC = "RPCKPT1\n";

export interface TensorRecord {
  name: string;
  /** "param", or an optimizer slot ("m", "v"). */
  slot: string;
  shape: number[];
  data: Float32Array;
}

export interface CheckpointHeader {
  version: 1;
  spec: NetSpec;
  online: boolean;
  /** Epochs completed. */
  epoch: number;
  optimizerStep: number;
  structure: Record<string, { kind: BranchKind; name: string }[]>;
  /** Options the run was started with (a resumed run keeps them). */
  options: Record<string, unknown>;
  history: Record<string, unknown>[];
  /** DyRep state (importance scores between decisions, event log). */
  dynamic?: unknown;
  /** A checkpoint written within an epoch (--checkpoint-every): steps done in epoch `epoch + 1` and their running sums. */
  position?: { step: number; lossSum: number; correct: number; seen: number };
}

export function saveCheckpoint(file: string, header: CheckpointHeader, tensors: TensorRecord[]): number {
  const meta = { ...header, tensors: [] as { name: string; slot: string; shape: number[]; offset: number; length: number }[] };
  let offset = 0;
  for (const t of tensors) {
    meta.tensors.push({ name: t.name, slot: t.slot, shape: t.shape, offset, length: t.data.length });
    offset += t.data.length;
  }
  const json = Buffer.from(JSON.stringify(meta), "utf8");
  // Pad so the float32 data starts at a multiple of 4.
  const headLen = MAGIC.length + 4 + json.length;
  const pad = (4 - (headLen % 4)) % 4;
  const head = Buffer.alloc(headLen + pad, 0x20);
  head.write(MAGIC, 0, "latin1");
  head.writeUInt32LE(json.length + pad, MAGIC.length);
  json.copy(head, MAGIC.length + 4);
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, "w");
  try {
    let pos = 0;
    pos += fs.writeSync(fd, head, 0, head.length, pos);
    for (const t of tensors) {
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      pos += fs.writeSync(fd, bytes, 0, bytes.length, pos);
    }
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  return head.length + offset * 4;
}

export function loadCheckpoint(file: string): { header: CheckpointHeader; tensors: TensorRecord[] } {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch {
    throw new UsageError(`${file}: no checkpoint to resume from (train without --resume first, or pass --checkpoint PATH)`);
  }
  if (bytes.length < MAGIC.length + 4 || bytes.toString("latin1", 0, MAGIC.length) !== MAGIC) throw new UsageError(`${file}: not a reparam-onnx checkpoint`);
  const len = bytes.readUInt32LE(MAGIC.length);
  const start = MAGIC.length + 4;
  if (start + len > bytes.length) throw new UsageError(`${file}: truncated checkpoint`);
  let meta: CheckpointHeader & { tensors: { name: string; slot: string; shape: number[]; offset: number; length: number }[] };
  try {
    meta = JSON.parse(bytes.toString("utf8", start, start + len));
  } catch {
    throw new UsageError(`${file}: corrupt checkpoint header`);
  }
  const dataStart = start + len;
  const floats = Math.floor((bytes.length - dataStart) / 4);
  const all = new Float32Array(floats);
  new Uint8Array(all.buffer).set(bytes.subarray(dataStart, dataStart + floats * 4));
  const tensors: TensorRecord[] = meta.tensors.map((t) => {
    if (t.offset + t.length > floats) throw new UsageError(`${file}: truncated checkpoint (tensor ${t.name})`);
    return { name: t.name, slot: t.slot, shape: t.shape, data: all.subarray(t.offset, t.offset + t.length) };
  });
  const { tensors: _t, ...header } = meta;
  return { header, tensors };
}
