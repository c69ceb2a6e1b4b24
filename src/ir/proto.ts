// The protobuf layer: onnx-proto's generated codec, made lossless.
//
// onnx-proto carries the ONNX 1.10 schema and its generated decoders skip fields they do not
// know (e.g. fields added by newer ONNX releases). We wrap every message type's decode/encode so
// that unknown fields are kept as raw wire bytes and written back unchanged. Nested messages are
// decoded through the same (patched) namespace, so this covers every level of the model.
import { createRequire } from "node:module";
import type { onnx as OnnxNs } from "onnx-proto";

const require = createRequire(import.meta.url);
const onnxProto = require("onnx-proto") as { onnx: typeof OnnxNs };
// The same protobufjs instance onnx-proto uses (npm dedupes it), so Reader instanceof checks hold.
const protobuf = require("protobufjs/minimal") as typeof import("protobufjs");

export const onnx = onnxProto.onnx;
export type ModelProto = OnnxNs.IModelProto;
export type GraphProto = OnnxNs.IGraphProto;
export type NodeProto = OnnxNs.INodeProto;
export type TensorProto = OnnxNs.ITensorProto;
export type AttributeProto = OnnxNs.IAttributeProto;
export type ValueInfoProto = OnnxNs.IValueInfoProto;

/** Raw wire bytes of fields this schema does not know, per decoded message. */
const UNKNOWN = "$unknown";

type Codec = {
  decode: (r: unknown, len?: number) => Record<string, unknown>;
  encode: (m: Record<string, unknown>, w?: unknown) => unknown;
};

function knownFieldNumbers(decode: Function): Set<number> {
  // The generated decoder switches on the field number: `case 7:`. This is the schema's own list.
  const known = new Set<number>();
  for (const m of decode.toString().matchAll(/case (\d+):/g)) known.add(Number(m[1]));
  return known;
}

function patch(type: Codec): void {
  const decode = type.decode;
  const encode = type.encode;
  const known = knownFieldNumbers(decode);
  if (known.size === 0) throw new Error("onnx-proto: cannot read the schema of a message type");
  const Reader = protobuf.Reader;
  type ReaderT = InstanceType<typeof Reader> & { buf: Uint8Array };
  type WriterT = { _push: (fn: Function, len: number, val: unknown) => unknown };
  type CodecFn = (this: Codec, ...a: unknown[]) => unknown;
  (type as unknown as { decode: CodecFn }).decode = function (this: Codec, r: unknown, length?: unknown) {
    const reader = (r instanceof Reader ? r : Reader.create(r as Uint8Array)) as ReaderT;
    const start = reader.pos;
    const end = length === undefined ? reader.len : reader.pos + (length as number);
    const message = decode.call(this, reader, length as number | undefined);
    let unknown: Uint8Array[] | undefined;
    const scan = Reader.create(reader.buf) as ReaderT;
    scan.pos = start;
    scan.len = end;
    while (scan.pos < end) {
      const at = scan.pos;
      const tag = scan.uint32();
      scan.skipType(tag & 7);
      if (!known.has(tag >>> 3)) (unknown ??= []).push(reader.buf.subarray(at, scan.pos));
    }
    if (unknown) Object.defineProperty(message, UNKNOWN, { value: unknown, enumerable: false, writable: true });
    return message;
  };
  (type as unknown as { encode: CodecFn }).encode = function (this: Codec, m: unknown, w?: unknown) {
    const writer = encode.call(this, m as Record<string, unknown>, w) as WriterT;
    const unknown = (m as Record<string, unknown>)[UNKNOWN] as Uint8Array[] | undefined;
    if (unknown)
      for (const raw of unknown)
        writer._push((val: Uint8Array, buf: Uint8Array, pos: number) => buf.set(val, pos), raw.length, raw);
    return writer;
  };
}

let patched = false;
function patchAll(ns: Record<string, unknown> = onnx as unknown as Record<string, unknown>): void {
  for (const key of Object.keys(ns)) {
    const value = ns[key] as unknown;
    if (typeof value === "function" && typeof (value as unknown as Codec).decode === "function") {
      patch(value as unknown as Codec);
      patchAll(value as unknown as Record<string, unknown>); // nested types, e.g. TensorProto.Segment
    }
  }
}

function ensurePatched(): void {
  if (!patched) {
    patchAll();
    patched = true;
  }
}

/** Number of unknown (newer-schema) fields carried by a message, for tests and reports. */
export function unknownFieldCount(message: object): number {
  return ((message as Record<string, unknown>)[UNKNOWN] as unknown[] | undefined)?.length ?? 0;
}

export function decodeModel(bytes: Uint8Array): ModelProto {
  ensurePatched();
  return onnx.ModelProto.decode(bytes) as ModelProto;
}

export function encodeModel(model: ModelProto): Uint8Array {
  ensurePatched();
  return onnx.ModelProto.encode(model as OnnxNs.ModelProto).finish();
}

export function decodeTensor(bytes: Uint8Array): TensorProto {
  ensurePatched();
  return onnx.TensorProto.decode(bytes);
}

/** Convert protobufjs int64 values (number or Long) to a JS number, refusing unsafe magnitudes. */
export function toNumber(v: unknown): number {
  if (typeof v === "number") return v;
  if (v && typeof v === "object" && "toNumber" in v) {
    const long = v as { toNumber(): number; high: number; low: number };
    const n = long.toNumber();
    if (!Number.isSafeInteger(n)) throw new RangeError(`int64 value out of safe range`);
    return n;
  }
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "string") return Number(v);
  throw new TypeError(`not an integer: ${String(v)}`);
}
