import { describe, expect, it } from "vitest";
import { Net } from "../../test/helpers/graphs.js";
import { applyAndProve, matchAt, nodeOf, opCounts, refusalAt } from "../../test/helpers/rules.js";
import { affineBeforeTranspose as rule } from "./affine-before-transpose.js";

/** ConvNeXt's layer scale: γ[C,1,1] · permute(Linear(x channels-last)) back to NCHW. */
function layerScale(opts: { dense?: boolean; gammaDims?: number[] } = {}) {
  const n = new Net(9);
  const x = n.input("x", [1, 4, 4, 8]);
  const w = n.constant("w", [8, 8], Array.from({ length: 64 }, (_, i) => Math.cos(i)));
  const y = opts.dense === false ? n.op("Relu", [x]) : n.op("MatMul", [x, w]);
  const t = n.op("Transpose", [y], { perm: [0, 3, 1, 2] });
  const dims = opts.gammaDims ?? [8, 1, 1];
  const gamma = n.constant("gamma", dims, Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => 0.5 + i / 10));
  return n.finish(n.op("Mul", [t, gamma]));
}

describe("affine-before-transpose", () => {
  it("matches a constant Mul after a Transpose of a dense layer's output", () => {
    const model = layerScale();
    const m = matchAt(model, rule, nodeOf(model, "Mul"));
    if ("refused" in m) throw new Error(m.refused);
    expect(m.remove.map((n) => n.opType).sort()).toEqual(["Mul", "Transpose"]);
    expect(m.moved.dims).toEqual([1, 1, 1, 8]);
  });

  it("refuses a constant that broadcasts the tensor up; passes over a Transpose with no dense layer before it", () => {
    const up = layerScale({ gammaDims: [2, 8, 1, 1] });
    expect(refusalAt(up, rule, nodeOf(up, "Mul")).refused).toMatch(/broadcast the transposed tensor/);
    const relu = layerScale({ dense: false });
    expect(refusalAt(relu, rule, nodeOf(relu, "Mul"))).toMatchObject({ quiet: true, refused: "no dense layer before the Transpose" });
  });

  it("rewrites Mul(Transpose(y)) as Transpose(Mul(y)) with the constant permuted back", async () => {
    const { model: out } = await applyAndProve(layerScale(), [rule]);
    expect(out.graph.nodes.map((n) => n.opType)).toEqual(["MatMul", "Mul", "Transpose"]);
    expect(opCounts(out)).toEqual({ MatMul: 1, Mul: 1, Transpose: 1 });
    expect(out.graph.initializers.get(nodeOf(out, "Mul").inputs[1]!)!.dims).toEqual([1, 1, 1, 8]);
  });
});
