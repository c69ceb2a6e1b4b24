// The proof compares the candidate with the reference as its file says, and never changes the
// models it proves: two ways verification's speed-ups (weights fed from the models in memory,
// moved in place for the noise samples) could have broken that, found in review.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { GraphBuilder } from "../src/ir/builder.js";
import { loadModel, saveModel } from "../src/ir/io.js";
import { verifyModels } from "../src/verify/verify.js";

const weights = (n: number, scale = 0.3) => Array.from({ length: n }, (_, i) => Math.sin(1.7 * i) * scale);

describe("the proof's reference is the file, not the model in memory", () => {
  it("a candidate whose pass changed a weight shared with the reference in place fails against the reference file", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rv-"));
    const b = new GraphBuilder(13);
    b.input("x", [1, 2, 6, 6]);
    b.output(b.op("Conv", ["x", b.constant("w", [2, 2, 3, 3], weights(36))], { pads: [1, 1, 1, 1] }, "y"));
    const file = path.join(dir, "m.onnx");
    saveModel(b.build(), file);
    const reference = loadModel(file);
    const candidate = reference.clone(); // tensors shared, as optimize's work copy
    // A buggy pass writing into a shared tensor's data (the reference in memory changes with it).
    const w = [...candidate.graph.initializers.values()][0]!.data() as Float32Array;
    for (let i = 0; i < w.length; i++) w[i] = w[i]! * 2;
    const r = await verifyModels(reference, candidate, { referenceFile: file, runs: 1 });
    expect(r.ok).toBe(false);
  });
});

describe("verification never changes the models it proves", () => {
  it("optimize(reference) running while verifyModels(reference, …) awaits onnxruntime: the reference's bytes are unchanged after", async () => {
    const { optimize } = await import("../src/app/optimize.js");
    const { modelToBytes } = await import("../src/ir/bytes.js");
    const ort = await import("onnxruntime-node");
    const { vi } = await import("vitest");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rv-"));
    const b = new GraphBuilder(13);
    b.input("x", [1, 4, 6, 6]);
    let y = "x";
    for (let i = 0; i < 6; i++) y = b.op("Conv", [y, b.constant(`w${i}`, [4, 4, 3, 3], weights(144, 0.3 + i / 10))], { pads: [1, 1, 1, 1] });
    b.output(y);
    const file = path.join(dir, "m.onnx");
    saveModel(b.build(), file);
    const reference = loadModel(file);
    const views = [...reference.graph.initializers.values()].filter((t) => t.data().buffer === t.original?.rawData?.buffer);
    expect(views.length).toBeGreaterThan(0); // some weights are views of the file's bytes in memory
    const before = Buffer.from(modelToBytes(reference));
    const candidate = reference.clone();
    const run = ort.InferenceSession.prototype.run;
    let calls = 0;
    const spy = vi.spyOn(ort.InferenceSession.prototype, "run").mockImplementation(function (this: ort.InferenceSession, ...args: unknown[]) {
      const first = ++calls === 1;
      const result = (run as (...a: unknown[]) => Promise<ort.InferenceSession.ReturnType>).apply(this, args);
      // Another task of the program runs between the reference's first run and its noise sample.
      return first ? result.then((r) => (optimize(reference), r)) : result;
    });
    try {
      await verifyModels(reference, candidate, { runs: 1 });
    } finally {
      spy.mockRestore();
    }
    expect(Buffer.compare(Buffer.from(modelToBytes(reference)), before)).toBe(0);
  });
});
