// A model file read without holding its weights: the file is scanned at the protobuf wire level and
// its bytes copied, except the raw_data of the graph's large initializers, which stay in the file
// (their offsets are noted). The copy, the "skeleton", is a valid ModelProto a fraction of the
// file's size; it is decoded as usual and each large initializer then reads its bytes from the file
// when a pass or the writer needs them. Peak memory no longer includes a copy of the whole input.
//
// Anything unusual (a graph field given twice, which protobuf would merge; a repeated raw_data;
// group wire types; a graph, initializer or raw_data field not length-delimited; a length running
// past its message) makes the scan give up: the caller then
// reads the whole file and decodes it the ordinary way, which also words the errors.

/** Random access to a file's bytes. */
export interface ByteSource {
  readonly size: number;
  /** Exactly `length` bytes at `offset` (within size). */
  read(offset: number, length: number): Uint8Array;
}

/** A raw_data left in the file: where its bytes are. */
export interface StoredRange {
  offset: number;
  length: number;
}

export interface Skeleton {
  bytes: Uint8Array;
  /** Per graph initializer, in file order: its raw_data range when left in the file. */
  stored: (StoredRange | undefined)[];
}

/** Field numbers (onnx.proto): ModelProto.graph, GraphProto.initializer, TensorProto.raw_data. */
const MODEL_GRAPH = 7, GRAPH_INITIALIZER = 5, TENSOR_RAW_DATA = 9;
const CHUNK = 64 << 10;

class GiveUp extends Error {}

class Cursor {
  private buf: Uint8Array = new Uint8Array(0);
  private bufStart = 0;
  pos = 0;
  constructor(private readonly src: ByteSource) {}

  private ensure(n: number): void {
    if (this.pos >= this.bufStart && this.pos + n <= this.bufStart + this.buf.length) return;
    if (this.pos + n > this.src.size) throw new GiveUp();
    const len = Math.max(n, Math.min(CHUNK, this.src.size - this.pos));
    this.buf = this.src.read(this.pos, len);
    this.bufStart = this.pos;
  }

  varint(): number {
    let value = 0, scale = 1;
    for (let i = 0; i < 10; i++) {
      this.ensure(1);
      const b = this.buf[this.pos++ - this.bufStart]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 128;
    }
    throw new GiveUp();
  }

  skip(n: number, end: number): void {
    if (n < 0 || this.pos + n > end) throw new GiveUp();
    this.pos += n;
  }

  /** A copy of the bytes [from, to) (already scanned). */
  slice(from: number, to: number): Uint8Array {
    if (from >= this.bufStart && to <= this.bufStart + this.buf.length)
      return this.buf.slice(from - this.bufStart, to - this.bufStart);
    return this.src.read(from, to - from).slice();
  }

  /** Skip one field's value of wire type `wt` (the tag already read), staying within `end`. */
  skipValue(wt: number, end: number): void {
    if (wt === 0) this.varint();
    else if (wt === 1) this.skip(8, end);
    else if (wt === 5) this.skip(4, end);
    else if (wt === 2) this.skip(this.varint(), end);
    else throw new GiveUp(); // groups (3, 4) and invalid wire types
    if (this.pos > end) throw new GiveUp();
  }
}

/** A protobuf varint (n ≥ 0, up to 2^53). */
export function varintBytes(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Uint8Array.from(out);
}

type Pieces = Uint8Array[];
const piecesLength = (p: Pieces) => p.reduce((n, b) => n + b.length, 0);

/** onField's answer for a field whose value it read and whose bytes are to be kept as they are. */
const KEEP = null;

/**
 * Scan a message's fields in [cursor.pos, end): `onField` handles a field (the tag read) and
 * returns its replacement pieces, KEEP (it read the value; copy the field unchanged), or
 * undefined (value not read: copy the field unchanged).
 */
function scanMessage(cur: Cursor, end: number, onField: (field: number, wt: number, tagStart: number) => Pieces | typeof KEEP | undefined): Pieces {
  const out: Pieces = [];
  let copyFrom = cur.pos;
  while (cur.pos < end) {
    const tagStart = cur.pos;
    const tag = cur.varint();
    const replaced = onField(tag >>> 3, tag & 7, tagStart);
    if (replaced) {
      if (tagStart > copyFrom) out.push(cur.slice(copyFrom, tagStart));
      for (const piece of replaced) out.push(piece); // one by one: a graph has as many pieces as tensors
      copyFrom = cur.pos;
    } else if (replaced === undefined) cur.skipValue(tag & 7, end);
    // Copy in runs of at most a chunk, so copies come from the cursor's buffer.
    if (cur.pos - copyFrom >= CHUNK >> 1) {
      out.push(cur.slice(copyFrom, cur.pos));
      copyFrom = cur.pos;
    }
  }
  if (cur.pos !== end) throw new GiveUp();
  if (cur.pos > copyFrom) out.push(cur.slice(copyFrom, cur.pos));
  return out;
}

/** A length-delimited field rebuilt from its tag's bytes and new contents. */
function rebuilt(cur: Cursor, tagStart: number, tagEnd: number, body: Pieces): Pieces {
  return [cur.slice(tagStart, tagEnd), varintBytes(piecesLength(body)), ...body];
}

/**
 * A field the scan reads into (graph, initializer, raw_data) must be length-delimited: protobufjs
 * decodes these field numbers as length-delimited whatever their wire type says, so the scan, which
 * would skip such a field as a varint or fixed value and read on inside its bytes, gives up instead.
 */
function lengthDelimited(wt: number): void {
  if (wt !== 2) throw new GiveUp();
}

/**
 * The skeleton of the model in `src`, leaving in the file every graph initializer's raw_data of
 * at least `minBytes`; undefined when the file is not plainly laid out (read it whole instead).
 */
export function scanSkeleton(src: ByteSource, minBytes: number): Skeleton | undefined {
  const cur = new Cursor(src);
  const stored: (StoredRange | undefined)[] = [];
  let graphs = 0;
  const tensor = (end: number): Pieces => {
    let range: StoredRange | undefined;
    let raws = 0;
    const body = scanMessage(cur, end, (field, wt) => {
      if (field !== TENSOR_RAW_DATA) return undefined;
      lengthDelimited(wt);
      if (++raws > 1) throw new GiveUp();
      const length = cur.varint();
      if (length < minBytes) {
        cur.skip(length, end);
        return KEEP;
      }
      range = { offset: cur.pos, length };
      cur.skip(length, end);
      return [];
    });
    stored.push(range);
    return body;
  };
  const graph = (end: number): Pieces =>
    scanMessage(cur, end, (field, wt, tagStart) => {
      if (field !== GRAPH_INITIALIZER) return undefined;
      lengthDelimited(wt);
      const tagEnd = cur.pos;
      const length = cur.varint();
      const bodyEnd = cur.pos + length;
      if (bodyEnd > end) throw new GiveUp();
      return rebuilt(cur, tagStart, tagEnd, tensor(bodyEnd));
    });
  try {
    const pieces = scanMessage(cur, src.size, (field, wt, tagStart) => {
      if (field !== MODEL_GRAPH) return undefined;
      lengthDelimited(wt);
      if (++graphs > 1) throw new GiveUp();
      const tagEnd = cur.pos;
      const length = cur.varint();
      const bodyEnd = cur.pos + length;
      if (bodyEnd > src.size) throw new GiveUp();
      return rebuilt(cur, tagStart, tagEnd, graph(bodyEnd));
    });
    const bytes = new Uint8Array(piecesLength(pieces));
    let at = 0;
    for (const p of pieces) {
      bytes.set(p, at);
      at += p.length;
    }
    return { bytes, stored };
  } catch (e) {
    if (e instanceof GiveUp) return undefined;
    throw e;
  }
}
