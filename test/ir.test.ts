// The IR's promise: load + save with no pass keeps every field it does not touch — byte for byte
// for files ONNX's serializer wrote, and field for field for fields newer than onnx-proto's schema.
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { GraphBuilder } from "../src/ir/builder.js";
import { DataType } from "../src/ir/dtype.js";
import { ModelError } from "../src/ir/errors.js";
import { loadModel, modelFromBytes, modelToBytes, saveModel } from "../src/ir/io.js";
import { decodeModel, encodeModel, onnx, unknownFieldCount, type ModelProto } from "../src/ir/proto.js";
import { inferShapes } from "../src/ir/shapes.js";
import { Tensor } from "../src/ir/tensor.js";
import { optimize } from "../src/app/optimize.js";
import { checkInferredShapes } from "../src/verify/shape-check.js";

const require = createRequire(import.meta.url);
const protobuf = require("protobufjs/minimal") as typeof import("protobufjs");

const FIXTURES = path.join(import.meta.dirname, "..", "fixtures", "models");
const fixture = (name: string) => path.join(FIXTURES, name);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-ir-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const bytesOf = (file: string) => new Uint8Array(fs.readFileSync(file));
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
const contains = (hay: Uint8Array, needle: Uint8Array) => Buffer.from(hay).indexOf(Buffer.from(needle)) >= 0;
const utf8 = (s: string) => new TextEncoder().encode(s);

// --- wire-level editing, independent of onnx-proto ---------------------------------------------

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));
}

function varint(n: number): Uint8Array {
  const w = protobuf.Writer.create();
  w.uint32(n);
  return w.finish();
}

/** A length-delimited field: tag + length + payload. */
const ld = (no: number, payload: Uint8Array) => concat(varint((no << 3) | 2), varint(payload.length), payload);
const vint = (no: number, value: number) => concat(varint(no << 3), varint(value));
const fixed32 = (no: number, bytes: number[]) => concat(varint((no << 3) | 5), Uint8Array.from(bytes));
const fixed64 = (no: number, bytes: number[]) => concat(varint((no << 3) | 1), Uint8Array.from(bytes));

interface WireField { no: number; wireType: number; raw: Uint8Array; payload?: Uint8Array }

function wireFields(buf: Uint8Array): WireField[] {
  const r = protobuf.Reader.create(buf);
  const out: WireField[] = [];
  while (r.pos < r.len) {
    const at = r.pos;
    const tag = r.uint32();
    let payload: Uint8Array | undefined;
    if ((tag & 7) === 2) {
      const len = r.uint32();
      payload = buf.subarray(r.pos, r.pos + len);
      r.pos += len;
    } else r.skipType(tag & 7);
    out.push({ no: tag >>> 3, wireType: tag & 7, raw: buf.subarray(at, r.pos), payload });
  }
  return out;
}

/** Append `extra` (raw fields) to the message at `where`: a list of [field number, occurrence]. */
function appendAt(buf: Uint8Array, where: [number, number][], extra: Uint8Array): Uint8Array {
  if (where.length === 0) return concat(buf, extra);
  const [[no, index], ...rest] = where as [[number, number], ...[number, number][]];
  let seen = 0;
  let hit = false;
  const parts = wireFields(buf).map((f) => {
    if (f.no !== no || f.wireType !== 2) return f.raw;
    if (seen++ !== index) return f.raw;
    hit = true;
    return ld(no, appendAt(f.payload!, rest, extra));
  });
  if (!hit) throw new Error(`no field ${no}#${index} to edit`);
  return concat(...parts);
}

// ModelProto.graph = 7, opset_import = 8; GraphProto.node = 1, initializer = 5, input = 11,
// output = 12; NodeProto.attribute = 5; ValueInfoProto.type = 2.
const GRAPH: [number, number] = [7, 0];

async function ortLoads(bytes: Uint8Array): Promise<boolean> {
  try {
    const s = await ort.InferenceSession.create(bytes);
    await s.release();
    return true;
  } catch {
    return false;
  }
}

// --- byte identity ------------------------------------------------------------------------------

/** The crafted model carries 4 unknown fields at model level and one at every other level. */
function expectOneUnknownFieldPerLevel(p: ReturnType<typeof decodeModel>): void {
  expect(unknownFieldCount(p)).toBe(4);
  for (const m of [p.opsetImport![0]!, p.graph!, p.graph!.node![0]!, p.graph!.node![0]!.attribute![0]!, p.graph!.initializer![0]!, p.graph!.input![0]!, p.graph!.output![0]!, p.graph!.input![0]!.type!])
    expect(unknownFieldCount(m)).toBe(1);
}

describe("round trip of fixtures", () => {
  const all = fs.readdirSync(FIXTURES).filter((f) => f.endsWith(".onnx")).sort();

  it("every fixture is byte-identical after load + modelToBytes", () => {
    expect(all.length).toBeGreaterThan(10);
    const differ = all.filter((f) => !same(modelToBytes(loadModel(fixture(f))), bytesOf(fixture(f))));
    expect(differ).toEqual([]);
  });

  it("saveModel writes the same bytes as the file it loaded", () => {
    for (const f of ["demo_repvgg_net.onnx", "repvgg_id_s1_preserve_op13.onnx"]) {
      const out = path.join(tmp, `copy_${f}`);
      const { bytes } = saveModel(loadModel(fixture(f)), out);
      expect(same(bytesOf(out), bytesOf(fixture(f)))).toBe(true);
      expect(bytes).toBe(fs.statSync(fixture(f)).size);
      expect(fs.existsSync(out + ".data")).toBe(false);
    }
  });

  it("repeated scalars keep the encoding they had (unpacked dims/ints as in onnx.proto, or packed)", () => {
    // The same attribute ints written both ways must each come back as written.
    for (const packed of [false, true]) {
      // Fields in ascending number order, as protobuf serializers write them.
      const ints = packed ? ld(8, concat(varint(1), varint(0))) : concat(vint(8, 1), vint(8, 0));
      const attribute = concat(ld(1, utf8("perm")), ints, vint(20, 7));
      const node = concat(ld(1, utf8("x")), ld(2, utf8("y")), ld(3, utf8("t")), ld(4, utf8("Transpose")), ld(5, attribute));
      const dims = packed ? ld(1, concat(varint(2), varint(2))) : concat(vint(1, 2), vint(1, 2));
      const tensor = concat(dims, vint(2, DataType.FLOAT), ld(8, utf8("c")), ld(9, new Uint8Array(16)));
      const graph = concat(ld(1, node), ld(2, utf8("g")), ld(5, tensor), ld(11, ld(1, utf8("x"))), ld(12, ld(1, utf8("y"))));
      const model = concat(vint(1, 8), ld(7, graph), ld(8, vint(2, 13)));
      const m = modelFromBytes(model);
      expect(m.graph.nodes[0]!.ints("perm")).toEqual([1, 0]);
      expect(m.graph.initializers.get("c")!.dims).toEqual([2, 2]);
      expect(same(modelToBytes(m), model), packed ? "packed" : "unpacked").toBe(true);
    }
    // A tensor built by a pass gets onnx.proto's layout: dims unpacked (field 1, wire type 0).
    const t = Tensor.fromFloat64("t", DataType.FLOAT, [2, 3], new Float64Array(6)).toProto();
    const fields = wireFields(onnx.TensorProto.encode(t).finish());
    expect(fields.filter((f) => f.no === 1).map((f) => f.wireType)).toEqual([0, 0]);
  });
});

// --- fields newer than the schema ---------------------------------------------------------------

describe("unknown (newer-schema) fields", () => {
  const marker = (s: string) => utf8(`unknown-field:${s}`);
  const injections: { where: [number, number][]; extra: Uint8Array; label: string }[] = [
    { label: "model", where: [], extra: concat(ld(30, marker("model")), vint(31, 123456), fixed32(32, [1, 2, 3, 4]), fixed64(33, [1, 2, 3, 4, 5, 6, 7, 8])) },
    { label: "opset_import", where: [[8, 0]], extra: ld(1000, marker("opset")) },
    { label: "graph", where: [GRAPH], extra: ld(1000, marker("graph")) },
    { label: "node", where: [GRAPH, [1, 0]], extra: ld(1000, marker("node")) },
    { label: "attribute", where: [GRAPH, [1, 0], [5, 0]], extra: ld(1000, marker("attribute")) },
    { label: "initializer", where: [GRAPH, [5, 0]], extra: ld(1000, marker("initializer")) },
    { label: "input value_info", where: [GRAPH, [11, 0]], extra: ld(1000, marker("input")) },
    { label: "output value_info", where: [GRAPH, [12, 0]], extra: vint(1001, 77) },
    { label: "input type", where: [GRAPH, [11, 0], [2, 0]], extra: ld(1000, marker("type")) },
  ];

  function crafted(): Uint8Array {
    let bytes: Uint8Array = bytesOf(fixture("repvgg_id_s1_preserve_op13.onnx"));
    // Deepest first: appending grows a message, so edit inner messages before their parents.
    for (const inj of [...injections].reverse()) bytes = appendAt(bytes, inj.where, inj.extra);
    return bytes;
  }

  it("the crafted model carries them where intended", () => {
    const p = decodeModel(crafted());
    expect(p.graph!.node![0]!.attribute!.length).toBeGreaterThan(0);
    expectOneUnknownFieldPerLevel(p);
  });

  it("load + save keeps each of them, with the same bytes, and onnxruntime still loads it", async () => {
    const input = crafted();
    const file = path.join(tmp, "unknown.onnx");
    fs.writeFileSync(file, input);
    const out = path.join(tmp, "unknown_out.onnx");
    saveModel(loadModel(file), out);
    const output = bytesOf(out);
    for (const inj of injections) expect(contains(output, inj.extra), inj.label).toBe(true);
    const p = decodeModel(output);
    expectOneUnknownFieldPerLevel(p);
    // Each was appended at the end of its message, which is where they are written back: the
    // whole file is unchanged.
    expect(same(output, input)).toBe(true);
    expect(same(modelToBytes(loadModel(file)), input)).toBe(true);
    // onnxruntime ignores fields it does not know: it loads the crafted model and our output.
    expect(await ortLoads(input)).toBe(true);
    expect(await ortLoads(output)).toBe(true);
  });

  it("an initializer renamed by a pass keeps its unknown fields", () => {
    const m = modelFromBytes(crafted());
    const [name, t] = [...m.graph.initializers.entries()][0]!;
    t.name = `${name}_renamed`;
    const p = decodeModel(modelToBytes(m));
    expect(p.graph!.initializer![0]!.name).toBe(`${name}_renamed`);
    expect(unknownFieldCount(p.graph!.initializer![0]!)).toBe(1);
    t.name = name;
  });

  it("survive optimize: at model level and in untouched nodes (Gemm, Flatten)", async () => {
    let bytes: Uint8Array = bytesOf(fixture("demo_repvgg_net.onnx"));
    const ops = loadModel(fixture("demo_repvgg_net.onnx")).graph.nodes.map((n) => n.opType);
    const gemm = ops.indexOf("Gemm"), flatten = ops.indexOf("Flatten");
    expect(gemm).toBeGreaterThanOrEqual(0);
    expect(flatten).toBeGreaterThanOrEqual(0);
    const extra = { model: ld(30, marker("model")), gemm: ld(1000, marker("gemm")), flatten: ld(1000, marker("flatten")) };
    bytes = appendAt(bytes, [GRAPH, [1, gemm]], extra.gemm);
    bytes = appendAt(bytes, [GRAPH, [1, flatten]], extra.flatten);
    bytes = appendAt(bytes, [], extra.model);
    const { model, report } = optimize(modelFromBytes(bytes));
    expect(report.rewrites.length).toBeGreaterThan(0); // something did change
    const out = modelToBytes(model);
    for (const e of Object.values(extra)) expect(contains(out, e)).toBe(true);
    const p = decodeModel(out);
    expect(unknownFieldCount(p)).toBe(1);
    const byOp = (op: string) => p.graph!.node!.find((n) => n.opType === op)!;
    expect(unknownFieldCount(byOp("Gemm"))).toBe(1);
    expect(unknownFieldCount(byOp("Flatten"))).toBe(1);
    expect(p.graph!.node!.length).toBeLessThan(ops.length);
    expect(await ortLoads(out)).toBe(true);
  });
});

// --- known fields that the IR does not model ---------------------------------------------------

describe("known fields survive a round trip", () => {
  const F = onnx.TensorProto.DataType.FLOAT;
  const vi = (name: string, elemType: number, dims: number[]) =>
    ({ name, type: { tensorType: { elemType, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
  const branch = (op: string) =>
    onnx.GraphProto.create({
      name: `${op}_branch`,
      node: [{ name: `${op}_in_branch`, opType: op, input: ["x"], output: [`${op}_y`] }],
      output: [vi(`${op}_y`, F, [2])],
    });

  function richModel(): ModelProto {
    return onnx.ModelProto.create({
      irVersion: 8,
      producerName: "ir-test-producer",
      producerVersion: "9.9.9",
      domain: "org.example",
      modelVersion: 42,
      docString: "model doc string",
      metadataProps: [{ key: "author", value: "ir.test" }, { key: "license", value: "MIT" }],
      opsetImport: [{ domain: "", version: 13 }, { domain: "custom", version: 1 }],
      functions: [{
        name: "MyRelu", domain: "custom", input: ["a"], output: ["b"], docString: "function doc",
        node: [{ name: "fn_relu", opType: "Relu", input: ["a"], output: ["b"] }],
        opsetImport: [{ domain: "", version: 13 }],
      }],
      graph: {
        name: "rich",
        docString: "graph doc string",
        input: [vi("x", F, [2]), vi("cond", onnx.TensorProto.DataType.BOOL, [])],
        output: [vi("y", F, [2]), vi("z", F, [2])],
        valueInfo: [vi("r", F, [2])],
        node: [
          {
            name: "the_if", opType: "If", input: ["cond"], output: ["y"], docString: "if doc",
            attribute: [
              { name: "then_branch", type: onnx.AttributeProto.AttributeType.GRAPH, g: branch("Relu") },
              { name: "else_branch", type: onnx.AttributeProto.AttributeType.GRAPH, g: branch("Neg") },
            ],
          },
          { name: "call_fn", opType: "MyRelu", domain: "custom", input: ["x"], output: ["r"] },
          { name: "identity", opType: "Identity", input: ["r"], output: ["z"] },
        ],
      },
    });
  }

  it("metadata, doc strings, producer, opsets, value_info, node names, functions and If branches", async () => {
    const bytes = encodeModel(richModel());
    const file = path.join(tmp, "rich.onnx");
    fs.writeFileSync(file, bytes);
    const out = path.join(tmp, "rich_out.onnx");
    saveModel(loadModel(file), out);
    expect(same(bytesOf(out), bytes)).toBe(true);
    const p = decodeModel(bytesOf(out));
    expect(p.producerName).toBe("ir-test-producer");
    expect(p.producerVersion).toBe("9.9.9");
    expect(p.domain).toBe("org.example");
    expect(Number(p.modelVersion)).toBe(42);
    expect(p.docString).toBe("model doc string");
    expect(p.metadataProps!.map((e) => `${e.key}=${e.value}`)).toEqual(["author=ir.test", "license=MIT"]);
    expect(p.opsetImport!.map((o) => `${o.domain}:${o.version}`)).toEqual([":13", "custom:1"]);
    expect(p.functions!.map((f) => `${f.domain}.${f.name}`)).toEqual(["custom.MyRelu"]);
    expect(p.functions![0]!.node![0]!.opType).toBe("Relu");
    expect(p.graph!.docString).toBe("graph doc string");
    expect(p.graph!.valueInfo!.map((v) => v.name)).toEqual(["r"]);
    expect(p.graph!.node!.map((n) => n.name)).toEqual(["the_if", "call_fn", "identity"]);
    expect(p.graph!.node![0]!.docString).toBe("if doc");
    const attrs = p.graph!.node![0]!.attribute!;
    expect(attrs.map((a) => `${a.name}:${a.g?.node?.[0]?.opType}`)).toEqual(["then_branch:Relu", "else_branch:Neg"]);

    // The model is real: onnxruntime runs the function and both branches of the If.
    const session = await ort.InferenceSession.create(bytesOf(out));
    const x = new ort.Tensor("float32", Float32Array.from([-1, 2]), [2]);
    for (const [cond, y] of [[true, [0, 2]], [false, [1, -2]]] as const) {
      const r = await session.run({ x, cond: new ort.Tensor("bool", Uint8Array.from([cond ? 1 : 0]), []) });
      expect(Array.from(r.y!.data as Float32Array)).toEqual(y);
      expect(Array.from(r.z!.data as Float32Array)).toEqual([0, 2]);
    }
    await session.release();
  });

  it("they also survive optimize (which has nothing to fold here)", () => {
    const { model } = optimize(modelFromBytes(encodeModel(richModel())));
    const p = decodeModel(modelToBytes(model));
    expect(p.functions?.length).toBe(1);
    expect(p.metadataProps?.length).toBe(2);
    expect(p.graph!.node![0]!.attribute!.map((a) => a.g?.name)).toEqual(["Relu_branch", "Neg_branch"]);
  });

  it("shared initializers stay shared", () => {
    const b = new GraphBuilder(13);
    const x = b.input("x", [1, 2, 5, 5]);
    const w = b.constant("w", [2, 2, 3, 3], Array.from({ length: 36 }, (_, i) => Math.cos(i)));
    const y1 = b.op("Conv", [x, w], { pads: [1, 1, 1, 1] }, "conv1");
    b.output(b.op("Conv", [y1, w], { pads: [1, 1, 1, 1] }, "conv2"), [1, 2, 5, 5]);
    const bytes = modelToBytes(b.build());
    const m = modelFromBytes(bytes);
    expect(same(modelToBytes(m), bytes)).toBe(true);
    const p = decodeModel(modelToBytes(m));
    expect(p.graph!.initializer!.map((t) => t.name)).toEqual([w]);
    expect(p.graph!.node!.map((n) => n.input![1])).toEqual([w, w]);
    // One tensor object in the IR, read by both nodes.
    expect(m.graph.initializers.size).toBe(1);
    expect(m.graph.consumers().get(w)?.map((n) => n.name)).toEqual(["conv1", "conv2"]);
  });
});

// --- external data --------------------------------------------------------------------------------

describe("external data", () => {
  const floats = (m: ReturnType<typeof loadModel>) =>
    new Map([...m.graph.initializers].map(([k, t]) => [k, Array.from(t.toFloat64())]));

  it("saveModel(externalData) writes <file>.data and reloads with equal values", () => {
    const src = loadModel(fixture("demo_repvgg_net.onnx"));
    const dir = fs.mkdtempSync(path.join(tmp, "ext-"));
    const file = path.join(dir, "m.onnx");
    const { bytes, dataBytes } = saveModel(src, file, { externalData: true });
    expect(fs.statSync(file + ".data").size).toBe(dataBytes);
    expect(dataBytes).toBeGreaterThan(100_000);
    expect(fs.statSync(file).size).toBe(bytes);
    expect(bytes).toBeLessThan(fs.statSync(fixture("demo_repvgg_net.onnx")).size - 100_000);
    expect(fs.readdirSync(dir).sort()).toEqual(["m.onnx", "m.onnx.data"]); // no temp files left
    const p = decodeModel(bytesOf(file));
    const external = p.graph!.initializer!.filter((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
    expect(external.length).toBeGreaterThan(0);
    expect(external.every((t) => !t.rawData?.length)).toBe(true);

    const back = loadModel(file);
    expect(floats(back)).toEqual(floats(src));
    // Inlined again, it is a normal model with the same weights.
    expect(floats(modelFromBytes(modelToBytes(back)))).toEqual(floats(src));
  });

  /** A one-Conv model whose weight is external with the given reference, in its own folder. */
  function externalModel(ref: { location: string; offset?: number; length?: number }, dataFile?: { name: string; bytes: number }) {
    const dir = fs.mkdtempSync(path.join(tmp, "ext-bad-"));
    const sub = path.join(dir, "model");
    fs.mkdirSync(sub);
    const b = new GraphBuilder(13);
    const x = b.input("x", [1, 2, 4, 4]);
    const w = b.constant("w", [2, 2, 3, 3], new Array(36).fill(0.5));
    b.output(b.op("Conv", [x, w], {}, "conv"));
    const p = decodeModel(modelToBytes(b.build()));
    const kv = [{ key: "location", value: ref.location }];
    if (ref.offset !== undefined) kv.push({ key: "offset", value: String(ref.offset) });
    if (ref.length !== undefined) kv.push({ key: "length", value: String(ref.length) });
    p.graph!.initializer![0] = onnx.TensorProto.create({
      name: w, dataType: DataType.FLOAT, dims: [2, 2, 3, 3], dataLocation: onnx.TensorProto.DataLocation.EXTERNAL, externalData: kv,
    });
    const file = path.join(sub, "m.onnx");
    fs.writeFileSync(file, encodeModel(p));
    if (dataFile) fs.writeFileSync(path.resolve(sub, dataFile.name), new Uint8Array(dataFile.bytes));
    return { file, sub, dir };
  }

  function loadError(file: string): ModelError {
    try {
      loadModel(file);
    } catch (e) {
      expect(e).toBeInstanceOf(ModelError);
      return e as ModelError;
    }
    throw new Error(`${file} loaded`);
  }

  it("a well-formed reference loads (the cases below differ only in the reference)", () => {
    const { file } = externalModel({ location: "w.bin", length: 144 }, { name: "w.bin", bytes: 144 });
    expect(loadModel(file).graph.initializers.values().next().value!.toFloat64().length).toBe(36);
  });

  it("missing data file", () => {
    const { file } = externalModel({ location: "w.bin", length: 144 });
    const e = loadError(file);
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/external data file 'w\.bin' not found/);
  });

  it("a saved model whose .data was deleted fails at load, not later", () => {
    const dir = fs.mkdtempSync(path.join(tmp, "ext-del-"));
    const file = path.join(dir, "m.onnx");
    saveModel(loadModel(fixture("demo_repvgg_net.onnx")), file, { externalData: true });
    fs.rmSync(file + ".data");
    expect(loadError(file).message).toMatch(/m\.onnx\.data' not found/);
  });

  it("location escaping the model's folder (../)", () => {
    const { file } = externalModel({ location: "../x.bin", length: 144 }, { name: "../x.bin", bytes: 144 });
    const e = loadError(file);
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/'\.\.\/x\.bin' escapes the model's folder/);
  });

  it("a symlink pointing out of the model's folder (the file, or a folder on its way) is refused", () => {
    const { file, sub, dir } = externalModel({ location: "w.bin", length: 144 }, { name: "../outside.bin", bytes: 144 });
    fs.symlinkSync(path.join(dir, "outside.bin"), path.join(sub, "w.bin"));
    expect(loadError(file).message).toMatch(/external data file 'w\.bin' resolves to .*outside\.bin, outside the folder of .*m\.onnx \(refused\)/);
    const nested = externalModel({ location: "d/w.bin", length: 144 }, { name: "../w.bin", bytes: 144 });
    fs.symlinkSync(nested.dir, path.join(nested.sub, "d"));
    expect(loadError(nested.file).message).toMatch(/'d\/w\.bin' resolves to .*outside the folder/);
    // A link that stays inside the folder still loads.
    const inside = externalModel({ location: "link.bin", length: 144 }, { name: "w.bin", bytes: 144 });
    fs.symlinkSync("w.bin", path.join(inside.sub, "link.bin"));
    expect(loadModel(inside.file).graph.initializers.size).toBe(1);
  });

  it("absolute location", () => {
    const target = path.join(tmp, "abs.bin");
    fs.writeFileSync(target, new Uint8Array(144));
    const { file } = externalModel({ location: target, length: 144 });
    expect(loadError(file).message).toMatch(/is absolute/);
  });

  it("data file shorter than offset + length", () => {
    const { file } = externalModel({ location: "w.bin", offset: 64, length: 144 }, { name: "w.bin", bytes: 150 });
    expect(loadError(file).message).toMatch(/'w\.bin' is 150 bytes, needs 208/);
  });

  it("declared length that does not match the shape", () => {
    const { file } = externalModel({ location: "w.bin", length: 100 }, { name: "w.bin", bytes: 144 });
    expect(loadError(file).message).toMatch(/external length 100 bytes does not match shape \[2,2,3,3\]/);
  });

  it("a huge declared shape fails by its size check (nothing is allocated from it)", () => {
    const { file } = externalModel({ location: "w.bin" }, { name: "w.bin", bytes: 144 });
    const p = decodeModel(bytesOf(file));
    p.graph!.initializer![0]!.dims = [1_000_000, 1_000_000, 3, 3];
    fs.writeFileSync(file, encodeModel(p));
    expect(loadError(file).message).toMatch(/'w\.bin' is 144 bytes, needs 36000000000000/);
  });
});

// --- reduced-precision and double initializers ------------------------------------------------

describe("float16 / bfloat16 / float64 initializers", () => {
  const cases: { dtype: number; name: string; bits: number[]; values: number[] }[] = [
    {
      dtype: DataType.FLOAT16, name: "f16",
      bits: [0x3c00, 0xc000, 0x3555, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0xfc00, 0x8000, 0x7e00],
      values: [1, -2, 0.333251953125, 2 ** -24, 1023 * 2 ** -24, 65504, Infinity, -Infinity, -0, NaN],
    },
    {
      dtype: DataType.BFLOAT16, name: "bf16",
      bits: [0x3f80, 0xc000, 0x3eab, 0x7f7f, 0x0001, 0xff80, 0x8000, 0x7fc0],
      values: [1, -2, 0.333984375, 3.3895313892515355e38, 9.183549615799121e-41, -Infinity, -0, NaN],
    },
  ];

  function modelWith(tensors: ReturnType<typeof onnx.TensorProto.create>[]): Uint8Array {
    const b = new GraphBuilder(13);
    b.output(b.op("Identity", [b.input("x", [1])], {}, "id"), [1]);
    const p = decodeModel(modelToBytes(b.build()));
    p.graph!.initializer = tensors;
    return encodeModel(p);
  }

  const le16 = (bits: number[]) => new Uint8Array(Uint16Array.from(bits).buffer);

  for (const c of cases) {
    it(`${c.name}: raw_data and int32_data decode to the right values and re-encode to the same bits`, () => {
      const bytes = modelWith([
        onnx.TensorProto.create({ name: `${c.name}_raw`, dataType: c.dtype, dims: [c.bits.length], rawData: le16(c.bits) }),
        onnx.TensorProto.create({ name: `${c.name}_i32`, dataType: c.dtype, dims: [c.bits.length], int32Data: c.bits }),
      ]);
      const m = modelFromBytes(bytes);
      for (const suffix of ["raw", "i32"]) {
        const t = m.graph.initializers.get(`${c.name}_${suffix}`)!;
        const got = Array.from(t.toFloat64());
        expect(got).toEqual(c.values); // toEqual tells -0 from 0 and matches NaN with NaN
        const again = Tensor.fromFloat64("again", c.dtype, t.dims, t.toFloat64());
        expect(Array.from(again.data() as Uint16Array)).toEqual(c.bits);
      }
      expect(same(modelToBytes(m), bytes)).toBe(true);
    });
  }

  it("float64: raw_data and double_data decode exactly and re-encode to the same bits", () => {
    const values = [Math.PI, -1e300, 5e-324, -0, Infinity, 1 / 3];
    const bytes = modelWith([
      onnx.TensorProto.create({ name: "f64_raw", dataType: DataType.DOUBLE, dims: [values.length], rawData: new Uint8Array(Float64Array.from(values).buffer) }),
      onnx.TensorProto.create({ name: "f64_typed", dataType: DataType.DOUBLE, dims: [values.length], doubleData: values }),
    ]);
    const m = modelFromBytes(bytes);
    for (const name of ["f64_raw", "f64_typed"]) {
      const t = m.graph.initializers.get(name)!;
      expect(Array.from(t.toFloat64())).toEqual(values);
      const again = Tensor.fromFloat64("again", DataType.DOUBLE, t.dims, t.toFloat64());
      expect(new Uint8Array((again.data() as Float64Array).buffer)).toEqual(new Uint8Array(Float64Array.from(values).buffer));
    }
    expect(same(modelToBytes(m), bytes)).toBe(true);
  });

  it("float16 rounding: nearest, ties to even", () => {
    // 1 + 2^-11 is halfway between 1 and the next half (1 + 2^-10): ties to even gives 1.
    const t = Tensor.fromFloat64("r", DataType.FLOAT16, [3], Float64Array.from([1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20]));
    expect(Array.from(t.data() as Uint16Array)).toEqual([0x3c00, 0x3c02, 0x3c01]);
  });
});

// --- load errors ---------------------------------------------------------------------------------

describe("load rejects", () => {
  it("an unknown dtype, and names the initializer", () => {
    const b = new GraphBuilder(13);
    b.output(b.op("Identity", [b.input("x", [1])], {}, "id"), [1]);
    const p = decodeModel(modelToBytes(b.build()));
    p.graph!.initializer = [onnx.TensorProto.create({ name: "weird", dataType: 999, dims: [1], rawData: new Uint8Array(4) })];
    expect(() => modelFromBytes(encodeModel(p), "m.onnx")).toThrow(/^m\.onnx: initializer 'weird' has unknown dtype 999$/);
  });

  it("a lazily decoded tensor of an unsupported dtype names the initializer", () => {
    const b = new GraphBuilder(13);
    b.output(b.op("Identity", [b.input("x", [1])], {}, "id"), [1]);
    const p = decodeModel(modelToBytes(b.build()));
    p.graph!.initializer = [onnx.TensorProto.create({ name: "cplx", dataType: DataType.COMPLEX64, dims: [2], rawData: new Uint8Array(16) })];
    const m = modelFromBytes(encodeModel(p));
    expect(() => m.graph.initializers.get("cplx")!.toFloat64()).toThrow(/^initializer 'cplx': unsupported dtype complex64$/);
  });
});

describe("shape inference", () => {
  const shapesOf = (model: ReturnType<GraphBuilder["build"]>) =>
    inferShapes(model.graph, { constant: (n) => { const t = model.graph.initializers.get(n); return t ? Array.from(t.toFloat64()) : undefined; } });

  it("Resize: sizes from the shape plumbing (the batch stays a symbol), integral scales, and rank only where sizes' meaning changes (axes)", async () => {
    const b = new GraphBuilder(13);
    const x = b.input("x", ["N", 8, 4, 4]);
    const g = b.input("g", ["N", 8, 8, 8]);
    const sizes = b.op("Concat", [b.op("Slice", [b.op("Shape", [x]), b.int64("s", [0]), b.int64("e", [2])]), b.int64("hw", [8, 8])], { axis: 0 });
    const bySizes = b.op("Resize", [x, "", "", sizes], { mode: "nearest" });
    const byScales = b.op("Resize", [x, "", b.constant("scales", [4], [1, 1, 2, 2])], { mode: "nearest" });
    // A Mul with an input of the same symbolic batch: broadcasting proves nothing unless the symbols match.
    const gated = b.op("Mul", [g, bySizes]);
    b.output(gated);
    b.output(byScales);
    const model = b.build();
    const shapes = shapesOf(model);
    expect(shapes.get(bySizes)?.dims).toEqual([undefined, 8, 8, 8]);
    expect(shapes.get(bySizes)?.symbols?.[0]).toBe(shapes.get(x)?.symbols?.[0] ?? "N");
    expect(shapes.get(byScales)?.dims).toEqual([undefined, 8, 8, 8]);
    expect(shapes.get(gated)?.dims).toEqual([undefined, 8, 8, 8]);
    // The claims agree with onnxruntime's shapes at batch 3.
    const check = await checkInferredShapes(model, { x: [3, 8, 4, 4], g: [3, 8, 8, 8] });
    expect(check.wrong).toEqual([]);
    expect(check.checkedDims).toBeGreaterThan(0);
    const c = new GraphBuilder(18);
    const y = c.op("Resize", [c.input("x", [1, 8, 4, 4]), "", "", c.int64("sz", [8, 8])], { mode: "nearest", axes: [2, 3] });
    c.output(y);
    expect(shapesOf(c.build()).get(y)?.dims).toEqual([undefined, undefined, undefined, undefined]);
  });

  it("follows PyTorch's dynamic shape plumbing (Shape → Gather → Div → Cast → Unsqueeze → Concat → Reshape) to the static dims", () => {
    const b = new GraphBuilder(13);
    const x = b.input("x", ["N", 8, 12, 12]);
    const shape = b.op("Shape", [x]);
    const dim = (i: number) => b.op("Gather", [shape, b.scalarInt64("i", i)], { axis: 0 });
    const hParts = b.op("Cast", [b.op("Div", [dim(2), b.scalarInt64("six", 6)])], { to: DataType.INT64 });
    const unsq = (t: string) => b.op("Unsqueeze", [t, b.int64("axes", [0])]);
    const target = b.op("Concat", [unsq(dim(0)), b.int64("c", [8]), unsq(hParts), b.int64("h", [6]), b.int64("wp", [2]), b.int64("w", [6])], { axis: 0 });
    const y = b.op("Reshape", [x, target]);
    const sliced = b.op("Reshape", [x, b.op("Concat", [b.op("Slice", [shape, b.int64("s", [0]), b.int64("e", [2])]), b.int64("rest", [-1])], { axis: 0 })]);
    b.output(y);
    b.output(sliced);
    const shapes = shapesOf(b.build());
    expect(shapes.get(y)?.dims).toEqual([undefined, 8, 2, 6, 2, 6]);
    expect(shapes.get(sliced)?.dims).toEqual([undefined, 8, 144]); // the batch is one symbol on both sides
  });

  it("never infers a wrong dim (found in review): Slice with unknown axes, a negative step, 2-D values, narrowing Casts", () => {
    const b = new GraphBuilder(13);
    const x = b.input("x", ["N", 8, 5]);
    const axes = b.input("axes", [1], DataType.INT64); // present but unknown: no default axes
    const s1 = b.op("Slice", [x, b.int64("st", [0]), b.int64("en", [4]), axes]);
    // step −1 from a very negative start: ONNX clamps start to 0 → one element, not none
    const s2 = b.op("Slice", [x, b.int64("st", [-10]), b.int64("en", [-100]), b.int64("ax", [2]), b.int64("sp", [-1])]);
    // a 2-D shape value sliced by rows must not be read as a flat list
    const u = b.op("Unsqueeze", [b.op("Shape", [x]), b.int64("a", [0])]);
    const rows = b.op("Slice", [b.op("Concat", [u, u], { axis: 0 }), b.int64("st", [1]), b.int64("en", [2]), b.int64("ax", [0])]);
    const r1 = b.op("Reshape", [x, b.op("Squeeze", [rows, b.int64("a0", [0])])]);
    // 2049 → float16 → int64 is 2048 at run time: a narrowing Cast is not followed
    const y = b.input("y", ["N", 2049]);
    const d = b.op("Cast", [b.op("Cast", [b.op("Gather", [b.op("Shape", [y]), b.scalarInt64("i", 1)], { axis: 0 })], { to: DataType.FLOAT16 })], { to: DataType.INT64 });
    const r2 = b.op("Reshape", [y, b.op("Concat", [b.int64("m", [-1]), b.op("Unsqueeze", [d, b.int64("a", [0])])], { axis: 0 })]);
    for (const t of [s1, s2, r1, r2]) b.output(t);
    const shapes = shapesOf(b.build());
    expect(shapes.get(s1)?.dims).toEqual([undefined, undefined, undefined]);
    expect(shapes.get(s2)?.dims).toEqual([undefined, 8, 1]);
    expect(shapes.get(r1)?.dims).toBeUndefined(); // unknown, not the flat-list misreading [4]
    expect(shapes.get(r2)?.dims).toEqual([undefined, undefined]);
  });

  it("a dynamic batch is one symbol: ShuffleNet's channel shuffle `view(N, -1, h, w)` resolves its −1", () => {
    const b = new GraphBuilder(13);
    const x = b.input("x", ["N", 8, 6, 6]);
    const y = b.op("Relu", [b.op("Conv", [x, b.constant("w", [8, 8, 1, 1], new Array(64).fill(0.1))], { kernel_shape: [1, 1] })]);
    const batch = b.op("Unsqueeze", [b.op("Gather", [b.op("Shape", [y]), b.scalarInt64("i", 0)], { axis: 0 }), b.int64("a", [0])]);
    const grouped = b.op("Reshape", [y, b.op("Concat", [batch, b.int64("g", [2, 4, 6, 6])], { axis: 0 })]);
    const shuffled = b.op("Transpose", [grouped], { perm: [0, 2, 1, 3, 4] });
    const back = b.op("Reshape", [shuffled, b.op("Concat", [batch, b.int64("rest", [-1, 6, 6])], { axis: 0 })]);
    // a different run-time dim (x's dim 1 is 8, but a symbol of another input) must not resolve it
    const z = b.input("z", ["M", 3]);
    const other = b.op("Unsqueeze", [b.op("Gather", [b.op("Shape", [z]), b.scalarInt64("j", 0)], { axis: 0 }), b.int64("a2", [0])]);
    const wrong = b.op("Reshape", [y, b.op("Concat", [other, b.int64("r2", [-1, 6, 6])], { axis: 0 })]);
    b.output(back);
    b.output(wrong);
    const shapes = shapesOf(b.build());
    expect(shapes.get(grouped)?.dims).toEqual([undefined, 2, 4, 6, 6]);
    expect(shapes.get(back)?.dims).toEqual([undefined, 8, 6, 6]);
    expect(shapes.get(wrong)?.dims).toEqual([undefined, undefined, 6, 6]);
  });

  it("an unknown dim broadcast against a scalar stays unknown (not 1)", () => {
    const b = new GraphBuilder(13);
    const x = b.input("x", ["N", 4, 6, 6]);
    const y = b.op("Add", [x, b.constant("zero", [], [0])]);
    const z = b.op("Mul", [b.constant("c", [1, 4, 1, 1], [1, 2, 3, 4]), x]);
    b.output(y);
    b.output(z);
    const shapes = shapesOf(b.build());
    expect(shapes.get(y)?.dims).toEqual([undefined, 4, 6, 6]);
    expect(shapes.get(z)?.dims).toEqual([undefined, 4, 6, 6]);
  });
});
