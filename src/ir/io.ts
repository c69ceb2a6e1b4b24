// Loading and saving model files: validation on the way in (so passes can trust the graph), atomic
// writes on the way out (temp file + rename: the output path holds the old file or the new one).
// The bytes themselves are decoded and encoded by bytes.ts, which the web app shares.
import * as fs from "node:fs";
import * as path from "node:path";
import { decodeModelBytes, encodeParts, modelToParts, type ExternalFiles } from "./bytes.js";
import { ModelError, UsageError } from "./errors.js";
import type { Model } from "./graph.js";
import { onnx, type TensorProto } from "./proto.js";
import { Tensor, rawBytes } from "./tensor.js";

export { PROTOBUF_LIMIT, modelToBytes, validateGraph } from "./bytes.js";

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

/** Decode and validate; `file` names the model in errors and anchors external data (in its folder). */
export function modelFromBytes(bytes: Uint8Array, file = "<memory>"): Model {
  return decodeModelBytes(bytes, file, file === "<memory>" ? undefined : folderFiles(path.dirname(path.resolve(file)), file));
}

/** External data files in the model's folder (locations are checked by bytes.ts before they get here). */
function folderFiles(baseDir: string, file: string): ExternalFiles {
  const open = (location: string, tensorName: string): number => {
    try {
      return fs.openSync(path.join(baseDir, location), "r");
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

export function saveModel(model: Model, file: string, options: SaveOptions = {}): { bytes: number; dataBytes: number } {
  const dir = path.dirname(path.resolve(file));
  try {
    if (!fs.statSync(dir).isDirectory()) throw new Error();
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new UsageError(`${file}: cannot write (folder ${dir} does not exist or is not writable)`);
  }
  let dataBytes = 0;
  const tmpFiles: string[] = [];
  const renames: [string, string][] = [];
  try {
    let parts: Uint8Array[];
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
      parts = encodeParts(proto);
    } else {
      parts = modelToParts(model, file);
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

/** Write `parts` one after the other and fsync; returns the byte count. */
function writeSynced(file: string, parts: Uint8Array[]): number {
  const total = parts.reduce((n, b) => n + b.length, 0);
  const half = total >> 1;
  const fd = fs.openSync(file, "w");
  const writeAll = (b: Uint8Array) => {
    let done = 0;
    while (done < b.length) done += fs.writeSync(fd, b, done, b.length - done);
  };
  try {
    let written = 0;
    let paused = false;
    const pause = () => {
      if (!paused) testPauseMidWrite();
      paused = true;
    };
    for (const b of parts) {
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
