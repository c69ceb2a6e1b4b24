// Issue 11, class 8: nothing may recurse once per node of a graph (a 5,000-node chain used to
// overflow the stack in the region walk). Chains of 20,000 nodes go through loading, shape
// inference, every pass, garbage collection, validation and saving here; README quotes a
// 100,000-node run of the CLI.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { GraphBuilder } from "../src/ir/builder.js";
import { loadModel, modelFromBytes, modelToBytes, saveModel } from "../src/ir/io.js";
import { inferShapes } from "../src/ir/shapes.js";
import { optimize } from "../src/app/optimize.js";
import { runModel, tensorToFloat64 } from "../src/verify/verify.js";
import { ops } from "./helpers/graphs.js";

const N = 20_000;
const C = 3;
const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-deep-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/**
 * x → (Conv 1x1 → Mul) × N/2. Kernels are permutations scaled by powers of two and the Muls
 * undo the scale, so float32 evaluation is exact and the whole chain is a permutation of x.
 */
function convMulChain(): { model: ReturnType<GraphBuilder["build"]>; perm: number[] } {
  const b = new GraphBuilder(13);
  let t = b.input("x", [1, C, 4, 4]);
  let perm = [0, 1, 2];
  for (let i = 0; i < N / 2; i++) {
    const p = i % 2 === 0 ? [1, 2, 0] : [2, 0, 1];
    const w = new Array(C * C).fill(0);
    for (let o = 0; o < C; o++) w[o * C + p[o]!] = 2;
    t = b.op("Conv", [t, b.constant("w", [C, C, 1, 1], w)], { kernel_shape: [1, 1] });
    t = b.op("Mul", [t, b.constant("s", [1], [0.5])]);
    perm = perm.map((_, o) => perm[p[o]!]!);
  }
  b.output(t, [1, C, 4, 4]);
  return { model: b.build(), perm };
}

describe(`a ${N.toLocaleString("en-US")}-node chain`, () => {
  it("folds into one Conv, computes the same function, and saves and loads back", async () => {
    const { model, perm } = convMulChain();
    expect(model.graph.nodes.length).toBe(N);
    const file = path.join(work, "chain.onnx");
    saveModel(model, file);
    const loaded = loadModel(file);
    expect(inferShapes(loaded.graph).get(loaded.graph.outputs[0]!.name!)?.dims).toEqual([1, C, 4, 4]);
    const { model: out, report } = optimize(loaded);
    expect(ops(out)).toEqual({ Conv: 1 });
    expect(report.rewrites.length).toBe(1);
    const x = Float32Array.from({ length: C * 16 }, (_, i) => i - 7.5);
    const y = tensorToFloat64((await runModel(modelFromBytes(modelToBytes(out)), { x: new ort.Tensor("float32", x, [1, C, 4, 4]) }))[out.graph.outputs[0]!.name!]!)!;
    const expected = Array.from({ length: C * 16 }, (_, i) => x[perm[Math.floor(i / 16)]! * 16 + (i % 16)]!);
    expect(Array.from(y)).toEqual(expected);
  });

  it("an Add comb over distinct inputs is refused once, with a bounded message", () => {
    const b = new GraphBuilder(13);
    let t = b.input("x", [1, C, 2, 2]);
    for (let i = 0; i < N / 4; i++) t = b.op("Add", [b.op("Relu", [t]), b.input(`z${i}`, [1, C, 2, 2])]);
    b.output(t);
    const { model, report } = optimize(b.build());
    expect(model.graph.nodes.length).toBe(N / 2);
    const refusals = report.refusals.filter((r) => r.pass === "collapse-linear-regions");
    expect(refusals.length).toBeLessThanOrEqual(N / 4);
    expect(Math.max(...refusals.map((r) => r.reason.length))).toBeLessThan(400);
  });

  it("a chain of sums nested N/2 deep (each an inner term of the next) is walked without recursion", () => {
    const b = new GraphBuilder(13);
    const x = b.input("x", [1, C, 2, 2]);
    let t = x;
    for (let i = 0; i < N / 2; i++) t = b.op("Add", [t, b.input(`z${i}`, [1, C, 2, 2])]);
    b.output(t);
    const { model, report } = optimize(b.build());
    expect(model.graph.nodes.length).toBe(N / 2);
    expect(report.refusals.some((r) => /… \(\d+ inputs\)/.test(r.reason))).toBe(true);
  });
});
