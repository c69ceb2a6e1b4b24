// Issue 15 (peak memory): loadModel leaves large weights in the model file (skeleton.ts) and reads
// each when a pass or the writer needs it. The model it gives must be the model the whole file
// decodes to (same data, same bytes written), the file is read through the fd it opened (renamed
// or deleted files still read), a file changed in place is an error, not other weights, and a file
// the scan does not understand is read whole as before.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { optimize } from "../src/app/optimize.js";
import { modelToBytes } from "../src/ir/bytes.js";
import { GraphBuilder } from "../src/ir/builder.js";
import { ModelError } from "../src/ir/errors.js";
import { loadModel, modelFromBytes, saveModel } from "../src/ir/io.js";
import { onnx, storedRawData } from "../src/ir/proto.js";
import { scanSkeleton, varintBytes } from "../src/ir/skeleton.js";
import { createHash } from "node:crypto";
import { randomArray, rng } from "./helpers/random.js";

const r = rng(15);
const hashOf = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-stored-"));
const at = (...p: string[]) => path.join(work, ...p);
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** The builder's names for the first Conv's weight and the BN's scale. */
const names = { w: "", g: "" };

/** Conv (weight of `channels`² · 9 floats: large ones are left in the file) + BN, and a small Conv. */
function model(channels: number, seed = 5) {
  const b = new GraphBuilder(13);
  const r = rng(seed);
  const c = channels;
  const x = b.input("x", [1, c, 5, 5]);
  names.w = b.constant("w", [c, c, 3, 3], randomArray(r, c * c * 9));
  const conv = b.op("Conv", [x, names.w], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
  const ch = (f: (v: number) => number) => randomArray(r, c).map(f);
  const bn = b.op("BatchNormalization", [conv, (names.g = b.constant("g", [c], ch((v) => 1 + v / 2))), b.constant("b", [c], ch((v) => v)), b.constant("m", [c], ch((v) => v)), b.constant("v", [c], ch((v) => 1.5 + v / 2))], { epsilon: 1e-5 });
  const y = b.op("Conv", [bn, b.constant("w2", [2, c, 1, 1], randomArray(r, 2 * c))], { kernel_shape: [1, 1] });
  b.output(y);
  return b.build();
}

function write(name: string, bytes: Uint8Array): string {
  fs.writeFileSync(at(name), bytes);
  return at(name);
}

describe("loadModel leaves large weights in the file", () => {
  const bytes = modelToBytes(model(96)); // w: 96·96·9·4 = 331,776 bytes
  const file = write("m.onnx", bytes);

  it("the large weight is not in memory; its data, the model and its written bytes equal a whole-file decode", () => {
    const lazy = loadModel(file);
    const whole = modelFromBytes(fs.readFileSync(file), file);
    const w = lazy.graph.initializers.get(names.w)!;
    expect(w.original!.rawData?.length ?? 0).toBe(0);
    expect(storedRawData(w.original!)?.length).toBe(96 * 96 * 9 * 4);
    expect(storedRawData(lazy.graph.initializers.get(names.g)!.original!)).toBeUndefined(); // small: inline
    expect(Buffer.compare(Buffer.from(modelToBytes(lazy)), Buffer.from(modelToBytes(whole)))).toBe(0);
    expect(Buffer.compare(Buffer.from(modelToBytes(lazy)), Buffer.from(bytes))).toBe(0);
    expect([...w.data()]).toEqual([...whole.graph.initializers.get(names.w)!.data()]);
    // Optimized: the folded weights are new, the untouched small Conv's weight comes from the file.
    const a = optimize(lazy).model, b = optimize(whole).model;
    expect(Buffer.compare(Buffer.from(modelToBytes(a)), Buffer.from(modelToBytes(b)))).toBe(0);
    saveModel(lazy, at("copy.onnx"));
    expect(Buffer.compare(fs.readFileSync(at("copy.onnx")), Buffer.from(bytes))).toBe(0);
  });

  it("over the streaming threshold, saveModel writes untouched weights from the file, byte for byte", () => {
    const big = write("big.onnx", modelToBytes(model(440, 7))); // 440²·9·4 ≈ 7 MB… doubled below
    const m = loadModel(big);
    // Two copies of the model side by side exceed the 16 MiB above which writes are streamed.
    const twice = modelFromBytes(fs.readFileSync(big), big);
    for (const [name, t] of twice.graph.initializers) if (name !== names.w) m.graph.initializers.set(name, t);
    saveModel(m, at("big-out.onnx"));
    saveModel(twice, at("big-ref.onnx"));
    expect(Buffer.compare(fs.readFileSync(at("big-out.onnx")), fs.readFileSync(at("big-ref.onnx")))).toBe(0);
  });

  it("large weights read from the file or from external data are not kept (memory): each read is a fresh copy", () => {
    const m = loadModel(write("fresh.onnx", modelToBytes(model(200, 3)))); // w: 1.44 MB
    const w = m.graph.initializers.get(names.w)!, g = m.graph.initializers.get(names.g)!;
    expect(w.data()).not.toBe(w.data());
    expect([...w.data()]).toEqual([...w.data()]);
    expect(g.data()).toBe(g.data()); // small: decoded once
    fs.mkdirSync(at("ext"));
    saveModel(m, at("ext", "m.onnx"), { externalData: true });
    const e = loadModel(at("ext", "m.onnx"));
    const we = e.graph.initializers.get(names.w)!;
    expect(we.external).toBeDefined();
    expect(we.data()).not.toBe(we.data());
    expect([...we.data()]).toEqual([...w.data()]);
  });

  it("a file renamed over or deleted after loading is still read (the model keeps it open)", () => {
    const f = write("moved.onnx", bytes);
    const m = loadModel(f);
    fs.writeFileSync(at("other.onnx"), modelToBytes(model(96, 99)));
    fs.renameSync(at("other.onnx"), f);
    expect(Buffer.compare(Buffer.from(modelToBytes(m)), Buffer.from(bytes))).toBe(0);
    const g = write("deleted.onnx", bytes);
    const n = loadModel(g);
    fs.rmSync(g);
    expect(Buffer.compare(Buffer.from(modelToBytes(n)), Buffer.from(bytes))).toBe(0);
  });

  it("a process loading model after model keeps at most 64 model files open; a closed one is reopened only if it is the same file", () => {
    // The garbage collector, not the number of open files, releases models: before this bound,
    // ~1000 loads in one process (nothing kept) failed with EMFILE under the default ulimit -n 1024.
    const fds = () => (fs.existsSync("/proc/self/fd") ? fs.readdirSync("/proc/self/fd").length : 0);
    const startFds = fds();
    const big = modelToBytes(model(172, 11)); // w: 172²·9·4 ≈ 1.07 MB, not cached: every data() reads the file
    const files = Array.from({ length: 70 }, (_, i) => write(`many${i}.onnx`, big));
    const models = files.map((f) => loadModel(f)); // all kept alive
    if (startFds > 0) expect(fds() - startFds).toBeLessThanOrEqual(64 + 4);
    const w = (i: number) => models[i]!.graph.initializers.get(names.w)!;
    const expected = [...modelFromBytes(big, files[0]).graph.initializers.get(names.w)!.data()];
    // The oldest six were closed: unchanged, a file is opened again.
    expect([...w(0).data()]).toEqual(expected);
    // Closed, then deleted or replaced: an error naming the file, never other weights.
    fs.rmSync(files[1]!);
    fs.writeFileSync(at("next.onnx"), modelToBytes(model(172, 99)));
    fs.renameSync(at("next.onnx"), files[2]!);
    expect(() => w(1).data()).toThrow(/many1\.onnx: deleted or moved since it was loaded/);
    expect(() => w(2).data()).toThrow(/many2\.onnx: replaced since it was loaded/);
    // Still open: replaced or deleted, the model reads the file it loaded.
    fs.rmSync(files[69]!);
    expect([...w(69).data()]).toEqual(expected);
    for (const f of files) fs.rmSync(f, { force: true });
  });

  it("a file changed in place after loading is an error naming it, never other weights", () => {
    const f = write("changed.onnx", bytes);
    const m = loadModel(f);
    fs.writeFileSync(f, modelToBytes(model(96, 99))); // same size, same inode, other weights
    expect(() => m.graph.initializers.get(names.w)!.data()).toThrow(ModelError);
    expect(() => m.graph.initializers.get(names.w)!.data()).toThrow(/changed.onnx: changed since it was loaded/);
  });

  it("an external data file replaced or changed in place after loading is an error naming it, never other weights", () => {
    // Large external weights are read again whenever needed (not kept): the file must still be the one loaded.
    fs.mkdirSync(at("ext-changed"));
    saveModel(loadModel(write("ext-src.onnx", modelToBytes(model(200, 3)))), at("ext-changed", "m.onnx"), { externalData: true });
    const dataFile = at("ext-changed", "m.onnx.data");
    const original = fs.readFileSync(dataFile);
    const other = Buffer.from(original.map((v, i) => (i % 4 === 3 ? v ^ 1 : v))); // same size, other weights
    for (const change of ["in place", "renamed over"]) {
      fs.writeFileSync(dataFile, original);
      const m = loadModel(at("ext-changed", "m.onnx"));
      const w = m.graph.initializers.get(names.w)!;
      const before = [...w.data()];
      if (change === "in place") fs.writeFileSync(dataFile, other);
      else {
        fs.writeFileSync(at("ext-changed", "next"), other);
        fs.renameSync(at("ext-changed", "next"), dataFile);
      }
      expect(() => w.data(), change).toThrow(ModelError);
      expect(() => w.data(), change).toThrow(/external data file 'm\.onnx\.data' beside .* was replaced or changed since the model was loaded/);
      fs.writeFileSync(dataFile, original); // in place again, bytes as loaded: still refused (its mtime moved)
      expect(() => w.data()).toThrow(ModelError);
      expect(before.length).toBe(200 * 200 * 9);
    }
  });

  it("corrupted files: loading gives what decoding the whole file gives (the same model, or the same error)", () => {
    // Byte flips and cuts anywhere (tags, lengths, names, raw data): the scan must never read a
    // model other than the one protobuf decodes, nor turn an error into a model or change its words.
    const outcome = (load: () => ReturnType<typeof loadModel>) => {
      try {
        return `model ${hashOf(modelToBytes(load()))}`;
      } catch (e) {
        return `${(e as Error).constructor.name}: ${(e as Error).message}`;
      }
    };
    const seen = new Set<string>();
    for (let trial = 0; trial < 120; trial++) {
      const bad = Buffer.from(bytes);
      const kind = trial % 3;
      if (kind === 0) bad[Math.floor(r() * 600)] = Math.floor(r() * 256); // the head: model fields, nodes
      else if (kind === 1) bad[Math.floor(r() * bad.length)] = Math.floor(r() * 256);
      const cut = kind === 2 ? bad.subarray(0, Math.floor(r() * bad.length)) : bad;
      const f = write(`bad${trial}.onnx`, cut);
      const got = outcome(() => loadModel(f));
      expect(got, `trial ${trial}`).toBe(outcome(() => modelFromBytes(fs.readFileSync(f), f)));
      seen.add(got.startsWith("model") ? "model" : "error");
      fs.rmSync(f);
    }
    expect([...seen].sort()).toEqual(["error", "model"]); // both kinds of outcome were compared
  });

  it("the scan copies every byte it keeps: with nothing left in the file, the skeleton is the file (200,000 initializers)", () => {
    const source = (b: Uint8Array) => ({ size: b.length, read: (offset: number, length: number) => b.slice(offset, offset + length) });
    const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
    expect(same(scanSkeleton(source(bytes), Infinity)!.bytes, bytes)).toBe(true);
    // A graph of 200,000 initializers, each named "a" (field 8): ModelProto.graph = 7, GraphProto.initializer = 5.
    const n = 200_000;
    const graph = Buffer.alloc(n * 5);
    for (let i = 0; i < n; i++) graph.set([0x2a, 0x03, 0x42, 0x01, 0x61], i * 5);
    const head = Buffer.from([0x08, 0x07, 0x3a]); // ir_version 7, then the graph's tag
    const len = Buffer.from(varintBytes(graph.length));
    const file = Buffer.concat([head, len, graph]);
    const skeleton = scanSkeleton(source(file), 16)!;
    expect(skeleton.stored.length).toBe(n);
    expect(same(skeleton.bytes, file)).toBe(true);
  });

  it("a file the scan does not take is read whole: same model; broken files keep their messages", () => {
    // An unknown field of the (deprecated) group wire type, field 100: kept, but the scan gives up on groups.
    const grouped = Buffer.concat([bytes, Buffer.from([0xa3, 0x06, 0xa4, 0x06])]);
    const m = loadModel(write("grouped.onnx", grouped));
    expect(m.graph.initializers.get(names.w)!.original!.rawData!.length).toBe(96 * 96 * 9 * 4);
    expect(Buffer.compare(Buffer.from(modelToBytes(m)), grouped)).toBe(0);
    const cut = write("cut.onnx", bytes.subarray(0, bytes.length - 1000));
    expect(() => loadModel(cut)).toThrow(/cut\.onnx: not a valid ONNX model/);
  });
});

describe("the scan reads what protobuf reads", () => {
  it("a raw_data field of wire type 0 (protobufjs still reads it as bytes) is not scanned into: the same weight as the whole file", () => {
    // w's raw_data tag says varint (0x48); its bytes P begin like a 64 KiB raw_data field of their
    // own (0x4a, 65536). protobufjs reads P as w's raw data; a scan skipping the "varint" read on
    // inside P, left that inner field in the file, and the decoder then took w's bytes from what
    // follows (the graph's end and a metadata value): another weight, silently.
    const n = 16385; // floats: 65,540 bytes = 4 + 65,536
    const b = new GraphBuilder(13);
    const x = b.input("x", [n]);
    const w = b.constant("w", [n], Array.from({ length: n }, (_, i) => (i % 7) - 3));
    b.output(b.op("Add", [x, w]));
    const proto = b.build().toProto();
    const raw = Uint8Array.from(proto.graph!.initializer![0]!.rawData!);
    raw.set([0x4a, 0x80, 0x80, 0x04], 0);
    const tensor = onnx.TensorProto.fromObject(onnx.TensorProto.toObject(proto.graph!.initializer![0]!));
    delete (tensor as { rawData?: Uint8Array }).rawData;
    const tensorBytes = Buffer.concat([onnx.TensorProto.encode(tensor).finish(), Buffer.from([0x48]), Buffer.from(varintBytes(raw.length)), raw]);
    const graph = onnx.GraphProto.fromObject(onnx.GraphProto.toObject(proto.graph!));
    graph.initializer = [];
    const graphBytes = Buffer.concat([onnx.GraphProto.encode(graph).finish(), Buffer.from([0x2a]), Buffer.from(varintBytes(tensorBytes.length)), tensorBytes]);
    const model = onnx.ModelProto.fromObject(onnx.ModelProto.toObject(proto));
    model.graph = null;
    model.metadataProps = [];
    const head = onnx.ModelProto.encode(model).finish();
    const weightOf = (load: () => ReturnType<typeof loadModel>) => {
      try {
        return hashOf(new Uint8Array((load().graph.initializers.get(w)!.data() as Float32Array).slice().buffer));
      } catch (e) {
        return `${(e as Error).constructor.name}: ${(e as Error).message}`;
      }
    };
    for (const length of [70_000, 70_001]) {
      const entry = onnx.StringStringEntryProto.encode({ key: "k", value: "\b".repeat(length) }).finish();
      const f = write(`wt0-${length}.onnx`, Buffer.concat([head, Buffer.from([0x3a]), Buffer.from(varintBytes(graphBytes.length)), graphBytes, Buffer.from([0x72]), Buffer.from(varintBytes(entry.length)), entry]));
      const whole = weightOf(() => modelFromBytes(fs.readFileSync(f), f));
      expect(whole).toMatch(/^[0-9a-f]{64}$/);
      expect(weightOf(() => loadModel(f)), `metadata value of ${length}`).toBe(whole);
    }
  });
});
