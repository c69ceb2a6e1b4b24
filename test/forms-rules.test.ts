// The issue-12 forms on small built graphs: crops folding into padding (and staying when there is no
// padding to absorb them), sums written as stacks (and left alone when the stack is read elsewhere),
// a whole-map AveragePool becoming GlobalAveragePool (and a partial one staying), GELU and LayerNorm
// written out kept whole. Every optimized graph is proven equal in onnxruntime.
import { describe, expect, it } from "vitest";
import { DataType } from "../src/ir/dtype.js";
import { foldAndVerify, Net, ops } from "./helpers/graphs.js";

const i64 = (net: Net, values: number[]) => net.constant("i", [values.length], values, DataType.INT64);
const scalar = (net: Net, v: number) => net.constant("c", [], [v]);

describe("crops (Slice) as negative padding", () => {
  it("ACNet-style 1x3 / 3x1 branches on cropped inputs fold with the 3x3 pad-0 branch into one Conv", async () => {
    const net = new Net(3);
    const x = net.input("x", ["N", 4, 9, 8]);
    const sq = net.convBn(x, 4, 6, 3, { pads: [0, 0, 0, 0] });
    const cols = net.op("Slice", [x, i64(net, [1]), i64(net, [-1]), i64(net, [3])]);
    const ver = net.convBn(cols, 4, 6, [3, 1], { pads: [0, 0, 0, 0] });
    const rows = net.op("Slice", [x, i64(net, [1]), i64(net, [-1]), i64(net, [2])]);
    const hor = net.convBn(rows, 4, 6, [1, 3], { pads: [0, 0, 0, 0] });
    const { model } = await foldAndVerify(net.finish(net.add(sq, ver, hor)));
    expect(ops(model)).toEqual({ Conv: 1 });
  });

  it("a crop more than the conv's padding stays a Slice, with the reason", async () => {
    const net = new Net(4);
    const x = net.input("x", ["N", 4, 9, 8]);
    const cropped = net.op("Slice", [x, i64(net, [2]), i64(net, [-2]), i64(net, [3])]);
    const y = net.convBn(cropped, 4, 6, 3, { pads: [1, 1, 1, 1] });
    const { model, report } = await foldAndVerify(net.finish(y));
    expect(ops(model).Slice).toBe(1);
    expect(report.refusals.map((r) => r.reason).join("\n")).toMatch(/crop \(Slice\)/);
  });
});

describe("sums written as stacks", () => {
  it("ReduceSum and ReduceMean over Concat(Unsqueeze(branch)) fold like Add trees", async () => {
    for (const reduce of ["ReduceSum", "ReduceMean"]) {
      const net = new Net(5, 13);
      const x = net.input("x", ["N", 4, 7, 7]);
      const branches = [net.convBn(x, 4, 4, 3), net.convBn(x, 4, 4, 1, { pads: [0, 0, 0, 0] }), net.bn(x, 4)];
      const stacked = net.op("Concat", branches.map((b) => net.op("Unsqueeze", [b, i64(net, [0])])), { axis: 0 });
      const s = reduce === "ReduceSum" ? net.op(reduce, [stacked, i64(net, [0])], { keepdims: 0 }) : net.op(reduce, [stacked], { axes: [0], keepdims: 0 });
      const { model } = await foldAndVerify(net.finish(net.op("Relu", [net.bn(s, 4)])));
      expect(ops(model), reduce).toEqual({ Conv: 1, Relu: 1 });
    }
  });

  it("a stack with another reader is left alone", async () => {
    const net = new Net(6, 13);
    const x = net.input("x", ["N", 4, 6, 6]);
    const stacked = net.op("Concat", [net.conv(x, 4, 4, 3), net.conv(x, 4, 4, 1, { pads: [0, 0, 0, 0] })].map((b) => net.op("Unsqueeze", [b, i64(net, [0])])), { axis: 0 });
    const s = net.op("ReduceSum", [stacked, i64(net, [0])], { keepdims: 0 });
    const m = net.op("ReduceMax", [stacked], { axes: [0], keepdims: 0 });
    const { model, report } = await foldAndVerify(net.finish(net.add(s, m)));
    expect(ops(model).ReduceSum).toBe(1);
    expect(report.refusals.map((r) => r.reason).join("\n")).toMatch(/the stack has another reader/);
  });
});

describe("pooling stays a reduction", () => {
  it("Pad 0 + AveragePool over the whole static map → GlobalAveragePool; SE convs stay 1x1", async () => {
    const net = new Net(7);
    const x = net.input("x", ["N", 8, 6, 6]);
    const padded = net.op("Pad", [x, i64(net, [0, 0, 0, 0, 0, 0, 0, 0]), scalar(net, 0)]);
    const pooled = net.op("AveragePool", [padded], { kernel_shape: [6, 6], strides: [6, 6] });
    const gate = net.op("Sigmoid", [net.conv(net.op("Relu", [net.conv(pooled, 8, 2, 1, { bias: true })]), 2, 8, 1, { bias: true })]);
    const { model } = await foldAndVerify(net.finish(net.op("Mul", [x, gate])));
    expect(ops(model)).toEqual({ GlobalAveragePool: 1, Conv: 2, Relu: 1, Sigmoid: 1, Mul: 1 });
    expect(model.graph.nodes.filter((n) => n.opType === "Conv").every((n) => n.ints("kernel_shape")!.every((k) => k === 1))).toBe(true);
  });

  it("a pooling window smaller than the map is not global, and alone it is not turned into a Conv", async () => {
    const net = new Net(8);
    const x = net.input("x", ["N", 8, 6, 6]);
    const pooled = net.op("AveragePool", [net.op("Pad", [x, i64(net, [0, 0, 1, 1, 0, 0, 1, 1]), scalar(net, 0)])], { kernel_shape: [3, 3], strides: [1, 1] });
    const { model } = await foldAndVerify(net.finish(net.op("Relu", [pooled])));
    expect(ops(model)).toEqual({ Pad: 1, AveragePool: 1, Relu: 1 });
  });
});

describe("fused units are kept whole", () => {
  it("GELU written out (Div √2, Erf, Add 1, Mul x, Mul 0.5) before a conv keeps its ×0.5", async () => {
    const net = new Net(9);
    const x = net.input("x", ["N", 4, 5, 5]);
    const h = net.conv(x, 4, 8, 1, { pads: [0, 0, 0, 0], bias: true });
    const erf = net.op("Erf", [net.op("Div", [h, scalar(net, Math.SQRT2)])]);
    const gelu = net.op("Mul", [net.op("Mul", [h, net.op("Add", [erf, scalar(net, 1)])]), scalar(net, 0.5)]);
    const { model, report } = await foldAndVerify(net.finish(net.conv(gelu, 8, 4, 1, { pads: [0, 0, 0, 0], bias: true })));
    expect(ops(model)).toEqual({ Conv: 2, Div: 1, Erf: 1, Add: 1, Mul: 2 });
    expect(report.refusals.map((r) => r.reason).join("\n")).toMatch(/part of a GELU written out: kept whole/);
  });

  it("a LayerNorm written out keeps γ and β before a MatMul", async () => {
    const net = new Net(10);
    const x = net.input("x", ["N", 6, 8]);
    const mean = net.op("ReduceMean", [x], { axes: [-1], keepdims: 1 });
    const d = net.op("Sub", [x, mean]);
    const v = net.op("ReduceMean", [net.op("Pow", [d, scalar(net, 2)])], { axes: [-1], keepdims: 1 });
    const norm = net.op("Div", [d, net.op("Sqrt", [net.op("Add", [v, scalar(net, 1e-5)])])]);
    const ln = net.op("Add", [net.op("Mul", [norm, net.constant("g", [8], Array.from({ length: 8 }, (_, i) => 1 + i / 8))]), net.constant("b", [8], Array.from({ length: 8 }, (_, i) => i / 10))]);
    const y = net.op("MatMul", [ln, net.constant("w", [8, 5], Array.from({ length: 40 }, (_, i) => Math.sin(i)))]);
    const { model } = await foldAndVerify(net.finish(y));
    expect(ops(model).Mul).toBe(1);
    expect(ops(model).Add).toBe(2);
  });
});

describe("BN over [N, C, L] is an affine on axis 1", () => {
  const tokens = (net: Net, x: string) => net.op("Transpose", [x], { perm: [0, 2, 1] });
  const linear = (net: Net, x: string, i: number, o: number) =>
    net.op("Add", [net.op("MatMul", [x, net.constant("w", [i, o], Array.from({ length: i * o }, () => net.r() - 0.5))]), net.constant("b", [o], Array.from({ length: o }, () => net.r()))]);

  it("folds through Transpose into two Linears and through an AveragePool into the next BN", async () => {
    const net = new Net(11);
    const x = net.input("x", ["N", 6, 8]);
    const t = tokens(net, net.bn(x, 6));
    const q = linear(net, t, 6, 4);
    const pooled = net.bn(net.op("AveragePool", [net.bn(x, 6)], { kernel_shape: [2], strides: [2] }), 6);
    const k = linear(net, tokens(net, pooled), 6, 4);
    const { model } = await foldAndVerify(net.finish(net.op("Concat", [q, k], { axis: 1 })));
    expect(ops(model).BatchNormalization ?? 0).toBe(0);
  });

  it("a reader that does not absorb the affine (a Relu) leaves the BN, with the reason", async () => {
    const net = new Net(12);
    const x = net.input("x", ["N", 6, 8]);
    const n = net.bn(x, 6);
    const y = net.op("Add", [linear(net, tokens(net, n), 6, 4), net.op("ReduceMean", [net.op("Relu", [tokens(net, n)])], { axes: [2], keepdims: 1 })]);
    const { model, report } = await foldAndVerify(net.finish(y));
    expect(ops(model).BatchNormalization).toBe(1);
    expect(report.refusals.map((r) => r.reason).join("\n")).toMatch(/BatchNormalization over \[\?,6,8\].*read by Relu/);
  });
});
