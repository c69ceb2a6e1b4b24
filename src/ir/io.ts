// Loading and saving model files: validation on the way in (so passes can trust the graph), atomic
// writes on the way out (temp file + rename: the output path holds the old file or the new one).
// The bytes themselves are decoded and encoded by bytes.ts, which the web app shares.
import * as fs from "node:fs";
import * as path from "node:path";
import { decodeModelBytes, encodeParts, externalLocation, modelParts, partBytes, type ExternalFiles, type Part } from "./bytes.js";
import { ModelError, UsageError } from "./errors.js";
import { Model } from "./graph.js";
import { onnx, setStoredRawData, type ModelProto, type StoredBytes, type TensorProto } from "./proto.js";
import { scanSkeleton } from "./skeleton.js";
import { Tensor, rawBytes } from "./tensor.js";

export { PROTOBUF_LIMIT, modelToBytes, validateGraph } from "./bytes.js";

/** Initializers whose raw_data is at least this large stay in the model file until read (skeleton.ts). */
const STORED_MIN_BYTES = 64 * 1024;

/**
 * Load a model file. Large weights are not read here: each is read from the file when a pass or
 * the writer needs it (peak memory holds no copy of the whole input). The file must therefore stay
 * as it is while the model is in use; a file replaced or deleted meanwhile is still read (the model
 * keeps it open), one changed in place makes the next read fail with a ModelError saying so.
 */
export function loadModel(file: string): Model {
  const cannotRead = (e: unknown): never => {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new ModelError(`${file}: no such file`);
    if (code === "EISDIR") throw new ModelError(`${file}: is a directory, not an ONNX file`);
    throw new ModelError(`${file}: cannot read (${code ?? (e as Error).message})`);
  };
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (e) {
    return cannotRead(e);
  }
  let keepOpen = false;
  try {
    const opened = openedFile(fd, file);
    const skeleton = opened.isFile ? scanSkeleton(opened.source, STORED_MIN_BYTES) : undefined;
    if (skeleton) {
      let m: Model | undefined;
      try {
        // As a Buffer, like readFileSync's: the decoder then takes the same path for both.
        const bytes = Buffer.from(skeleton.bytes.buffer, skeleton.bytes.byteOffset, skeleton.bytes.byteLength);
        m = modelFromBytes(bytes, file, (proto) => {
          const inits = proto.graph?.initializer ?? [];
          if (inits.length !== skeleton.stored.length) throw new Error("initializers do not match the scan");
          inits.forEach((t, i) => {
            const range = skeleton.stored[i];
            if (range) setStoredRawData(t, opened.stored(range.offset, range.length));
          });
        });
      } catch {
        // Read whole below: the ordinary decoder words the error.
      }
      if (m) {
        keepOpen = skeleton.stored.some((r) => r);
        if (keepOpen) opened.closeWhenUnreachable();
        return m;
      }
    }
    let bytes: Uint8Array;
    try {
      bytes = fs.readFileSync(fd);
    } catch (e) {
      return cannotRead(e);
    }
    return modelFromBytes(bytes, file);
  } finally {
    if (!keepOpen) fs.closeSync(fd);
  }
}

/** An open model file: random access for the scan, and reads of the raw data left in it. */
function openedFile(fd: number, file: string) {
  const at = fs.fstatSync(fd);
  const where = path.resolve(file);
  // A file kept open is still read after a rename or unlink replaces it; a write in place would
  // change the bytes under the model: every read checks that the file's size and modification
  // time are the ones scanned (not its ctime: an unlink or rename over it changes that).
  const same = (st: fs.Stats) => st.size === at.size && st.mtimeMs === at.mtimeMs;
  const handle: OpenHandle = { fd };
  /** Once the model keeps the file: the fd counts among the open model files (touch). */
  let kept = false;
  /** The open fd: the model's own, or (closed to bound the process's open files) the file opened again. */
  const fdOf = (): number => {
    if (handle.fd !== undefined) {
      if (kept) touch(handle);
      return handle.fd;
    }
    let again: number;
    try {
      again = fs.openSync(where, "r");
    } catch {
      throw new ModelError(`${file}: deleted or moved since it was loaded (its weights are read from it when needed): load it again`);
    }
    const st = fs.fstatSync(again);
    if (st.dev !== at.dev || st.ino !== at.ino) {
      fs.closeSync(again);
      throw new ModelError(`${file}: replaced since it was loaded (its weights are read from it when needed): load it again`);
    }
    handle.fd = again;
    touch(handle);
    return again;
  };
  const readAt = (offset: number, length: number): Uint8Array => {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fdOf(), out, done, length - done, offset + done);
      if (n === 0) throw new ModelError(`${file}: ended after ${offset + done} bytes while reading a weight (changed since it was loaded?)`);
      done += n;
    }
    return out;
  };
  // Every read() holds `holder`: the file stays open (or reopenable) while a tensor can read from it.
  const holder = { handle };
  return {
    isFile: at.isFile(),
    source: { size: at.size, read: readAt },
    stored(offset: number, length: number): StoredBytes {
      return {
        length,
        read() {
          if (!same(fs.fstatSync(fdOf()))) throw new ModelError(`${file}: changed since it was loaded (its weights are read from it when needed): load it again`);
          void holder;
          return readAt(offset, length);
        },
      };
    },
    closeWhenUnreachable(): void {
      kept = true;
      fileCloser.register(holder, handle);
      touch(handle);
    },
  };
}

/** A model file's fd, undefined while closed (least recently read first when too many are open). */
interface OpenHandle {
  fd: number | undefined;
}

/**
 * Model files kept open, least recently read first. Models are released by the garbage collector,
 * which runs on memory pressure, not on open files: a process loading model after model (a test
 * suite, a service) would otherwise hit the open-file limit (1024 by default on Linux) after ~1000
 * loads. Past MAX_OPEN_MODEL_FILES the oldest is closed; its model reopens the file by path when it
 * reads again, and refuses (ModelError) if that is no longer the same file.
 */
const openHandles = new Set<OpenHandle>();
const MAX_OPEN_MODEL_FILES = 64;

function touch(h: OpenHandle): void {
  openHandles.delete(h);
  openHandles.add(h);
  for (const old of openHandles) {
    if (openHandles.size <= MAX_OPEN_MODEL_FILES) break;
    openHandles.delete(old);
    closeHandle(old);
  }
}

function closeHandle(h: OpenHandle): void {
  if (h.fd === undefined) return;
  try {
    fs.closeSync(h.fd);
  } catch {
    // Already closed: nothing to release.
  }
  h.fd = undefined;
}

const fileCloser = new FinalizationRegistry<OpenHandle>((h) => {
  openHandles.delete(h);
  closeHandle(h);
});

/**
 * Decode and validate; `file` names the model in errors and anchors external data (in its folder).
 * `prepare` sees the decoded proto before anything reads it (loadModel: the raw data left in the file).
 */
export function modelFromBytes(bytes: Uint8Array, file = "<memory>", prepare?: (proto: ModelProto) => void): Model {
  if (file === "<memory>") return decodeModelBytes(bytes, file, undefined, prepare);
  const baseDir = path.dirname(path.resolve(file));
  const m = decodeModelBytes(bytes, file, folderFiles(baseDir, file), prepare);
  // The files its data comes from (checked to exist at decode), so no output is written over one.
  const sources = new Set([path.resolve(file)]);
  for (const t of m.graph.initializers.values()) if (t.external) sources.add(path.join(baseDir, externalLocation(t.external.location, t.name)));
  return new Model(m.original, m.graph, m.path, [...sources]);
}

/** External data files in the model's folder (locations are checked by bytes.ts before they get here). */
function folderFiles(baseDir: string, file: string): ExternalFiles {
  // A symlink (the file or a folder on its way) may point out of the folder: the real path must stay
  // inside the model's real folder, as onnxruntime requires, so a model cannot make us read any file.
  let realBase: string | undefined;
  // Each data file as first seen (at load: decoding checks every external tensor's size). Its
  // weights are read when needed, so a file replaced or changed in place since would give other
  // weights than the model was loaded with: every later open checks it is the same file, unchanged.
  const seen = new Map<string, fs.Stats>();
  const sameFile = (a: fs.Stats, b: fs.Stats) => a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
  const open = (location: string, tensorName: string): number => {
    const { fd, real } = openReal(location, tensorName);
    try {
      const st = fs.fstatSync(fd);
      const first = seen.get(real);
      if (!first) seen.set(real, st);
      else if (!sameFile(first, st))
        throw new ModelError(`initializer '${tensorName}': external data file '${location}' beside ${file} was replaced or changed since the model was loaded (its weights are read from it when needed): load the model again`);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return fd;
  };
  const openReal = (location: string, tensorName: string): { fd: number; real: string } => {
    let real: string;
    try {
      realBase ??= fs.realpathSync(baseDir);
      real = fs.realpathSync(path.join(baseDir, location));
    } catch {
      throw new ModelError(`initializer '${tensorName}': external data file '${location}' not found beside ${file}`);
    }
    const rel = path.relative(realBase, real);
    if (rel === "" || rel === ".." || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel))
      throw new ModelError(`initializer '${tensorName}': external data file '${location}' resolves to ${real}, outside the folder of ${file} (refused)`);
    try {
      return { fd: fs.openSync(real, "r"), real };
    } catch {
      throw new ModelError(`initializer '${tensorName}': external data file '${location}' not found beside ${file}`);
    }
  };
  return {
    size(location, tensorName) {
      const fd = open(location, tensorName);
      try {
        const st = fs.fstatSync(fd);
        if (!st.isFile()) throw new ModelError(`initializer '${tensorName}': external data location '${location}' is not a file`);
        return st.size;
      } finally {
        fs.closeSync(fd);
      }
    },
    read(location, offset, length, tensorName) {
      const fd = open(location, tensorName);
      try {
        const out = new Uint8Array(length);
        let done = 0;
        while (done < length) {
          const n = fs.readSync(fd, out, done, length - done, offset + done);
          if (n === 0) throw new ModelError(`initializer '${tensorName}': external data '${location}' ended after ${offset + done} bytes`);
          done += n;
        }
        return out;
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}

export interface SaveOptions {
  /** Write tensors of at least `threshold` bytes to `<file>.data` beside the model. */
  externalData?: boolean;
  externalThreshold?: number;
}

/** The files saveModel(model, file, options) writes: the model, then its external data file if any. */
export function outputFiles(file: string, options: SaveOptions = {}): string[] {
  return options.externalData ? [file, path.join(path.dirname(file), path.basename(file) + ".data")] : [file];
}

/** What a path names for aliasing: the directory entry a rename would replace, and the file it reaches. */
interface FileIdentity {
  /** Real folder + name, the name itself not followed (a rename replaces a symlink, not its target). */
  entry: string;
  /** Real path with every symlink followed (the file's contents are read there). */
  real: string;
  /** device:inode when the file exists (hard links share it). */
  inode?: string;
}

function identify(file: string): FileIdentity {
  const abs = path.resolve(file);
  let dir = path.dirname(abs);
  try {
    dir = fs.realpathSync(dir);
  } catch {
    // A folder that does not exist: nothing in it can be an input.
  }
  const entry = path.join(dir, path.basename(abs));
  let real = entry, inode: string | undefined;
  try {
    real = fs.realpathSync(abs);
    const st = fs.statSync(abs);
    inode = `${st.dev}:${st.ino}`;
  } catch {
    // Absent (or a dangling link): it holds no input's data.
  }
  return { entry, real, inode };
}

/**
 * Refuse (UsageError, nothing written) to write any output file over a file `model`'s data comes
 * from: the same path, reached through symlinks or `..`, or a hard link of it. Writes go through
 * temp files and renames, so the input's bytes would not change in place, but the rename would
 * replace the file the input model names (it would then read our output, or lose its weights).
 */
export function checkOutputAliasing(model: Model, file: string, options: SaveOptions = {}): void {
  const inputs = model.sources.map((f) => ({ file: f, ...identify(f) }));
  if (inputs.length === 0) return;
  for (const out of outputFiles(file, options)) {
    const o = identify(out);
    const hit = inputs.find((i) => i.entry === o.entry || i.real === o.entry || i.real === o.real || (o.inode !== undefined && i.inode === o.inode));
    if (!hit) continue;
    const what = hit.file === model.sources[0] ? "the input model" : "external data the input model reads";
    throw new UsageError(`${out}: is ${what} (${hit.file}${hit.real !== hit.file ? ` → ${hit.real}` : ""}); write the output elsewhere`);
  }
}

export function saveModel(model: Model, file: string, options: SaveOptions = {}): { bytes: number; dataBytes: number } {
  const dir = path.dirname(path.resolve(file));
  try {
    if (!fs.statSync(dir).isDirectory()) throw new Error();
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new UsageError(`${file}: cannot write (folder ${dir} does not exist or is not writable)`);
  }
  checkOutputAliasing(model, file, options);
  let dataBytes = 0;
  const tmpFiles: string[] = [];
  const renames: [string, string][] = [];
  try {
    let parts: Part[];
    if (options.externalData) {
      const proto = model.toProto();
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
          writeAllAt(fd, bytes, offset);
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
      parts = encodeParts(proto);
    } else {
      parts = modelParts(model, file);
    }
    const tmp = tempName(file);
    tmpFiles.push(tmp);
    const written = writeSynced(tmp, parts);
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

/**
 * Test hook: REPARAM_ONNX_TEST_WRITE_DELAY_MS pauses a write halfway, so a test can kill the
 * process mid-write and check that the output path never holds a partial model.
 */
function testPauseMidWrite(): void {
  const ms = Number(process.env.REPARAM_ONNX_TEST_WRITE_DELAY_MS ?? 0);
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Writes of at most this many bytes (one very large write is slower here than several). */
const WRITE_CHUNK = 8 << 20;

/** All of `bytes` at `position` (a write may write less than asked). */
function writeAllAt(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += fs.writeSync(fd, bytes, done, Math.min(WRITE_CHUNK, bytes.length - done), position + done);
}

/**
 * Write `parts` one after the other (raw data still in the input file is read one part at a time)
 * and fsync (the rename that follows must not publish a file whose bytes are not on disk yet);
 * returns the byte count.
 */
function writeSynced(file: string, parts: Part[]): number {
  const total = parts.reduce((n, b) => n + b.length, 0);
  const half = total >> 1;
  const fd = fs.openSync(file, "w");
  const writeAll = (b: Uint8Array) => {
    let done = 0;
    while (done < b.length) done += fs.writeSync(fd, b, done, Math.min(WRITE_CHUNK, b.length - done));
  };
  try {
    let written = 0;
    let paused = false;
    const pause = () => {
      if (!paused) testPauseMidWrite();
      paused = true;
    };
    for (const part of parts) {
      const b = partBytes(part);
      if (written >= half) pause();
      const cut = half - written;
      if (cut > 0 && cut < b.length) {
        writeAll(b.subarray(0, cut));
        pause();
        writeAll(b.subarray(cut));
      } else writeAll(b);
      written += b.length;
    }
    fs.fsyncSync(fd);
    return written;
  } finally {
    fs.closeSync(fd);
  }
}
