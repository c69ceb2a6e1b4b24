// The protobuf layer: onnx-proto's generated codec, made lossless.
//
// onnx-proto carries the ONNX 1.10 schema and its generated decoders skip fields they do not
// know (e.g. fields added by newer ONNX releases). We wrap every message type's decode/encode so
// that unknown fields are kept as raw wire bytes and written back unchanged. Nested messages are
// decoded through the same (patched) namespace, so this covers every level of the model.
// Both packages are CommonJS: their default import is module.exports, in Node and in the web
// app's bundle alike (no createRequire, so this file has no Node import).
import onnxProto from "onnx-proto";
import type { onnx as OnnxNs } from "onnx-proto";
// The same protobufjs instance onnx-proto uses (npm dedupes it), so Reader instanceof checks hold.
import protobufMinimal from "protobufjs/minimal.js";

const protobuf = protobufMinimal as unknown as typeof import("protobufjs");

export const onnx = onnxProto.onnx;
export type ModelProto = OnnxNs.IModelProto;
export type GraphProto = OnnxNs.IGraphProto;
export type NodeProto = OnnxNs.INodeProto;
export type TensorProto = OnnxNs.ITensorProto;
export type AttributeProto = OnnxNs.IAttributeProto;
export type ValueInfoProto = OnnxNs.IValueInfoProto;

/** Raw wire bytes of fields this schema does not know, per decoded message. */
const UNKNOWN = "$unknown";
/** Per decoded message: field number -> whether that repeated scalar field was written packed. */
const PACKING = "$packing";
/** Per TensorProto loaded from a file: its raw_data, left in the file (see StoredBytes). */
const STORED = "$stored";

/**
 * Bytes a decoded message refers to without holding them: a large initializer's raw_data left in
 * the model file at load (io.ts), read when a pass or the writer needs it. Shallow copies of the
 * message keep the reference (copyWireInfo), so an untouched weight is written straight from the file.
 */
export interface StoredBytes {
  readonly length: number;
  /** A fresh buffer of `length` bytes (offset 0: aligned for any typed array view). */
  read(): Uint8Array;
}

/** The raw_data `t` leaves in its file, if any (its rawData field is then empty). */
export function storedRawData(t: object): StoredBytes | undefined {
  return (t as Record<string, unknown>)[STORED] as StoredBytes | undefined;
}

export function setStoredRawData(t: object, stored: StoredBytes): void {
  Object.defineProperty(t, STORED, { value: stored, enumerable: false, writable: true, configurable: true });
}

// onnx-proto's generated encoder packs every repeated scalar (proto3 style), but onnx.proto is
// proto2: only TensorProto's *_data fields are [packed = true]; dims, AttributeProto.ints/floats
// and SparseTensorProto.dims are written unpacked by ONNX's own serializer. We write each such
// field the way the original file did, and new messages the way onnx.proto says.
const PACKED_IN_ONNX_PROTO: Record<string, ReadonlySet<number>> = { TensorProto: new Set([4, 5, 7, 10, 11]) };

/** Wire type of a scalar written by protobufjs Writer method `m`. */
function scalarWireType(m: string): number {
  if (m === "float" || m === "fixed32" || m === "sfixed32") return 5;
  if (m === "double" || m === "fixed64" || m === "sfixed64") return 1;
  return 0;
}

interface FieldInfo { name: string; id: number }
interface RepeatedScalar extends FieldInfo { method: string; wireType: number; packedByDefault: boolean }

/** Fields (ascending by number, the order the generated encoder writes them) and repeated scalars. */
function schemaFields(typeName: string, encode: Function): { fields: FieldInfo[]; repeated: Map<number, RepeatedScalar> } {
  const src = encode.toString();
  const fields: FieldInfo[] = [];
  for (const m of src.matchAll(/message\.(\w+) != null[^]*?\/\* id (\d+), wireType/g)) fields.push({ name: m[1]!, id: Number(m[2]) });
  fields.sort((a, b) => a.id - b.id);
  const repeated = new Map<number, RepeatedScalar>();
  const packedDefault = PACKED_IN_ONNX_PROTO[typeName] ?? new Set<number>();
  for (const m of src.matchAll(/\/\* id (\d+), wireType 2 =\*\/\d+\)\.fork\(\);\s*for \(var i = 0; i < message\.(\w+)\.length; \+\+i\)\s*writer\.(\w+)\(/g)) {
    const id = Number(m[1]);
    repeated.set(id, { name: m[2]!, id, method: m[3]!, wireType: scalarWireType(m[3]!), packedByDefault: packedDefault.has(id) });
  }
  return { fields, repeated };
}

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

function patch(type: Codec, typeName: string): void {
  const decode = type.decode;
  const encode = type.encode;
  const known = knownFieldNumbers(decode);
  if (known.size === 0) throw new Error("onnx-proto: cannot read the schema of a message type");
  const { fields, repeated } = schemaFields(typeName, encode);
  if (repeated.size > 0 && fields.length === 0) throw new Error(`onnx-proto: cannot read the fields of ${typeName}`);
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
    let packing: Record<number, boolean> | undefined;
    const scan = Reader.create(reader.buf) as ReaderT;
    scan.pos = start;
    scan.len = end;
    while (scan.pos < end) {
      const at = scan.pos;
      const tag = scan.uint32();
      scan.skipType(tag & 7);
      const id = tag >>> 3;
      if (!known.has(id)) (unknown ??= []).push(reader.buf.subarray(at, scan.pos));
      else if (repeated.has(id)) (packing ??= {})[id] ??= (tag & 7) === 2;
    }
    if (unknown) Object.defineProperty(message, UNKNOWN, { value: unknown, enumerable: false, writable: true });
    if (packing) Object.defineProperty(message, PACKING, { value: packing, enumerable: false, writable: true });
    return message;
  };
  type ScalarWriter = WriterT & Record<string, (v: unknown) => ScalarWriter> & { uint32(v: number): ScalarWriter };
  (type as unknown as { encode: CodecFn }).encode = function (this: Codec, m: unknown, w?: unknown) {
    const msg = m as Record<string, unknown>;
    // Repeated scalars to write unpacked: those the original wrote so, or onnx.proto's default.
    let unpacked: RepeatedScalar[] | undefined;
    if (repeated.size > 0) {
      const packing = msg[PACKING] as Record<number, boolean> | undefined;
      for (const r of repeated.values()) {
        const values = msg[r.name] as unknown[] | undefined;
        if (values && values.length > 0 && !(packing?.[r.id] ?? r.packedByDefault)) (unpacked ??= []).push(r);
      }
    }
    let writer: WriterT;
    if (!unpacked) writer = encode.call(this, msg, w) as WriterT;
    else {
      // The generated encoder writes fields in ascending number order; encode the runs of fields
      // between the unpacked ones through it and write the unpacked ones in place, by hand.
      unpacked.sort((a, b) => a.id - b.id);
      writer = (w ?? protobuf.Writer.create()) as WriterT;
      let from = 0;
      const encodeRange = (lo: number, hi: number) => {
        const part: Record<string, unknown> = {};
        for (const f of fields)
          if (f.id > lo && f.id < hi && Object.prototype.hasOwnProperty.call(msg, f.name)) part[f.name] = msg[f.name];
        if (Object.keys(part).length > 0) encode.call(this, part, writer);
      };
      for (const r of unpacked) {
        encodeRange(from, r.id);
        const sw = writer as ScalarWriter;
        for (const v of msg[r.name] as unknown[]) sw.uint32((r.id << 3) | r.wireType)[r.method]!(v);
        from = r.id;
      }
      encodeRange(from, Infinity);
    }
    const unknown = msg[UNKNOWN] as Uint8Array[] | undefined;
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
      patch(value as unknown as Codec, key);
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

/** Copy what a decoded message remembers of its wire form (unknown fields, packing) onto a copy of it. */
export function copyWireInfo(from: object, to: object): void {
  for (const key of [UNKNOWN, PACKING, STORED]) {
    const value = (from as Record<string, unknown>)[key];
    if (value !== undefined) Object.defineProperty(to, key, { value, enumerable: false, writable: true, configurable: true });
  }
}

/** Number of unknown (newer-schema) fields carried by a message, for tests and reports. */
/** A shallow copy of a decoded message that keeps its unknown fields and wire-layout notes. */
export function shallowCopy<T extends object>(m: T): T {
  const copy = Object.create(Object.getPrototypeOf(m)) as T;
  Object.assign(copy, m);
  copyWireInfo(m, copy);
  return copy;
}

export function unknownFieldCount(message: object): number {
  return ((message as Record<string, unknown>)[UNKNOWN] as unknown[] | undefined)?.length ?? 0;
}

export function decodeModel(bytes: Uint8Array): ModelProto {
  ensurePatched();
  return onnx.ModelProto.decode(bytes) as ModelProto;
}

export function encodeTensor(t: TensorProto): Uint8Array {
  ensurePatched();
  return onnx.TensorProto.encode(t as OnnxNs.TensorProto).finish();
}

export function encodeGraph(g: GraphProto): Uint8Array {
  ensurePatched();
  return onnx.GraphProto.encode(g as OnnxNs.GraphProto).finish();
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
