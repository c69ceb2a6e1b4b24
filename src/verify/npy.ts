// NumPy .npy files (format versions 1.0, 2.0, 3.0), little-endian, C order: user inputs for
// verification and dumps of outputs. The header is checked against the file size before any
// array is allocated from the shape it declares.
import * as fs from "node:fs";
import { UsageError } from "../ir/errors.js";

export type NpyData = Float32Array | Float64Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

/** dtype names are onnxruntime's: float16 data holds IEEE half bits in a Uint16Array; bool holds 0/1 bytes. */
export type NpyDtype = "float32" | "float64" | "float16" | "int32" | "int64" | "uint8" | "bool";

export interface NpyArray {
  dims: number[];
  dtype: NpyDtype;
  data: NpyData;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** descr (without byte-order char) -> dtype and item size. */
const KINDS: Record<string, { dtype: NpyDtype; size: number }> = {
  f4: { dtype: "float32", size: 4 },
  f8: { dtype: "float64", size: 8 },
  f2: { dtype: "float16", size: 2 },
  i4: { dtype: "int32", size: 4 },
  i8: { dtype: "int64", size: 8 },
  u1: { dtype: "uint8", size: 1 },
  b1: { dtype: "bool", size: 1 },
};

const DESCR: Record<NpyDtype, string> = {
  float32: "<f4", float64: "<f8", float16: "<f2", int32: "<i4", int64: "<i8", uint8: "|u1", bool: "|b1",
};

const SUPPORTED = "<f4 <f8 <f2 <i4 <i8 |u1 |b1";

function fail(file: string, why: string): never {
  throw new UsageError(`${file}: ${why}`);
}

/** Parse the header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } */
function parseHeader(file: string, header: string): { descr: string; fortran: boolean; shape: number[] } {
  if (/['"]descr['"]\s*:\s*\[/.test(header)) fail(file, `unsupported .npy dtype (structured arrays are not supported; supported: ${SUPPORTED})`);
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(header);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header);
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header);
  if (!/^\s*\{/.test(header) || !descr || !fortran || !shape)
    fail(file, `not a valid .npy file (cannot read the header ${JSON.stringify(header.trim().slice(0, 120))})`);
  const parts = shape[1]!.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  const dims = parts.map((p) => {
    if (!/^\d+L?$/.test(p)) fail(file, `not a valid .npy file (shape entry '${p}' is not a non-negative integer)`);
    const n = Number(p.replace(/L$/, ""));
    if (!Number.isSafeInteger(n)) fail(file, `not a valid .npy file (shape entry ${p} is too large)`);
    return n;
  });
  return { descr: descr[1]!, fortran: fortran[1] === "True", shape: dims };
}

export function readNpy(file: string): NpyArray {
  return parseNpy(readDataFile(file, ".npy"), file);
}

/** A data file's bytes; a missing or unreadable file is a one-line UsageError naming it. */
export function readDataFile(file: string, kind: string): Uint8Array {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") fail(file, "no such file");
    if (code === "EISDIR") fail(file, `is a directory, not a ${kind} file`);
    fail(file, `cannot read (${code ?? (e as Error).message})`);
  }
}

/** Decode .npy bytes; `file` names the data in errors. */
export function parseNpy(bytes: Uint8Array, file = "<npy>"): NpyArray {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b))
    fail(file, "not a .npy file (bad magic; expected \\x93NUMPY)");
  const major = bytes[6]!;
  const minor = bytes[7]!;
  if (major < 1 || major > 3) fail(file, `unsupported .npy format version ${major}.${minor} (supported: 1.0, 2.0, 3.0)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let headerStart: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    headerStart = 10;
  } else {
    if (bytes.length < 12) fail(file, "truncated .npy file (header length missing)");
    headerLen = view.getUint32(8, true);
    headerStart = 12;
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > bytes.length) fail(file, `truncated .npy file (header of ${headerLen} bytes, file has ${bytes.length - headerStart} after the preamble)`);
  const headerBytes = bytes.subarray(headerStart, dataStart);
  const header = major === 3 ? new TextDecoder("utf-8").decode(headerBytes) : new TextDecoder("latin1").decode(headerBytes);
  const { descr, fortran, shape } = parseHeader(file, header);

  const m = /^([<>|=])([a-zA-Z]\d+)$/.exec(descr);
  const kind = m ? KINDS[m[2]!] : undefined;
  if (!m || !kind) fail(file, `unsupported .npy dtype '${descr}' (supported: ${SUPPORTED})`);
  const order = m[1]!;
  if (kind.size > 1 && order === ">") fail(file, `big-endian .npy data ('${descr}') is not supported: save it little-endian (supported: ${SUPPORTED})`);
  if (kind.size > 1 && order !== "<") fail(file, `unsupported .npy dtype '${descr}' (byte order must be '<'; supported: ${SUPPORTED})`);
  if (fortran) fail(file, "Fortran-order (column-major) .npy arrays are not supported: save it in C order (np.ascontiguousarray)");

  // Check the declared size against the file before allocating anything from it.
  let count = 1;
  for (const d of shape) {
    count *= d;
    if (!Number.isSafeInteger(count)) fail(file, `.npy shape (${shape.join(", ")}) is too large`);
  }
  const need = count * kind.size;
  const have = bytes.length - dataStart;
  if (have < need) fail(file, `truncated .npy file: shape (${shape.join(", ")}) of ${descr} needs ${need} data bytes, file has ${have}`);
  if (have > need) fail(file, `.npy file has ${have - need} bytes after the data for shape (${shape.join(", ")}) of ${descr}`);

  const buf = new ArrayBuffer(need);
  new Uint8Array(buf).set(bytes.subarray(dataStart, dataStart + need));
  let data: NpyData;
  switch (kind.dtype) {
    case "float32": data = new Float32Array(buf); break;
    case "float64": data = new Float64Array(buf); break;
    case "float16": data = new Uint16Array(buf); break;
    case "int32": data = new Int32Array(buf); break;
    case "int64": data = new BigInt64Array(buf); break;
    case "uint8": data = new Uint8Array(buf); break;
    case "bool": {
      const b = new Uint8Array(buf);
      for (let i = 0; i < b.length; i++) if (b[i]! > 1) b[i] = 1;
      data = b;
      break;
    }
  }
  return { dims: shape, dtype: kind.dtype, data };
}

function dtypeOf(data: NpyData): NpyDtype {
  if (data instanceof Float32Array) return "float32";
  if (data instanceof Float64Array) return "float64";
  if (data instanceof Uint16Array) return "float16";
  if (data instanceof Int32Array) return "int32";
  if (data instanceof BigInt64Array) return "int64";
  if (data instanceof Uint8Array) return "uint8";
  throw new UsageError(`cannot write ${(data as object).constructor.name} as .npy`);
}

/** Encode an array as .npy (version 1.0, or 2.0 when the header needs it). */
export function encodeNpy(dims: readonly number[], data: NpyData, dtype: NpyDtype = dtypeOf(data)): Uint8Array {
  const expected: Record<NpyDtype, Function> = {
    float32: Float32Array, float64: Float64Array, float16: Uint16Array, int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array, bool: Uint8Array,
  };
  if (!(data instanceof expected[dtype])) throw new UsageError(`.npy ${dtype} data must be a ${expected[dtype]!.name}, got ${data.constructor.name}`);
  if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new UsageError(`invalid .npy shape [${dims.join(", ")}]`);
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new UsageError(`.npy shape [${dims.join(", ")}] needs ${count} values, got ${data.length}`);
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(", ")})`;
  const dict = `{'descr': '${DESCR[dtype]}', 'fortran_order': False, 'shape': ${shape}, }`;
  let major = 1;
  let pre = 10;
  // Pad with spaces so that the data starts on a 64-byte boundary; the header ends with '\n'.
  let total = Math.ceil((pre + dict.length + 1) / 64) * 64;
  if (total - pre > 0xffff) {
    major = 2;
    pre = 12;
    total = Math.ceil((pre + dict.length + 1) / 64) * 64;
  }
  const headerLen = total - pre;
  const header = dict + " ".repeat(headerLen - dict.length - 1) + "\n";
  const out = new Uint8Array(total + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = major;
  out[7] = 0;
  const view = new DataView(out.buffer);
  if (major === 1) view.setUint16(8, headerLen, true);
  else view.setUint32(8, headerLen, true);
  for (let i = 0; i < header.length; i++) out[pre + i] = header.charCodeAt(i);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  if (dtype === "bool") for (let i = total; i < out.length; i++) if (out[i]! > 1) out[i] = 1;
  return out;
}

/** Write a .npy file. `dtype` defaults from the array type (Uint16Array = float16 bits, Uint8Array = uint8; pass "bool" for booleans). */
export function writeNpy(file: string, dims: readonly number[], data: NpyData, dtype?: NpyDtype): void {
  const bytes = encodeNpy(dims, data, dtype);
  try {
    fs.writeFileSync(file, bytes);
  } catch (e) {
    fail(file, `cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}
