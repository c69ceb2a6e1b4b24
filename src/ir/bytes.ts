// Models to and from bytes, without the file system: the part of loading and saving that the CLI
// (through io.ts, which adds files, folders and atomic writes) and the web app (web/, where the
// model and its external data are Blobs) share, so both read and write exactly the same bytes.
import { ModelError, UsageError } from "./errors.js";
import { Graph, Model, graphFromProto } from "./graph.js";
import { copyWireInfo, decodeModel, encodeGraph, encodeModel, encodeTensor, onnx, storedRawData, type ModelProto, type StoredBytes, type TensorProto } from "./proto.js";
import { varintBytes } from "./skeleton.js";
import { Tensor, rawBytes, type ExternalReader } from "./tensor.js";

/** A single protobuf message cannot exceed 2 GiB; larger models must put weights in a data file. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;

/**
 * The files a model's external data lives in, addressed by location relative to the model's
 * folder ("/"-separated, already checked to stay inside it). io.ts reads them from a folder, the
 * web app from the files the user picked.
 */
export interface ExternalFiles {
  /** Size of the file at `location`; throws a ModelError naming the tensor when there is none. */
  size(location: string, tensorName: string): number;
  /** `length` bytes from `offset` (in range: checked against size() first). */
  read(location: string, offset: number, length: number, tensorName: string): Uint8Array;
}

/**
 * Decode and validate a model. `file` names it in errors; `external` gives its external data
 * (without it, a model with external tensors fails when one is read).
 */
export function decodeModelBytes(bytes: Uint8Array, file = "<memory>", external?: ExternalFiles, prepare?: (proto: ModelProto) => void): Model {
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
  prepare?.(proto);
  const reader = external ? externalReader(external) : undefined;
  let graph: Graph;
  try {
    graph = graphFromProto(proto.graph, (t: TensorProto) => Tensor.fromProto(t, reader));
    validateGraph(graph);
    if (external) checkExternal(external, graph);
  } catch (e) {
    if (e instanceof ModelError) throw new ModelError(`${file}: ${e.message}`);
    throw new ModelError(`${file}: malformed model (${(e as Error).message})`);
  }
  return new Model(proto, graph, file === "<memory>" ? undefined : file);
}

/**
 * An external data location as a "/"-separated path inside the model's folder. Absolute paths
 * and paths that climb out of the folder are refused (a model must not read arbitrary files).
 * "\" counts as a separator too, so Windows-style escapes are caught on every platform.
 */
export function externalLocation(location: string, tensorName: string): string {
  if (/^[/\\]/.test(location) || /^[A-Za-z]:/.test(location))
    throw new ModelError(`initializer '${tensorName}': external data location '${location}' is absolute (must be relative to the model's folder)`);
  const parts: string[] = [];
  for (const part of location.split(/[/\\]/)) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (parts.length === 0) throw new ModelError(`initializer '${tensorName}': external data location '${location}' escapes the model's folder`);
      parts.pop();
    } else parts.push(part);
  }
  if (parts.length === 0) throw new ModelError(`initializer '${tensorName}': external data location '${location}' escapes the model's folder`);
  return parts.join("/");
}

/** The size of the file an external tensor lives in, after checking that its bytes are there. */
function checkedSize(files: ExternalFiles, location: string, offset: number, length: number, tensorName: string): void {
  const size = files.size(externalLocation(location, tensorName), tensorName);
  if (offset + length > size) throw new ModelError(`initializer '${tensorName}': external data '${location}' is ${size} bytes, needs ${offset + length}`);
}

/** At load: every external tensor's file exists inside the model's folder and holds its bytes (nothing is read). */
function checkExternal(files: ExternalFiles, graph: Graph): void {
  for (const t of graph.initializers.values())
    if (t.external) checkedSize(files, t.external.location, t.external.offset, t.byteLength, t.name);
}

function externalReader(files: ExternalFiles): ExternalReader {
  return (ref, tensorName) => {
    const length = ref.length ?? 0;
    checkedSize(files, ref.location, ref.offset, length, tensorName);
    return files.read(externalLocation(ref.location, tensorName), ref.offset, length, tensorName);
  };
}

/**
 * Structural checks: every tensor a node reads exists (also the outer tensors its subgraphs read),
 * the graph is acyclic, data sizes match. One pass over the nodes in order: no recursion.
 */
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
    const direct = n.inputs.filter((i) => i).length;
    n.reads().forEach((i, k) => {
      if (defined.has(i)) return;
      // reads() lists the node's non-empty inputs first, then what its subgraphs read from here.
      const who = `node '${n.name || n.opType}'${k < direct ? "" : " (in a subgraph)"}`;
      if (pending.has(i)) throw new ModelError(`${who} reads '${i}' before it is produced (cycle or unsorted graph)`);
      throw new ModelError(`${who} reads '${i}', which no node, input or initializer provides`);
    });
    for (const o of n.outputs) if (o) { defined.add(o); pending.delete(o); }
  }
  for (const o of graph.outputs)
    if (!defined.has(o.name ?? "")) throw new ModelError(`graph output '${o.name}' is not produced by any node, input or initializer`);
}

/** Serialize a model; returns the bytes (inline data only — callers that need external data use saveModel). */
export function modelToBytes(model: Model): Uint8Array {
  const proto = model.toProto();
  inlineExternal(proto.graph!, model);
  return encodeModel(withStoredRead(proto));
}

/**
 * A piece of an encoded model: bytes, or raw data still in the input file (read when written, so
 * the writer holds one weight of it at a time).
 */
export type Part = Uint8Array | StoredBytes;

export const partBytes = (p: Part): Uint8Array => (p instanceof Uint8Array ? p : p.read());

/**
 * The bytes of a single-file model exactly as saveModel writes them (no external data), in parts:
 * a model with large weights is never copied into one buffer (a Blob can be built from the parts).
 * `file` names the output in the error for models over protobuf's 2 GiB.
 */
export function modelToParts(model: Model, file = "<memory>"): Uint8Array[] {
  return modelParts(model, file).map(partBytes);
}

/** modelToParts, leaving the raw data of untouched weights in the input file until written. */
export function modelParts(model: Model, file = "<memory>"): Part[] {
  const proto = model.toProto();
  inlineExternal(proto.graph!, model);
  const total = [...model.graph.initializers.values()].reduce((s, t) => s + t.byteLength, 0);
  if (total > PROTOBUF_LIMIT)
    throw new UsageError(`${file}: weights are ${(total / 2 ** 30).toFixed(2)} GiB, over protobuf's 2 GiB limit: use --external-data`);
  return encodeParts(proto);
}

/** The raw data of `t`: in memory, or still in the input file. */
function rawDataOf(t: TensorProto): Part | undefined {
  if (t.rawData && t.rawData.length > 0) return t.rawData;
  return storedRawData(t);
}

/** `proto` with the raw data its graph's initializers left in the file read in (for encoding it whole). */
function withStoredRead(proto: ModelProto): ModelProto {
  const inits = proto.graph?.initializer ?? [];
  if (!inits.some((t) => !(t.rawData && t.rawData.length > 0) && storedRawData(t))) return proto;
  const graph = shallow(proto.graph!);
  graph.initializer = inits.map((t) => {
    const stored = !(t.rawData && t.rawData.length > 0) && storedRawData(t);
    if (!stored) return t;
    const copy = shallow(t);
    copy.rawData = stored.read();
    return copy;
  });
  const model = shallow(proto);
  model.graph = graph;
  return model;
}

/** Replace external initializers by inline copies of their data. */
export function inlineExternal(graph: NonNullable<ModelProto["graph"]>, model: Model): void {
  const byName = model.graph.initializers;
  graph.initializer = (graph.initializer ?? []).map((p) => {
    if (p.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) return p;
    const t = byName.get(p.name ?? "")!;
    return onnx.TensorProto.create({ name: t.name, dataType: t.dtype, dims: [...t.dims], rawData: rawBytes(t.data()) });
  });
}

/** Above this many bytes of weights, models are encoded without building the whole message in memory. */
const STREAM_THRESHOLD = 16 * 2 ** 20;

/** The encoding of `proto` in parts to write one after the other (one part for small models). */
export function encodeParts(proto: ModelProto): Part[] {
  const weightBytes = (proto.graph?.initializer ?? []).reduce((sum, t) => sum + (rawDataOf(t)?.length ?? 0), 0);
  return weightBytes >= STREAM_THRESHOLD ? streamedParts(proto) : [encodeModel(withStoredRead(proto))];
}

/**
 * A ModelProto whose weights are large, encoded without one buffer for the whole: the small parts
 * are encoded, each initializer's raw_data is a part of its own (its typed array's bytes).
 * Protobuf allows fields in any order, so the graph's initializers go last (ModelProto.graph = 7,
 * GraphProto.initializer = 5, TensorProto.raw_data = 9; length-delimited).
 */
function streamedParts(proto: ModelProto): Part[] {
  const graph = proto.graph!;
  const initializers = graph.initializer ?? [];
  const pieces: Part[][] = initializers.map((t) => {
    const raw = rawDataOf(t);
    const header = encodeTensorHeader(t, !!raw);
    const body = raw ? [header, Uint8Array.of(0x4a), varintBytes(raw.length), raw] : [header];
    const length = body.reduce((n, b) => n + b.length, 0);
    return [Uint8Array.of(0x2a), varintBytes(length), ...body];
  });
  const graphHead = encodeGraphWithout(graph);
  const graphLength = graphHead.length + pieces.reduce((n, p) => n + p.reduce((m, b) => m + b.length, 0), 0);
  const modelHead = encodeModel({ ...shallow(proto), graph: undefined } as ModelProto);
  return [modelHead, Uint8Array.of(0x3a), varintBytes(graphLength), graphHead, ...pieces.flat()];
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
