// Loading and saving models: validation on the way in (so passes can trust the graph), atomic
// writes on the way out (temp file + rename: the output path holds the old file or the new one).
import * as fs from "node:fs";
import * as path from "node:path";
import { ModelError, UsageError } from "./errors.js";
import { Graph, Model, graphFromProto } from "./graph.js";
import { copyWireInfo, decodeModel, encodeGraph, encodeModel, encodeTensor, onnx, type ModelProto, type TensorProto } from "./proto.js";
import { Tensor, rawBytes, type ExternalReader, type ExternalRef } from "./tensor.js";

/** A single protobuf message cannot exceed 2 GiB; larger models must put weights in a data file. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;

export function loadModel(file: string): Model {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new ModelError(`${file}: no such file`);
    if (code === "EISDIR") throw new ModelError(`${file}: is a directory, not an ONNX file`);
    throw new ModelError(`${file}: cannot read (${code ?? (e as Error).message})`);
  }
  return modelFromBytes(bytes, file);
}

/** Decode and validate; `file` names the model in errors and anchors external data. */
export function modelFromBytes(bytes: Uint8Array, file = "<memory>"): Model {
  let proto: ModelProto;
  try {
    proto = decodeModel(bytes);
  } catch (e) {
    throw new ModelError(`${file}: not a valid ONNX model (protobuf decode failed: ${(e as Error).message})`);
  }
  if (!proto.graph || !Object.prototype.hasOwnProperty.call(proto, "graph"))
    throw new ModelError(`${file}: not an ONNX model (no graph)`);
  if (!proto.opsetImport || proto.opsetImport.length === 0)
    throw new ModelError(`${file}: not an ONNX model (no opset_import)`);
  const baseDir = file === "<memory>" ? undefined : path.dirname(path.resolve(file));
  const reader = baseDir ? externalReader(baseDir, file) : undefined;
  let graph: Graph;
  try {
    graph = graphFromProto(proto.graph, (t: TensorProto) => Tensor.fromProto(t, reader));
    validateGraph(graph);
    if (baseDir) checkExternal(baseDir, file, graph);
  } catch (e) {
    if (e instanceof ModelError) throw new ModelError(`${file}: ${e.message}`);
    throw new ModelError(`${file}: malformed model (${(e as Error).message})`);
  }
  return new Model(proto, graph, file === "<memory>" ? undefined : file);
}

/** Opens an external data file after checking its location; the caller closes the descriptor. */
function openExternal(baseDir: string, file: string, ref: ExternalRef, tensorName: string): { fd: number; size: number } {
  if (path.isAbsolute(ref.location)) throw new ModelError(`initializer '${tensorName}': external data location '${ref.location}' is absolute (must be relative to the model's folder)`);
  const target = path.resolve(baseDir, ref.location);
  const rel = path.relative(baseDir, target);
  if (rel === "" || rel === ".." || rel.startsWith(".." + path.sep) || path.isAbsolute(rel))
    throw new ModelError(`initializer '${tensorName}': external data location '${ref.location}' escapes the model's folder`);
  let fd: number;
  try {
    fd = fs.openSync(target, "r");
  } catch {
    throw new ModelError(`initializer '${tensorName}': external data file '${ref.location}' not found beside ${file}`);
  }
  let size: number;
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new ModelError(`initializer '${tensorName}': external data location '${ref.location}' is not a file`);
    size = st.size;
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  const length = ref.length ?? 0;
  if (ref.offset + length > size) {
    fs.closeSync(fd);
    throw new ModelError(`initializer '${tensorName}': external data '${ref.location}' is ${size} bytes, needs ${ref.offset + length}`);
  }
  return { fd, size };
}

/** At load: every external tensor's file exists inside the model's folder and holds its bytes (nothing is read). */
function checkExternal(baseDir: string, file: string, graph: Graph): void {
  for (const t of graph.initializers.values())
    if (t.external) fs.closeSync(openExternal(baseDir, file, { ...t.external, length: t.byteLength }, t.name).fd);
}

function externalReader(baseDir: string, file: string): ExternalReader {
  return (ref, tensorName) => {
    const { fd } = openExternal(baseDir, file, ref, tensorName);
    try {
      const length = ref.length ?? 0;
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const n = fs.readSync(fd, out, done, length - done, ref.offset + done);
        if (n === 0) throw new ModelError(`initializer '${tensorName}': external data '${ref.location}' ended after ${ref.offset + done} bytes`);
        done += n;
      }
      return out;
    } finally {
      fs.closeSync(fd);
    }
  };
}

/** Structural checks: every tensor a node reads exists, the graph is acyclic, data sizes match. */
export function validateGraph(graph: Graph): void {
  const defined = new Set<string>();
  for (const i of graph.inputs) defined.add(i.name ?? "");
  for (const [name, t] of graph.initializers) {
    t.validate();
    defined.add(name);
  }
  const producedBy = new Map<string, number>();
  graph.nodes.forEach((n, idx) => n.outputs.forEach((o) => o && producedBy.set(o, idx)));
  // Topological order check (ONNX requires it); a back edge means a cycle or misordering.
  const pending = new Set<string>(producedBy.keys());
  for (const n of graph.nodes) {
    for (const i of n.inputs) {
      if (!i || defined.has(i)) continue;
      if (pending.has(i)) {
        throw new ModelError(`node '${n.name || n.opType}' reads '${i}' before it is produced (cycle or unsorted graph)`);
      }
      if (n.hasSubgraph()) continue; // outer-scope names of subgraphs are resolved by the runtime
      throw new ModelError(`node '${n.name || n.opType}' reads '${i}', which no node, input or initializer provides`);
    }
    for (const o of n.outputs) if (o) { defined.add(o); pending.delete(o); }
  }
  for (const o of graph.outputs)
    if (!defined.has(o.name ?? "")) throw new ModelError(`graph output '${o.name}' is not produced by any node, input or initializer`);
}

export interface SaveOptions {
  /** Write tensors of at least `threshold` bytes to `<file>.data` beside the model. */
  externalData?: boolean;
  externalThreshold?: number;
}

/** Serialize a model; returns the bytes (inline data only — callers that need external data use saveModel). */
export function modelToBytes(model: Model): Uint8Array {
  const proto = model.toProto();
  inlineExternal(proto.graph!, model);
  return encodeModel(proto);
}

function inlineExternal(graph: NonNullable<ModelProto["graph"]>, model: Model): void {
  const byName = model.graph.initializers;
  graph.initializer = (graph.initializer ?? []).map((p) => {
    if (p.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) return p;
    const t = byName.get(p.name ?? "")!;
    return onnx.TensorProto.create({ name: t.name, dataType: t.dtype, dims: [...t.dims], rawData: rawBytes(t.data()) });
  });
}

export function saveModel(model: Model, file: string, options: SaveOptions = {}): { bytes: number; dataBytes: number } {
  const dir = path.dirname(path.resolve(file));
  try {
    if (!fs.statSync(dir).isDirectory()) throw new Error();
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new UsageError(`${file}: cannot write (folder ${dir} does not exist or is not writable)`);
  }
  const proto = model.toProto();
  let dataBytes = 0;
  const tmpFiles: string[] = [];
  const renames: [string, string][] = [];
  try {
    if (options.externalData) {
      const threshold = options.externalThreshold ?? 1024;
      const dataName = path.basename(file) + ".data";
      const dataPath = path.join(dir, dataName);
      const dataTmp = tempName(dataPath);
      tmpFiles.push(dataTmp);
      const fd = fs.openSync(dataTmp, "w");
      try {
        proto.graph!.initializer = [...model.graph.initializers.values()].map((t) => {
          if (t.byteLength < threshold) return inlineProto(t);
          const bytes = rawBytes(t.data());
          const offset = dataBytes;
          fs.writeSync(fd, bytes, 0, bytes.length, offset);
          dataBytes += bytes.length;
          return onnx.TensorProto.create({
            name: t.name, dataType: t.dtype, dims: [...t.dims],
            dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
            externalData: [
              { key: "location", value: dataName },
              { key: "offset", value: String(offset) },
              { key: "length", value: String(bytes.length) },
            ],
          });
        });
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      renames.push([dataTmp, dataPath]);
    } else {
      inlineExternal(proto.graph!, model);
      const total = [...model.graph.initializers.values()].reduce((s, t) => s + t.byteLength, 0);
      if (total > PROTOBUF_LIMIT)
        throw new UsageError(`${file}: weights are ${(total / 2 ** 30).toFixed(2)} GiB, over protobuf's 2 GiB limit: use --external-data`);
    }
    const tmp = tempName(file);
    tmpFiles.push(tmp);
    const weightBytes = (proto.graph?.initializer ?? []).reduce((sum, t) => sum + (t.rawData?.length ?? 0), 0);
    let written: number;
    if (weightBytes >= STREAM_THRESHOLD) written = writeStreamed(tmp, proto);
    else {
      const bytes = encodeModel(proto);
      writeSynced(tmp, bytes);
      written = bytes.length;
    }
    renames.push([tmp, file]);
    for (const [from, to] of renames) fs.renameSync(from, to);
    return { bytes: written, dataBytes };
  } catch (e) {
    for (const t of tmpFiles) fs.rmSync(t, { force: true });
    if (e instanceof UsageError || e instanceof ModelError) throw e;
    throw new UsageError(`${file}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

function inlineProto(t: Tensor): TensorProto {
  if (!t.external) return t.toProto();
  return onnx.TensorProto.create({ name: t.name, dataType: t.dtype, dims: [...t.dims], rawData: rawBytes(t.data()) });
}

function tempName(file: string): string {
  return path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`);
}

/** Above this many bytes of weights, models are written without building the whole message in memory. */
const STREAM_THRESHOLD = 16 * 2 ** 20;

function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Uint8Array.from(out);
}

/**
 * Write a ModelProto whose weights are large without encoding it into one buffer: the small parts
 * are encoded, each initializer's raw_data is written straight from its typed array. Protobuf
 * allows fields in any order, so the graph's initializers go last (ModelProto.graph = 7,
 * GraphProto.initializer = 5, TensorProto.raw_data = 9; length-delimited).
 */
function writeStreamed(file: string, proto: ModelProto): number {
  const graph = proto.graph!;
  const initializers = graph.initializer ?? [];
  const pieces: Uint8Array[][] = initializers.map((t) => {
    const raw = t.rawData && t.rawData.length > 0 ? t.rawData : undefined;
    const header = encodeTensorHeader(t, !!raw);
    const body = raw ? [header, Uint8Array.of(0x4a), varint(raw.length), raw] : [header];
    const length = body.reduce((n, b) => n + b.length, 0);
    return [Uint8Array.of(0x2a), varint(length), ...body];
  });
  const graphHead = encodeGraphWithout(graph);
  const graphLength = graphHead.length + pieces.reduce((n, p) => n + p.reduce((m, b) => m + b.length, 0), 0);
  const modelHead = encodeModel({ ...shallow(proto), graph: undefined } as ModelProto);
  const all = [modelHead, Uint8Array.of(0x3a), varint(graphLength), graphHead, ...pieces.flat()];
  const fd = fs.openSync(file, "w");
  let total = 0;
  try {
    for (const [k, b] of all.entries()) {
      if (k === all.length >> 1) testPauseMidWrite();
      let done = 0;
      while (done < b.length) done += fs.writeSync(fd, b, done, b.length - done);
      total += b.length;
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return total;
}

/** A copy of a decoded message that keeps its unknown fields and wire-layout notes. */
function shallow<T extends object>(m: T): T {
  const copy = Object.create(Object.getPrototypeOf(m)) as T;
  Object.assign(copy, m);
  copyWireInfo(m, copy);
  return copy;
}

function encodeTensorHeader(t: TensorProto, dropRaw: boolean): Uint8Array {
  const copy = shallow(t);
  if (dropRaw) delete (copy as { rawData?: unknown }).rawData;
  return encodeTensor(copy);
}

function encodeGraphWithout(g: NonNullable<ModelProto["graph"]>): Uint8Array {
  const copy = shallow(g);
  copy.initializer = [];
  return encodeGraph(copy);
}

/**
 * Test hook: REPARAM_ONNX_TEST_WRITE_DELAY_MS pauses a write halfway, so a test can kill the
 * process mid-write and check that the output path never holds a partial model.
 */
function testPauseMidWrite(): void {
  const ms = Number(process.env.REPARAM_ONNX_TEST_WRITE_DELAY_MS ?? 0);
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function writeSynced(file: string, bytes: Uint8Array): void {
  const fd = fs.openSync(file, "w");
  try {
    let done = 0;
    const half = bytes.length >> 1;
    while (done < half) done += fs.writeSync(fd, bytes, done, half - done);
    testPauseMidWrite();
    while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
