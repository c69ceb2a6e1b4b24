// Tensors: dims, element type and data as typed arrays. Data is decoded lazily from the original
// TensorProto; a tensor that no pass touched is written back from that proto unchanged.
import { DataType, bfloat16ToFloat, dtypeName, dtypeSize, floatToBfloat16, floatToHalf, halfToFloat, isKnownDtype } from "./dtype.js";
import { copyWireInfo, onnx, storedRawData, toNumber, type TensorProto } from "./proto.js";
import { ModelError } from "./errors.js";

export type TensorData = Float32Array | Float64Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array | Int8Array | Uint8Array | Int16Array;

/** Where an external tensor's bytes live: a file beside the model. */
export interface ExternalRef {
  location: string;
  offset: number;
  length: number | undefined;
}

/** Reads external bytes; supplied by the loader, which knows the model's folder and checks paths. */
export type ExternalReader = (ref: ExternalRef, tensorName: string) => Uint8Array;

/** The number of elements of `dims` (of its axes from `from` to `to`, when given). */
export function product(dims: readonly number[], from = 0, to = dims.length): number {
  let n = 1;
  for (let i = from; i < to; i++) n *= dims[i]!;
  return n;
}

function alignedCopy(bytes: Uint8Array, align: number): ArrayBuffer {
  if (bytes.byteOffset % align === 0 && bytes.byteLength % align === 0)
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const buf = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(buf).set(bytes);
  return buf;
}

function viewRaw(dtype: number, bytes: Uint8Array): TensorData {
  const size = dtypeSize(dtype);
  if (size === undefined || dtype === DataType.COMPLEX64 || dtype === DataType.COMPLEX128)
    throw new ModelError(`unsupported dtype ${dtypeName(dtype)}`);
  if (bytes.byteLength % size !== 0) throw new ModelError(`raw data of ${bytes.byteLength} bytes is not a whole number of ${dtypeName(dtype)} values`);
  // Views need aligned offsets; copy only when the protobuf slice is misaligned.
  const aligned = bytes.byteOffset % size === 0;
  const buffer = aligned ? bytes.buffer : alignedCopy(bytes, size);
  const offset = aligned ? bytes.byteOffset : 0;
  const n = bytes.byteLength / size;
  switch (dtype) {
    case DataType.FLOAT: return new Float32Array(buffer, offset, n);
    case DataType.DOUBLE: return new Float64Array(buffer, offset, n);
    case DataType.FLOAT16: case DataType.BFLOAT16: case DataType.UINT16: return new Uint16Array(buffer, offset, n);
    case DataType.INT16: return new Int16Array(buffer, offset, n);
    case DataType.INT32: return new Int32Array(buffer, offset, n);
    case DataType.UINT32: return new Uint32Array(buffer, offset, n);
    case DataType.INT64: return new BigInt64Array(buffer, offset, n);
    case DataType.UINT64: return new BigUint64Array(buffer, offset, n);
    case DataType.INT8: return new Int8Array(buffer, offset, n);
    default: return new Uint8Array(buffer, offset, n); // UINT8, BOOL
  }
}

function fromTypedFields(p: TensorProto): TensorData {
  const dtype = p.dataType ?? 0;
  switch (dtype) {
    case DataType.FLOAT: return Float32Array.from(p.floatData ?? []);
    case DataType.DOUBLE: return Float64Array.from(p.doubleData ?? []);
    case DataType.INT64: return BigInt64Array.from((p.int64Data ?? []).map((v) => BigInt(toNumber(v))));
    case DataType.UINT64: return BigUint64Array.from((p.uint64Data ?? []).map((v) => BigInt(toNumber(v))));
    case DataType.UINT32: return Uint32Array.from((p.uint64Data ?? []).map((v) => toNumber(v)));
    case DataType.INT32: return Int32Array.from(p.int32Data ?? []);
    case DataType.FLOAT16: case DataType.BFLOAT16: case DataType.UINT16: return Uint16Array.from(p.int32Data ?? []);
    case DataType.INT16: return Int16Array.from(p.int32Data ?? []);
    case DataType.INT8: return Int8Array.from(p.int32Data ?? []);
    case DataType.UINT8: case DataType.BOOL: return Uint8Array.from(p.int32Data ?? []);
    default: throw new ModelError(`unsupported dtype ${dtypeName(dtype)}`);
  }
}

/** Decoded copies at least this large are made again when needed rather than kept. */
const UNCACHED_COPY_BYTES = 1 << 20;

export class Tensor {
  private cached: TensorData | undefined;

  private constructor(
    public name: string,
    readonly dtype: number,
    readonly dims: readonly number[],
    /** The proto it was loaded from; undefined for tensors a pass created. */
    readonly original: TensorProto | undefined,
    readonly external: ExternalRef | undefined,
    private readonly readExternal: ExternalReader | undefined,
    data: TensorData | undefined,
  ) {
    this.cached = data;
  }

  static fromProto(p: TensorProto, readExternal?: ExternalReader): Tensor {
    const name = p.name ?? "";
    const dtype = p.dataType ?? 0;
    if (!isKnownDtype(dtype)) throw new ModelError(`initializer '${name}' has unknown dtype ${p.dataType}`);
    const dims = (p.dims ?? []).map((d) => toNumber(d));
    if (dims.some((d) => d < 0)) throw new ModelError(`initializer '${name}' has a negative dimension [${dims}]`);
    let external: ExternalRef | undefined;
    if (p.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
      const kv = new Map((p.externalData ?? []).map((e) => [e.key ?? "", e.value ?? ""]));
      const location = kv.get("location");
      if (!location) throw new ModelError(`initializer '${name}' is external but names no location`);
      const offset = Number(kv.get("offset") ?? 0);
      const length = kv.has("length") ? Number(kv.get("length")) : undefined;
      if (!Number.isSafeInteger(offset) || offset < 0 || (length !== undefined && (!Number.isSafeInteger(length) || length < 0)))
        throw new ModelError(`initializer '${name}' has an invalid external offset/length`);
      external = { location, offset, length };
    }
    return new Tensor(name, dtype, dims, p, external, readExternal, undefined);
  }

  static fromData(name: string, dtype: number, dims: readonly number[], data: TensorData): Tensor {
    if (data.length !== product(dims)) throw new Error(`tensor ${name}: ${data.length} values for shape [${dims}]`);
    return new Tensor(name, dtype, [...dims], undefined, undefined, undefined, data);
  }

  /** Store float64 values in `dtype` (rounding happens here, once). */
  static fromFloat64(name: string, dtype: number, dims: readonly number[], values: Float64Array | Float32Array): Tensor {
    return Tensor.fromData(name, dtype, dims, encodeFloat(dtype, values));
  }

  get size(): number {
    return product(this.dims);
  }

  /** Bytes the data occupies when stored. */
  get byteLength(): number {
    return this.size * (dtypeSize(this.dtype) ?? 0);
  }

  /** Decoded data; validated against the declared shape before anything is allocated from it. */
  data(): TensorData {
    if (this.cached) return this.cached;
    const p = this.original!;
    let data: TensorData;
    const expectBytes = this.size * (dtypeSize(this.dtype) ?? 0);
    if (this.external) {
      this.checkExternalLength();
      if (!this.readExternal) throw new ModelError(`initializer '${this.name}' has external data but the model's folder is unknown`);
    }
    try {
      if (this.external) data = viewRaw(this.dtype, this.readExternal!({ ...this.external, length: expectBytes }, this.name));
      else if (p.rawData && p.rawData.length > 0) data = viewRaw(this.dtype, p.rawData);
      else if (storedRawData(p)) data = viewRaw(this.dtype, storedRawData(p)!.read()); // left in the file at load
      else data = fromTypedFields(p);
    } catch (e) {
      // viewRaw/fromTypedFields do not know the tensor: name it (the reader's messages already do).
      if (e instanceof ModelError && !e.message.startsWith("initializer ")) throw new ModelError(`initializer '${this.name}': ${e.message}`);
      throw e;
    }
    if (data.length !== this.size)
      throw new ModelError(`initializer '${this.name}' holds ${data.length} values but its shape [${this.dims}] needs ${this.size}`);
    // A large copy (of misaligned raw data, or read from the model file or its external data) is not kept (it is
    // cheap to make again): passes read each weight about once, and holding copies of every weight of a large
    // model is what drives peak memory (a 2 GB external-data model held all of it until the end of optimize).
    const copied = this.external !== undefined || data.buffer !== p?.rawData?.buffer;
    if (!copied || data.byteLength < UNCACHED_COPY_BYTES) this.cached = data;
    return data;
  }

  /**
   * Whether `values` (an array data() returned) is the copy this tensor keeps and hands to every
   * reader; false for one made for that call alone (a large weight read from the file, or
   * misaligned), which the caller owns and may change.
   */
  keeps(values: TensorData): boolean {
    return values === this.cached;
  }

  /**
   * Forget the decoded copy of a tensor read from a file (it is decoded again when next read):
   * misaligned raw data is copied to decode it, and after optimizing nothing needs those copies.
   */
  dropDecoded(): void {
    if (this.original) this.cached = undefined;
  }

  /** Checks the stored size against the declared shape without decoding (cheap; used at load). */
  validate(): void {
    const p = this.original;
    if (this.external) this.checkExternalLength();
    if (!p || this.external) return;
    const elem = dtypeSize(this.dtype);
    if (elem === undefined || this.dtype === DataType.STRING) {
      if (this.dtype !== DataType.STRING) throw new ModelError(`initializer '${this.name}' has unsupported dtype ${dtypeName(this.dtype)}`);
      return;
    }
    const raw = p.rawData?.length || storedRawData(p)?.length || 0;
    const count = raw > 0 ? raw / elem : typedFieldCount(p);
    if (count !== this.size)
      throw new ModelError(`initializer '${this.name}' holds ${count} values but its shape [${this.dims}] needs ${this.size}`);
  }

  private checkExternalLength(): void {
    const expectBytes = this.size * (dtypeSize(this.dtype) ?? 0);
    if (this.external!.length !== undefined && this.external!.length !== expectBytes)
      throw new ModelError(`initializer '${this.name}': external length ${this.external!.length} bytes does not match shape [${this.dims}] of ${dtypeName(this.dtype)}`);
  }

  toFloat64(): Float64Array {
    return decodeFloat(this.dtype, this.data());
  }

  /** Float values to read in float64 arithmetic: a view for float32/float64 data, decoded otherwise. */
  floatView(): Float32Array | Float64Array {
    const data = this.data();
    if (data instanceof Float32Array || data instanceof Float64Array) return data;
    return decodeFloat(this.dtype, data);
  }

  /** Proto for saving: the original when untouched (lossless), else a fresh raw_data proto. */
  toProto(): TensorProto {
    if (this.original) {
      if (this.original.name !== this.name) {
        // Shallow copy: data is shared, unknown fields and packing are kept.
        const copy = onnx.TensorProto.create();
        Object.assign(copy, this.original);
        copyWireInfo(this.original, copy);
        copy.name = this.name;
        return copy;
      }
      return this.original;
    }
    return onnx.TensorProto.create({
      name: this.name,
      dataType: this.dtype,
      dims: [...this.dims],
      rawData: rawBytes(this.data()),
    });
  }

}

function typedFieldCount(p: TensorProto): number {
  return (p.floatData?.length ?? 0) + (p.int32Data?.length ?? 0) + (p.int64Data?.length ?? 0) +
    (p.doubleData?.length ?? 0) + (p.uint64Data?.length ?? 0) + (p.stringData?.length ?? 0);
}

export function rawBytes(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export function decodeFloat(dtype: number, data: TensorData): Float64Array {
  const out = new Float64Array(data.length);
  if (dtype === DataType.FLOAT16) for (let i = 0; i < out.length; i++) out[i] = halfToFloat(data[i] as number);
  else if (dtype === DataType.BFLOAT16) for (let i = 0; i < out.length; i++) out[i] = bfloat16ToFloat(data[i] as number);
  else if (data instanceof BigInt64Array || data instanceof BigUint64Array) for (let i = 0; i < out.length; i++) out[i] = Number(data[i]);
  else out.set(data as ArrayLike<number>);
  return out;
}

export function encodeFloat(dtype: number, values: Float64Array | Float32Array): TensorData {
  switch (dtype) {
    // TypedArray#set converts natively (much faster than Float32Array.from on large kernels).
    case DataType.FLOAT: { const out = new Float32Array(values.length); out.set(values); return out; }
    case DataType.DOUBLE: { const out = new Float64Array(values.length); out.set(values); return out; }
    case DataType.FLOAT16: return Uint16Array.from(values, floatToHalf);
    case DataType.BFLOAT16: return Uint16Array.from(values, floatToBfloat16);
    case DataType.INT64: return BigInt64Array.from(values, (v) => BigInt(Math.round(v)));
    case DataType.INT32: return Int32Array.from(values);
    default: throw new Error(`cannot store folded values as ${dtypeName(dtype)}`);
  }
}
