// The region-collapse pass on graphs built in TypeScript: forms beyond the PyTorch fixtures
// (any Add order and nesting, Sub/Mul/Div affine forms, Pad, AveragePool, odd sizes, float16),
// and the preconditions that must leave a graph alone.
import { describe, expect, it } from "vitest";
import { DataType } from "../src/ir/dtype.js";
import { optimize } from "../src/app/optimize.js";
import { foldAndVerify, Net, ops } from "./helpers/graphs.js";
import { randomArray } from "./helpers/random.js";

describe("parallel branches", () => {
  it("Add tree in any order and nesting, with a ReLU branch kept as a separate term", async () => {
    const n = new Net(3);
    const x = n.input("x", ["N", 6, 11, 9]);
    const relu = n.op("Relu", [n.conv(x, 6, 6, 3)]);
    const a = n.convBn(x, 6, 6, 3);
    const b = n.convBn(x, 6, 6, 1);
    const c = n.bn(x, 6);
    // ((a + relu) + (b + c)): the three x-branches merge; the ReLU branch stays a term.
    const y = n.add(n.op("Add", [a, relu]), n.op("Add", [b, c]));
    const { model, report } = await foldAndVerify(n.finish(y));
    expect(ops(model)).toEqual({ Conv: 2, Relu: 1, Add: 1 });
    expect(report.rewrites.some((r) => /kept term/.test(r.summary))).toBe(true);
  });

  it("n-ary Sum, Sub, and a negated identity", async () => {
    const n = new Net(4);
    const x = n.input("x", [1, 4, 8, 8]);
    const s = n.op("Sum", [n.convBn(x, 4, 4, 3), n.convBn(x, 4, 4, [1, 3]), n.convBn(x, 4, 4, [3, 1])]);
    const y = n.op("Sub", [s, n.bn(x, 4)]);
    const { model } = await foldAndVerify(n.finish(y));
    expect(ops(model)).toEqual({ Conv: 1 });
  });

  it("asymmetric explicit pads, stride 2, odd sizes, depthwise + dense → dense", async () => {
    const n = new Net(5);
    const x = n.input("x", [2, 4, 13, 7]);
    const a = n.conv(x, 4, 4, 3, { stride: 2, pads: [1, 0, 1, 2] });
    const b = n.conv(x, 4, 4, [1, 3], { stride: 2, pads: [0, 0, 0, 2], group: 4 });
    const { model } = await foldAndVerify(n.finish(n.add(a, b)));
    expect(ops(model)).toEqual({ Conv: 1 });
    const conv = model.graph.nodes[0]!;
    expect(conv.int("group", 1)).toBe(1);
  });

  it("grouped branches stay grouped (never densified)", async () => {
    const n = new Net(6);
    const x = n.input("x", [1, 8, 9, 9]);
    const y = n.add(n.conv(x, 8, 8, 5, { group: 8 }), n.conv(x, 8, 8, 3, { group: 8 }), x);
    const { model } = await foldAndVerify(n.finish(y));
    expect(model.graph.nodes[0]!.int("group", 1)).toBe(8);
    expect(model.graph.initializers.get(model.graph.nodes[0]!.inputs[1]!)!.dims).toEqual([8, 1, 5, 5]);
  });

  it("per-channel Mul/Div/Add/Sub constants fold in every broadcast form", async () => {
    const n = new Net(7);
    const x = n.input("x", [1, 3, 6, 6]);
    let y = n.conv(x, 3, 3, 3);
    y = n.op("Mul", [y, n.constant("g", [1, 3, 1, 1], [0.5, -2, 3])]);
    y = n.op("Div", [y, n.constant("d", [3, 1, 1], [2, 4, -8])]);
    y = n.op("Add", [n.constant("t", [], [0.25]), y]);
    y = n.op("Sub", [n.constant("u", [1, 3, 1, 1], [1, 2, 3]), y]);
    const { model } = await foldAndVerify(n.finish(y));
    expect(ops(model)).toEqual({ Conv: 1 });
  });

  it("a Pad with value 0 merges into the conv's padding", async () => {
    const n = new Net(8);
    const x = n.input("x", [1, 2, 7, 7]);
    const p = n.op("Pad", [x, n.int64("pads", [0, 0, 2, 1, 0, 0, 0, 1])]);
    const y = n.add(n.conv(p, 2, 2, 3, { pads: [0, 0, 0, 0] }), n.conv(p, 2, 2, 3, { pads: [0, 0, 0, 0] }));
    const { model } = await foldAndVerify(n.finish(y));
    expect(ops(model)).toEqual({ Conv: 1 });
  });

  it("float16 weights and activations fold in float64 and verify within fp16 tolerance", async () => {
    const n = new Net(9, 13, DataType.FLOAT16);
    const x = n.input("x", [1, 4, 8, 8]);
    const y = n.add(n.convBn(x, 4, 4, 3), n.convBn(x, 4, 4, 1), n.bn(x, 4));
    const { model, report } = await foldAndVerify(n.finish(y));
    expect(ops(model)).toEqual({ Conv: 1 });
    expect(report.after.dtype).toBe("float16");
  });
});

describe("preconditions leave the graph alone", () => {
  it("constant folding judges growth on what it writes: an OREPA kernel grown 9x inside the graph folds, an image expanded from a scalar stays and says why", async () => {
    const n = new Net(12);
    const x = n.input("x", [1, 32, 16, 16]);
    // oi ⊗ hw → oihw: 9216 values from 1033, read only by the kernel sum that feeds the Conv.
    const grown = n.op("Einsum", [n.constant("w1x1", [32, 32], randomArray(n.r, 1024)), n.constant("avg", [3, 3], new Array(9).fill(1 / 9))], { equation: "oi,hw->oihw" });
    const kernel = n.op("Add", [grown, n.constant("origin", [32, 32, 3, 3], randomArray(n.r, 9216))]);
    const y = n.op("Conv", [x, kernel], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
    const bias = n.op("Expand", [n.constant("s", [], [0.5]), n.int64("shape", [1, 32, 16, 16])]);
    const { model, report } = await foldAndVerify(n.finish(n.op("Add", [y, bias])));
    expect(ops(model)).toEqual({ Conv: 1, Expand: 1, Add: 1 });
    expect(report.refusals.map((r) => r.reason).join()).toMatch(/would write 8192 values computed from 5 constant values/);
  });

  it("a [C]-shaped Mul on NCHW scales columns, not channels: not folded", () => {
    const n = new Net(10);
    const x = n.input("x", [1, 4, 6, 4]);
    const y = n.op("Mul", [n.conv(x, 4, 4, 3), n.constant("g", [4], [1, 2, 3, 4])]);
    const { model, report } = optimize(n.finish(y));
    expect(ops(model)).toEqual({ Conv: 1, Mul: 1 });
    expect(report.refusals.map((r) => r.reason).join()).toMatch(/not per-channel/);
  });

  it("a BN before a zero-padded conv is not folded (border), before an unpadded one it is", async () => {
    const n = new Net(11);
    const x = n.input("x", [1, 3, 7, 7]);
    const padded = n.conv(n.bn(x, 3), 3, 3, 3);
    const { model, report } = optimize(n.finish(padded));
    expect(ops(model)).toEqual({ BatchNormalization: 1, Conv: 1 });
    expect(report.refusals.map((r) => r.reason).join()).toMatch(/border output is its bias/);
    const m = new Net(11);
    const x2 = m.input("x", [1, 3, 7, 7]);
    const { model: folded } = await foldAndVerify(m.finish(m.conv(m.bn(x2, 3), 3, 3, 3, { pads: [0, 0, 0, 0] })));
    expect(ops(folded)).toEqual({ Conv: 1 });
  });

  it("AveragePool with count_include_pad=0 and pads is not a conv; with 1 it is", async () => {
    for (const cip of [0, 1]) {
      const n = new Net(12);
      const x = n.input("x", [1, 3, 8, 8]);
      const pool = n.op("AveragePool", [n.conv(x, 3, 3, 1, { pads: [0, 0, 0, 0] })], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [1, 1], count_include_pad: cip });
      const y = n.add(pool, n.conv(x, 3, 3, 3));
      const { model, report } = await foldAndVerify(n.finish(y));
      if (cip) expect(ops(model)).toEqual({ Conv: 1 });
      else {
        expect(ops(model)["AveragePool"]).toBe(1);
        expect(report.refusals.map((r) => r.reason).join()).toMatch(/count_include_pad=0/);
      }
    }
  });

  it("an intermediate that is also a graph output is not absorbed", async () => {
    const n = new Net(13);
    const x = n.input("x", [1, 2, 5, 5]);
    const a = n.convBn(x, 2, 2, 3);
    n.output(a);
    const { model } = await foldAndVerify(n.finish(n.add(a, n.conv(x, 2, 2, 1))));
    expect(model.graph.nodes.some((nd) => nd.outputs.includes(a))).toBe(true);
    expect(ops(model)["Add"]).toBe(1);
  });

  it("the caller's model is not modified", () => {
    const n = new Net(14);
    const x = n.input("x", [1, 2, 5, 5]);
    const m = n.finish(n.add(n.convBn(x, 2, 2, 3), x));
    const before = m.graph.nodes.length;
    optimize(m);
    expect(m.graph.nodes.length).toBe(before);
  });
});

describe("sequential compositions (rule 4)", () => {
  it("DBB branch with BN-value padding written as Sub t → Pad 0 → Add t folds into one KxK", async () => {
    const n = new Net(31);
    const x = n.input("x", [1, 4, 9, 8]);
    const bnOut = n.convBn(x, 4, 4, 1, { pads: [0, 0, 0, 0] });
    // t = BN(0): compute it the way the graph does: from the BN's own parameters.
    const bnNode = n.nodes.at(-1)!;
    const [g, b, m, v] = bnNode.inputs.slice(1).map((name) => n.initializers.get(name)!.toFloat64());
    const t = Array.from(g!, (gi, i) => b![i]! - (m![i]! * gi) / Math.sqrt(v![i]! + 1e-5));
    const tName = n.constant("t", [1, 4, 1, 1], t);
    const padded = n.op("Add", [n.op("Pad", [n.op("Sub", [bnOut, tName]), n.int64("pads", [0, 0, 1, 1, 0, 0, 1, 1])]), tName]);
    const y = n.add(n.convBn(padded, 4, 4, 3, { pads: [0, 0, 0, 0] }), n.convBn(x, 4, 4, 3));
    const { model } = await foldAndVerify(n.finish(y));
    expect(ops(model)).toEqual({ Conv: 1 });
  });

  it("1x1 carrying the padding, 1x1 → AvgPool, KxK → 1x1, a 3-conv stem with all padding on the input", async () => {
    const n = new Net(32);
    const x = n.input("x", [1, 3, 12, 11]);
    const a = n.convBn(n.convBn(x, 3, 4, 1, { pads: [1, 1, 1, 1] }), 4, 6, 3, { pads: [0, 0, 0, 0] });
    // 1x1 (no bias) → zero-padded AvgPool is exact (OREPA); after a BN it would need BN-value padding.
    const b = n.bn(n.op("AveragePool", [n.conv(x, 3, 6, 1, { pads: [0, 0, 0, 0] })], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [1, 1], count_include_pad: 1 }), 6);
    const c = n.convBn(n.convBn(x, 3, 4, 3), 4, 6, 1, { pads: [0, 0, 0, 0] });
    const { model } = await foldAndVerify(n.finish(n.add(a, b, c)));
    expect(ops(model)).toEqual({ Conv: 1 });
    const s = new Net(33);
    const xs = s.input("x", [1, 3, 12, 11]);
    const st = s.conv(s.bn(s.conv(s.bn(s.conv(xs, 3, 4, 3, { pads: [3, 3, 3, 3] }), 4), 4, 4, 3, { pads: [0, 0, 0, 0] }), 4), 4, 6, 3, { pads: [0, 0, 0, 0], stride: 2 });
    const { model: stemOut } = await foldAndVerify(s.finish(st));
    expect(ops(stemOut)).toEqual({ Conv: 1 });
    expect(stemOut.graph.nodes[0]!.ints("kernel_shape")).toEqual([7, 7]);
  });

  it("refused border folds would be wrong: the naive fold fails verification by far", async () => {
    const build = () => {
      const n = new Net(34);
      const x = n.input("x", [1, 4, 8, 8]);
      // zero-padded BN output before a KxK, and a stem where every conv pads its own input
      const zeroPadBn = n.convBn(n.convBn(x, 4, 4, 1, { pads: [0, 0, 0, 0] }), 4, 4, 3);
      const stem = n.conv(n.conv(x, 4, 4, 3, { bias: true }), 4, 4, 3, { bias: true });
      return n.finish(n.add(zeroPadBn, stem));
    };
    const { model, report } = optimize(build());
    expect(report.refusals.map((r) => r.reason).join()).toMatch(/border output is its bias/);
    expect(ops(model)["Add"]).toBe(1);
    const { verifyModels } = await import("../src/verify/verify.js");
    const naive = optimize(build(), { unsafeIgnoreBorderRule: true, maxMacGrowth: 2 }); // cost aside: only the border stops it
    expect(ops(naive.model)).toEqual({ Conv: 1 });
    const v = await verifyModels(build(), naive.model, { runs: 2 });
    expect(v.ok).toBe(false);
    expect(v.maxRel).toBeGreaterThan(1e-2);
  });
});

describe("cost bound", () => {
  it("a dw3x3-BN → pw1x1-BN chain too costly to compose still folds each BN into its conv, and says why", async () => {
    const n = new Net(91);
    const x = n.input("x", ["N", 8, 10, 10]);
    const y = n.convBn(n.convBn(x, 8, 8, 3, { group: 8 }), 8, 16, 1);
    const { model, report } = await foldAndVerify(n.finish(y));
    expect(ops(model)).toEqual({ Conv: 2 });
    expect(report.rewrites.map((r) => r.summary).join()).toMatch(/layers not composed: composition would raise MACs/);
  });
});

describe("ResRep pruning (rule 7)", () => {
  for (const act of ["Relu", null] as const) {
    it(`conv+BN → compactor with zero rows${act ? " → ReLU" : ""} → conv: composed, zero channels pruned on both sides`, async () => {
      const n = new Net(41);
      const x = n.input("x", [1, 4, 9, 9]);
      const y = n.convBn(x, 4, 8, 3);
      const q = Array.from({ length: 8 * 8 }, (_, i) => ([2, 5].includes(Math.floor(i / 8)) ? 0 : Math.sin(i + 1)));
      let z = n.op("Conv", [y, n.constant("compactor", [8, 8, 1, 1], q)], { kernel_shape: [1, 1] });
      if (act) z = n.op(act, [z]);
      const out = n.conv(z, 8, 6, 3);
      const model = n.finish(out);
      const { model: o, report } = await foldAndVerify(model);
      // The consumer zero-pads z, so it does not compose with the (biased) producer: two convs.
      expect(ops(o)).toEqual(act ? { Conv: 2, Relu: 1 } : { Conv: 2 });
      const convs = o.graph.nodes.filter((nd) => nd.opType === "Conv");
      expect(o.graph.initializers.get(convs[0]!.inputs[1]!)!.dims[0]).toBe(6);
      expect(o.graph.initializers.get(convs[1]!.inputs[1]!)!.dims[1]).toBe(6);
      expect(report.rewrites.some((r) => /pruned 2 zero channel/.test(r.summary))).toBe(true);
      expect(report.after.weightBytes).toBeLessThan(report.before.weightBytes);
    });
  }

  it("zero channels through a non-zero-preserving activation (Sigmoid) are not pruned", () => {
    const n = new Net(42);
    const x = n.input("x", [1, 2, 5, 5]);
    const w = Array.from({ length: 4 * 2 * 9 }, (_, i) => (Math.floor(i / 18) === 1 ? 0 : Math.cos(i)));
    const y = n.op("Sigmoid", [n.op("Conv", [x, n.constant("w", [4, 2, 3, 3], w)], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] })]);
    const { model, report } = optimize(n.finish(n.conv(y, 4, 2, 1)));
    expect(model.graph.initializers.get(model.graph.nodes[0]!.inputs[1]!)!.dims[0]).toBe(4);
    expect(report.refusals.map((r) => r.reason).join()).toMatch(/cannot drop input channels/);
  });
});

describe("fully connected regions (features layout)", () => {
  const gemm = (n: Net, x: string, i: number, o: number, bias = true) => {
    const w = n.constant("fcw", [o, i], Array.from({ length: o * i }, () => n.r() * 2 - 1));
    const inputs = [x, w];
    if (bias) inputs.push(n.constant("fcb", [o], Array.from({ length: o }, () => n.r() - 0.5)));
    return n.op("Gemm", inputs, { transB: 1 });
  };
  it("Gemm → BN1d, BN1d → Gemm, Linear–Linear, parallel heads averaged: one Gemm", async () => {
    const n = new Net(61);
    const x = n.input("x", ["N", 12]);
    const a = n.bn(gemm(n, n.bn(x, 12), 12, 8), 8);
    const b = gemm(n, a, 8, 6);
    const heads = n.op("Div", [n.op("Add", [gemm(n, b, 6, 5), gemm(n, b, 6, 5)]), n.constant("two", [], [2])]);
    const { model } = await foldAndVerify(n.finish(heads));
    expect(ops(model)).toEqual({ Gemm: 1 });
  });

  it("MatMul on [N, L, C] tokens with a layer scale γ[C] and a bias: MatMul + Add", async () => {
    const n = new Net(62);
    const x = n.input("x", [2, 5, 8]);
    const w = n.constant("w", [8, 8], Array.from({ length: 64 }, () => n.r() - 0.5));
    const y = n.op("Add", [n.op("MatMul", [x, w]), n.constant("b", [8], Array.from({ length: 8 }, () => n.r()))]);
    const scaled = n.op("Mul", [y, n.constant("gamma", [8], Array.from({ length: 8 }, () => n.r() * 0.1))]);
    const out = n.op("Add", [x, scaled]); // x + γ ⊙ f(x)
    const { model } = await foldAndVerify(n.finish(out));
    expect(ops(model)).toEqual({ MatMul: 1, Add: 1 });
  });

  it("channels-last 4-D (ConvNeXt's pwconv → γ on [N, H, W, C]): bias and γ fold into the MatMul; γ/β alone stay elementwise", async () => {
    const n = new Net(64);
    const x = n.input("x", ["N", 3, 4, 8]);
    const ln = n.op("Add", [n.op("Mul", [x, n.constant("ln_w", [8], Array.from({ length: 8 }, () => 1 + n.r()))]), n.constant("ln_b", [8], Array.from({ length: 8 }, () => n.r()))]);
    const w = n.constant("w", [8, 8], Array.from({ length: 64 }, () => n.r() - 0.5));
    const y = n.op("Add", [n.op("MatMul", [n.op("Relu", [ln]), w]), n.constant("b", [8], Array.from({ length: 8 }, () => n.r()))]);
    const scaled = n.op("Mul", [n.constant("gamma", [8], Array.from({ length: 8 }, () => n.r() * 0.1)), y]);
    const { model } = await foldAndVerify(n.finish(scaled), { shapes: { x: [2, 3, 4, 8] } });
    // the LayerNorm-style γ/β before the ReLU have no layer to fold into: a dense 8×8 MatMul would cost more
    expect(ops(model)).toEqual({ Mul: 1, Add: 2, Relu: 1, MatMul: 1 });
  });

  it("γ ⊙ x + β alone on [N, L, C] tokens (a LayerNorm's affine) stays two elementwise nodes and verifies", async () => {
    const n = new Net(66);
    const x = n.input("x", [2, 5, 8]);
    const y = n.op("Add", [n.op("Mul", [x, n.constant("g", [8], Array.from({ length: 8 }, () => 1 + n.r()))]), n.constant("b", [8], new Array(8).fill(0))]);
    const { model } = await foldAndVerify(n.finish(y));
    expect(ops(model)).toEqual({ Mul: 1, Add: 1 });
  });

  it("two per-feature scalings of one input summed, then a MatMul: one MatMul", async () => {
    const n = new Net(65);
    const x = n.input("x", [2, 5, 6]);
    const a = n.op("Mul", [x, n.constant("a", [6], [1, 2, 3, 4, 5, 6])]);
    const b = n.op("Mul", [x, n.constant("b", [6], [6, 5, 4, 3, 2, 1])]);
    const w = n.constant("w", [6, 4], Array.from({ length: 24 }, () => n.r() - 0.5));
    const { model } = await foldAndVerify(n.finish(n.op("MatMul", [n.op("Add", [a, b]), w])));
    expect(ops(model)).toEqual({ MatMul: 1 });
  });

  it("a layer scale after the permute back to NCHW (torchvision's ConvNeXt) moves before it and folds into the Linear", async () => {
    const n = new Net(67);
    const x = n.input("x", ["N", 8, 3, 4]);
    const tokens = n.op("Transpose", [x], { perm: [0, 2, 3, 1] });
    const w = n.constant("w", [8, 8], Array.from({ length: 64 }, () => n.r() - 0.5));
    const y = n.op("Add", [n.constant("b", [8], Array.from({ length: 8 }, () => n.r())), n.op("MatMul", [n.op("Relu", [tokens]), w])]);
    const gamma = n.constant("gamma", [8, 1, 1], Array.from({ length: 8 }, () => n.r() * 0.1));
    const scaled = n.op("Mul", [gamma, n.op("Transpose", [y], { perm: [0, 3, 1, 2] })]);
    const { model, report } = await foldAndVerify(n.finish(n.op("Add", [scaled, x])), { shapes: { x: [2, 8, 3, 4] } });
    expect(ops(model)).toEqual({ Transpose: 2, Relu: 1, MatMul: 1, Add: 2 });
    expect(report.rewrites.some((r) => r.pass === "affine-before-transpose")).toBe(true);
    // Not after a dense layer: nothing to fold into, the graph stays as it is.
    const m = new Net(68);
    const u = m.input("u", [2, 3, 4, 8]);
    const z = m.op("Mul", [m.constant("g", [8, 1, 1], [1, 2, 3, 4, 5, 6, 7, 8]), m.op("Transpose", [m.op("Relu", [u])], { perm: [0, 3, 1, 2] })]);
    expect(ops(optimize(m.finish(z)).model)).toEqual({ Relu: 1, Transpose: 1, Mul: 1 });
  });

  it("a per-row constant or BN over [N, C, L] is not a feature affine: left alone", () => {
    const n = new Net(63);
    const x = n.input("x", [2, 4, 6]);
    const y = n.bn(x, 4);
    const w = n.constant("w", [6, 3], Array.from({ length: 18 }, () => n.r()));
    const { model, report } = optimize(n.finish(n.op("MatMul", [y, w])));
    expect(ops(model)).toEqual({ BatchNormalization: 1, MatMul: 1 });
    expect(report.refusals.map((r) => r.reason).join()).toMatch(/axis 1 is not the feature axis/);
  });
});

describe("models built in memory", () => {
  it("nodes written with the explicit default domain \"ai.onnx\" fold like those with \"\"", async () => {
    const n = new Net(72);
    const x = n.input("x", [1, 3, 6, 6]);
    const model = n.finish(n.add(n.convBn(x, 3, 4, 3), n.convBn(x, 3, 4, 1)));
    for (const node of model.graph.nodes) node.domain = "ai.onnx";
    const { model: out } = await foldAndVerify(model);
    expect(ops(out)).toEqual({ Conv: 1 });
  });

  it("identical parameters of a GraphBuilder model are not merged (only tensors a rewrite created are)", async () => {
    const n = new Net(71);
    const x = n.input("x", [1, 3, 6, 6]);
    // Two BNs whose shift vectors happen to be equal (both zero): separate parameters, must still fold.
    const bn = (y: string) => n.op("BatchNormalization", [y, n.constant("g", [3], [1, 2, 3]), n.constant("b", [3], [0, 0, 0]), n.constant("m", [3], [0, 0, 0]), n.constant("v", [3], [1, 1, 1])], { epsilon: 1e-5 });
    const y = n.add(bn(n.conv(x, 3, 3, 3)), bn(n.conv(x, 3, 3, 1)));
    const { model } = await foldAndVerify(n.finish(y));
    expect(ops(model)).toEqual({ Conv: 1 });
  });
});

describe("locality injection into a fully connected layer (fold-into-fc, rule 8)", () => {
  // RepMLPNet's block with a dynamic batch: 6-D partition, grouped fc3 over sharesets + BN(S), and
  // grouped local convs on the same partitions, added and permuted back.
  const repmlpnet = (seed: number, localGroups: number) => {
    const n = new Net(seed);
    const x = n.input("x", ["N", 8, 12, 12]);
    const t = n.op("Transpose", [n.op("Reshape", [x, n.int64("p", [-1, 8, 2, 6, 2, 6])])], { perm: [0, 2, 4, 1, 3, 5] });
    const fc = n.conv(n.op("Reshape", [t, n.int64("v", [-1, 144, 1, 1])]), 144, 144, 1, { group: 4 });
    const a = n.op("Reshape", [n.bn(n.op("Reshape", [fc, n.int64("s", [-1, 4, 6, 6])]), 4), n.int64("r6", [-1, 2, 2, 4, 6, 6])]);
    const parts = n.op("Reshape", [t, n.int64("s2", [-1, 4, 6, 6])]);
    const local = n.add(n.convBn(parts, 4, 4, 3, { group: localGroups }), n.convBn(parts, 4, 4, 1, { group: localGroups }));
    const b = n.op("Reshape", [local, n.int64("r6b", [-1, 2, 2, 4, 6, 6])]);
    const back = n.op("Transpose", [n.op("Add", [a, b])], { perm: [0, 3, 1, 4, 2, 5] });
    return n.finish(n.op("Reshape", [back, n.int64("o", [-1, 8, 12, 12])]));
  };

  it("RepMLPNet block: BN(S) and the grouped local convs go into fc3, which keeps its 4 groups (batch 3)", async () => {
    const { model } = await foldAndVerify(repmlpnet(81, 4), { shapes: { x: [3, 8, 12, 12] } });
    expect(ops(model)).toEqual({ Reshape: 5, Transpose: 2, Conv: 1 });
    const conv = model.graph.nodes.find((n) => n.opType === "Conv")!;
    expect(conv.int("group", 1)).toBe(4);
    expect(conv.inputs.length).toBe(3); // fc3 gained a bias
  });

  it("a dense local conv across sharesets would make the FC dense (2x MACs): refused by default, done with --max-mac-growth 2", async () => {
    const { model } = await foldAndVerify(repmlpnet(82, 1), { maxMacGrowth: 2 });
    expect(model.graph.nodes.find((n) => n.opType === "Conv")!.int("group", 1)).toBe(1);
    const kept = optimize(repmlpnet(82, 1));
    expect(ops(kept.model).Add).toBe(1);
    expect(kept.report.refusals.map((r) => r.reason).join()).toMatch(/raise MACs per row 10368 → 20736/);
  });

  it("a Transpose and a per-element constant inside the row fold into Flatten → Gemm → Reshape", async () => {
    const n = new Net(83);
    const x = n.input("x", ["N", 2, 3, 4]);
    const w = n.constant("w", [24, 24], Array.from({ length: 576 }, () => n.r() - 0.5));
    const a = n.op("Reshape", [n.op("Gemm", [n.op("Flatten", [x], { axis: 1 }), w], { transB: 1 }), n.int64("s", [-1, 2, 3, 4])]);
    const scaled = n.op("Mul", [n.op("Transpose", [x], { perm: [0, 2, 1, 3] }), n.constant("c", [1, 3, 2, 4], Array.from({ length: 24 }, () => n.r()))]);
    const b = n.op("Transpose", [n.op("Sub", [n.constant("k", [4], [1, 2, 3, 4]), scaled])], { perm: [0, 2, 1, 3] });
    const { model } = await foldAndVerify(n.finish(n.op("Add", [a, b])), { shapes: { x: [2, 2, 3, 4] } });
    expect(ops(model)).toEqual({ Flatten: 1, Gemm: 1, Reshape: 1 });
  });

  it("an FC on `x.view(x.size(0), -1)` (feature sizes from the weight, batch traced from Shape) takes the conv", async () => {
    const n = new Net(86);
    const x = n.input("x", ["N", 2, 4, 4]);
    const batch = n.op("Unsqueeze", [n.op("Gather", [n.op("Shape", [x]), n.scalarInt64("i", 0)], { axis: 0 }), n.int64("axes", [0])]);
    const flat = n.op("Reshape", [x, n.op("Concat", [batch, n.int64("rest", [-1])], { axis: 0 })]);
    const fc = n.op("Gemm", [flat, n.constant("w", [32, 32], Array.from({ length: 1024 }, () => n.r() - 0.5))], { transB: 1 });
    const back = n.op("Reshape", [fc, n.op("Concat", [batch, n.int64("chw", [2, 4, 4])], { axis: 0 })]);
    const { model, report } = await foldAndVerify(n.finish(n.op("Add", [back, n.convBn(x, 2, 2, 3)])), { shapes: { x: [3, 2, 4, 4] } });
    expect(ops(model).Gemm).toBe(1);
    expect(ops(model).Conv).toBeUndefined();
    expect(report.rewrites.map((r) => r.summary).join()).toMatch(/Conv folded into Gemm/);
  });

  it("a BN before the flatten in the FC's branch (pre-norm RepMLP) folds into the FC with the conv", async () => {
    const n = new Net(88);
    const x = n.input("x", ["N", 2, 4, 4]);
    const flat = n.op("Flatten", [n.bn(x, 2)], { axis: 1 });
    const fc = n.op("Gemm", [flat, n.constant("w", [32, 32], Array.from({ length: 1024 }, () => n.r() - 0.5))], { transB: 1 });
    const y = n.op("Add", [n.op("Reshape", [fc, n.int64("s", [-1, 2, 4, 4])]), n.convBn(x, 2, 2, 3)]);
    const { model, report } = await foldAndVerify(n.finish(y), { shapes: { x: [3, 2, 4, 4] } });
    expect(ops(model)).toEqual({ Flatten: 1, Gemm: 1, Reshape: 1 });
    expect(report.rewrites.map((r) => r.summary).join()).toMatch(/Conv \+ BatchNormalization folded into Gemm/);
  });

  it("an integer chain (int32 MatMul + truncating Div) is not folded: the probe's float64 algebra is not integer arithmetic", () => {
    const n = new Net(87, 13, DataType.INT32);
    const x = n.input("x", [2, 4]);
    const w = n.constant("w", [4, 4], [1, 2, 0, 1, 0, 1, 1, 0, 2, 0, 1, 1, 1, 1, 0, 2]);
    const y = n.op("Add", [n.op("MatMul", [x, w]), n.op("Div", [x, n.constant("d", [1], [2])])]);
    const { model, report } = optimize(n.finish(y));
    expect(ops(model)).toEqual({ MatMul: 1, Div: 1, Add: 1 });
    expect(report.refusals.filter((r) => r.pass === "fold-into-fc").map((r) => r.reason).join()).toMatch(/not a floating-point tensor/);
  });

  it("a constant that varies along axis 0, or an FC weight another node reads, is left alone with the reason", () => {
    const n = new Net(84);
    const x = n.input("x", [2, 6]);
    const w = n.constant("w", [6, 6], Array.from({ length: 36 }, () => n.r()));
    const y = n.op("Add", [n.op("Gemm", [x, w], { transB: 1 }), n.op("Mul", [x, n.constant("c", [2, 6], Array.from({ length: 12 }, () => n.r()))])]);
    const { model, report } = optimize(n.finish(y));
    expect(ops(model)).toEqual({ Gemm: 1, Mul: 1, Add: 1 });
    expect(report.refusals.map((r) => r.reason).join()).toMatch(/varies along axis 0/);

    const m = new Net(85);
    const u = m.input("u", ["N", 6]);
    const shared = m.constant("w", [6, 6], Array.from({ length: 36 }, () => m.r()));
    const s = m.op("Add", [m.op("Gemm", [u, shared], { transB: 1 }), m.op("Mul", [u, m.constant("g", [6], [1, 2, 3, 4, 5, 6])])]);
    const z = m.op("Gemm", [m.op("Relu", [s]), shared], { transB: 1 });
    const shared2 = optimize(m.finish(z));
    expect(ops(shared2.model).Gemm).toBe(2);
    expect(shared2.report.after.weightBytes).toBeLessThanOrEqual(shared2.report.before.weightBytes);
    expect(shared2.report.refusals.filter((r) => r.pass === "fold-into-fc").map((r) => r.reason).join()).toMatch(/'w_\d+' of Gemm_\d+ is shared with another node/);
  });
});
