// Benchmark models, generated (not committed): training-form RepVGG networks at ImageNet size,
// built through the IR with random weights and non-trivial BN statistics.
import { GraphBuilder } from "../src/ir/builder.js";
import type { Model } from "../src/ir/graph.js";
import { Tensor } from "../src/ir/tensor.js";
import { DataType } from "../src/ir/dtype.js";
import { mulberry32 } from "../src/verify/verify.js";

/** Uniform in [-0.5, 0.5), deterministic. */
function fastRandom(seed: number): () => number {
  const r = mulberry32(seed);
  return () => r() - 0.5;
}

class Gen extends GraphBuilder {
  private r: () => number;
  constructor(seed: number, private readonly dtype32 = DataType.FLOAT) {
    super(13, dtype32);
    this.r = fastRandom(seed);
  }

  tensor(prefix: string, dims: number[], f: (i: number) => number): string {
    const name = this.fresh(prefix);
    const n = dims.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = f(i);
    this.initializers.set(name, Tensor.fromData(name, DataType.FLOAT, dims, data));
    return name;
  }

  conv(x: string, cin: number, cout: number, k: number, stride: number, pad: number, group = 1): string {
    const fanIn = (cin / group) * k * k;
    const scale = Math.sqrt(6 / fanIn);
    const w = this.tensor("conv.weight", [cout, cin / group, k, k], () => this.r() * scale);
    return this.op("Conv", [x, w], { kernel_shape: [k, k], pads: [pad, pad, pad, pad], strides: [stride, stride], group });
  }

  bn(x: string, c: number): string {
    const g = this.tensor("bn.weight", [c], () => 1 + 0.4 * this.r());
    const b = this.tensor("bn.bias", [c], () => 0.2 * this.r());
    const m = this.tensor("bn.running_mean", [c], () => 0.2 * this.r());
    const v = this.tensor("bn.running_var", [c], () => 1 + 0.8 * this.r());
    return this.op("BatchNormalization", [x, g, b, m, v], { epsilon: 1e-5 });
  }

  repvggBlock(x: string, cin: number, cout: number, stride: number): string {
    const branches = [this.bn(this.conv(x, cin, cout, 3, stride, 1), cout), this.bn(this.conv(x, cin, cout, 1, stride, 0), cout)];
    if (cin === cout && stride === 1) branches.push(this.bn(x, cout));
    const sum = branches.slice(1).reduce((acc, b) => this.op("Add", [acc, b]), branches[0]!);
    return this.op("Relu", [sum]);
  }

  /** DBB block: KxK-BN + 1x1-BN + 1x1-BN-AVG-BN + 1x1-BN-KxK-BN (BN-value padding as the 1x1 carrying the pad). */
  dbbBlock(x: string, cin: number, cout: number, stride: number): string {
    const a = this.bn(this.conv(x, cin, cout, 3, stride, 1), cout);
    const b = this.bn(this.conv(x, cin, cout, 1, stride, 0), cout);
    // As DBB pads the BN output with BN(0) before the pool: here the 1x1 carries that padding.
    const c = this.bn(this.op("AveragePool", [this.bn(this.conv(x, cin, cout, 1, 1, 1), cout)], { kernel_shape: [3, 3], strides: [stride, stride], pads: [0, 0, 0, 0] }), cout);
    // The 1x1 carries the padding, so its border output is exactly the BN shift: composes exactly.
    const d = this.bn(this.conv(this.bn(this.conv(x, cin, cin, 1, 1, 1), cin), cin, cout, 3, stride, 0), cout);
    return this.op("Relu", [this.add4(a, b, c, d)]);
  }

  /**
   * OREPA block (Hu et al., 2022; the OREPA repository's RepVGG variant): the 3x3 kernel is
   * generated in the graph from its parameters on every forward, exported as Einsum / Pad / Add
   * on initializers — origin·α₀, (1x1 ⊗ 3x3 average)·α₁ with the `oihw,hw->oihw` broadcast of a
   * size-1 axis, (1x1 ⊗ prior)·α₂, the 1x1 → 3x3 chain `ti,othw->oihw`, a 1x1 padded to 3x3 ·α₃ —
   * then Conv → BN, plus the RepVGG 1x1-BN and identity-BN branches.
   */
  orepaBlock(x: string, cin: number, cout: number, stride: number): string {
    const scale = Math.sqrt(6 / (cin * 9));
    const alpha = (k: number, w: string) => this.op("Einsum", [w, this.tensor(`vector${k}`, [cout], () => 0.5 + 0.5 * this.r())], { equation: "oihw,o->oihw" });
    const origin = alpha(0, this.tensor("weight_orepa_origin", [cout, cin, 3, 3], () => this.r() * scale));
    const avgConv = this.tensor("weight_orepa_avg_conv", [cout, cin, 1, 1], () => this.r() * scale);
    const avg = alpha(1, this.op("Einsum", [avgConv, this.tensor("weight_orepa_avg_avg", [3, 3], () => 1 / 9)], { equation: "oihw,hw->oihw" }));
    const pfirConv = this.tensor("weight_orepa_pfir_conv", [cout, cin], () => this.r() * scale);
    const pfir = alpha(2, this.op("Einsum", [pfirConv, this.tensor("fre_init", [3, 3], (i) => Math.cos((Math.PI * (i % 3)) / 3))], { equation: "oi,hw->oihw" }));
    const idConv = this.op("Add", [this.tensor("weight_orepa_1x1_kxk_idconv1", [cin, cin], () => 0.1 * this.r()), this.tensor("id_tensor", [cin, cin], (i) => (i % (cin + 1) === 0 ? 1 : 0))]);
    const chain = this.op("Einsum", [idConv, this.tensor("weight_orepa_1x1_kxk_conv2", [cout, cin, 3, 3], () => this.r() * scale)], { equation: "ti,othw->oihw" });
    const padded = this.op("Pad", [this.tensor("weight_orepa_1x1", [cout, cin, 1, 1], () => this.r() * scale), this.int64("pads", [0, 0, 1, 1, 0, 0, 1, 1])]);
    const weight = this.add4(origin, avg, pfir, this.op("Add", [chain, alpha(3, padded)]));
    const main = this.bn(this.op("Conv", [x, weight], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [stride, stride] }), cout);
    const branches = [main, this.bn(this.conv(x, cin, cout, 1, stride, 0), cout)];
    if (cin === cout && stride === 1) branches.push(this.bn(x, cout));
    return this.op("Relu", [branches.slice(1).reduce((acc, b) => this.op("Add", [acc, b]), branches[0]!)]);
  }

  /** ResNet bottleneck with the 3x3 as a DBB block (DBB-ResNet-50, Ding et al., 2021). */
  dbbBottleneck(x: string, cin: number, mid: number, cout: number, stride: number): string {
    const a = this.op("Relu", [this.bn(this.conv(x, cin, mid, 1, 1, 0), mid)]);
    const b = this.dbbBlock(a, mid, mid, stride);
    const c = this.bn(this.conv(b, mid, cout, 1, 1, 0), cout);
    const shortcut = stride !== 1 || cin !== cout ? this.bn(this.conv(x, cin, cout, 1, stride, 0), cout) : x;
    return this.op("Relu", [this.op("Add", [c, shortcut])]);
  }

  private add4(...xs: string[]): string {
    return xs.slice(1).reduce((acc, y) => this.op("Add", [acc, y]), xs[0]!);
  }

  /**
   * RepMLPNet unit (Ding et al., 2022; official repmlpnet.py): BN → RepMLPBlock (global perceptron;
   * h×h windows as a 6-D Reshape + Transpose; grouped fc3 over S share-sets → BN(S); local conv-BN
   * branches 1x1 and 3x3 with S groups on the same windows) → + x; then BN → FFN (1x1 conv-BN →
   * ReLU → 1x1 conv-BN) → + x. Static partition reshapes with −1 for the batch.
   */
  repmlpnetUnit(x: string, c: number, size: number, h: number, s: number): string {
    const parts = size / h, hw = h * h;
    const pre = this.bn(x, c);
    const gp = this.op("Sigmoid", [this.conv(this.op("Relu", [this.conv(this.op("GlobalAveragePool", [pre]), c, c / 4, 1, 1, 0)]), c / 4, c, 1, 1, 0)]);
    const t = this.op("Transpose", [this.op("Reshape", [pre, this.int64("shape", [-1, c, parts, h, parts, h])])], { perm: [0, 2, 4, 1, 3, 5] });
    const fc = this.op("Conv", [this.op("Reshape", [t, this.int64("shape", [-1, s * hw, 1, 1])]), this.tensor("fc3.weight", [s * hw, hw, 1, 1], () => this.r() * Math.sqrt(6 / hw))], { kernel_shape: [1, 1], group: s });
    const fcOut = this.op("Reshape", [this.bn(this.op("Reshape", [fc, this.int64("shape", [-1, s, h, h])]), s), this.int64("shape", [-1, parts, parts, s, h, h])]);
    const windows = this.op("Reshape", [t, this.int64("shape", [-1, s, h, h])]);
    const local = this.op("Add", [this.bn(this.conv(windows, s, s, 1, 1, 0, s), s), this.bn(this.conv(windows, s, s, 3, 1, 1, s), s)]);
    const localOut = this.op("Reshape", [local, this.int64("shape", [-1, parts, parts, s, h, h])]);
    const back = this.op("Transpose", [this.op("Add", [fcOut, localOut])], { perm: [0, 3, 1, 4, 2, 5] });
    const block = this.op("Mul", [this.op("Reshape", [back, this.int64("shape", [-1, c, size, size])]), gp]);
    const y = this.op("Add", [x, block]);
    const ffn = this.bn(this.conv(this.op("Relu", [this.bn(this.conv(this.bn(y, c), c, 4 * c, 1, 1, 0), 4 * c)]), 4 * c, c, 1, 1, 0), c);
    return this.op("Add", [y, ffn]);
  }

  head(x: string, c: number, classes: number): string {
    const pooled = this.op("GlobalAveragePool", [x]);
    const flat = this.op("Flatten", [pooled], { axis: 1 });
    const w = this.tensor("fc.weight", [classes, c], () => this.r() * 0.05);
    const b = this.tensor("fc.bias", [classes], () => this.r() * 0.05);
    return this.op("Gemm", [flat, w, b], { transB: 1 });
  }
}

export interface RepvggSpec {
  widths: [number, number, number, number, number];
  depths: [number, number, number, number, number];
  block?: "repvgg" | "dbb" | "orepa" | "repmlpnet" | "dbb-resnet";
  /** RepMLPNet: share-sets per stage (windows are 7x7). */
  sharesets?: number[];
  resolution?: number;
  classes?: number;
}

export const SPECS: Record<string, RepvggSpec> = {
  // RepVGG-A0: a = 0.75, b = 2.5; RepVGG-B1: a = 2, b = 4 (Ding et al., 2021, Table 2).
  "repvgg-a0": { widths: [48, 48, 96, 192, 1280], depths: [1, 2, 4, 14, 1] },
  "repvgg-b1": { widths: [64, 128, 256, 512, 2048], depths: [1, 4, 6, 16, 1] },
  "dbb-a0": { widths: [48, 48, 96, 192, 1280], depths: [1, 2, 4, 14, 1], block: "dbb" },
  // RepVGG-A0 with OREPA blocks: every 3x3 kernel generated in the graph (Einsum, Pad, Add on weights).
  "orepa-a0": { widths: [48, 48, 96, 192, 1280], depths: [1, 2, 4, 14, 1], block: "orepa" },
  // ResNet-50 (bottlenecks 3/4/6/3, widths 64…512, expansion 4) with DBB 3x3s, 224x224.
  "dbb-resnet50": { widths: [64, 128, 256, 512, 0], depths: [3, 4, 6, 3, 0], block: "dbb-resnet" },
  // Over protobuf's 2 GiB of weights (≈ 2.3 GB float32 in training form): stored as external data.
  "repvgg-2gb": { widths: [64, 256, 512, 1792, 4096], depths: [1, 4, 6, 16, 1], resolution: 64 },
  // RepMLPNet-B224 (Ding et al., 2022, Table 1): channels 96/192/384/768, units 2/2/12/2, share-sets 1/4/32/128.
  "repmlpnet-b224": { widths: [96, 192, 384, 768, 0], depths: [2, 2, 12, 2, 0], block: "repmlpnet", sharesets: [1, 4, 32, 128] },
};

/** RepMLPNet: a 4x4/4 conv-BN-ReLU patch embedding, per stage a 3x3/2 conv-BN-ReLU downsampling, then units. */
function repmlpnet(spec: RepvggSpec, seed: number): Model {
  const g = new Gen(seed);
  const res = spec.resolution ?? 224;
  let x = g.input("input", ["N", 3, res, res]);
  let cin = 3, size = res / 4;
  x = g.op("Relu", [g.bn(g.conv(x, 3, spec.widths[0], 4, 4, 0), spec.widths[0])]);
  cin = spec.widths[0];
  for (let stage = 0; stage < 4; stage++) {
    const c = spec.widths[stage]!;
    if (stage > 0) {
      x = g.op("Relu", [g.bn(g.conv(x, cin, c, 3, 2, 1), c)]);
      size /= 2;
    }
    for (let i = 0; i < spec.depths[stage]!; i++) x = g.repmlpnetUnit(x, c, size, 7, spec.sharesets![stage]!);
    cin = c;
  }
  const y = g.head(x, cin, spec.classes ?? 1000);
  g.output(y, ["N", spec.classes ?? 1000]);
  return g.build();
}

/** ResNet-50 layout: 7x7/2 stem, 3x3/2 max pool, bottleneck stages (first of each strided but the first). */
function dbbResnet(spec: RepvggSpec, seed: number): Model {
  const g = new Gen(seed);
  const res = spec.resolution ?? 224;
  let x = g.input("input", ["N", 3, res, res]);
  x = g.op("MaxPool", [g.op("Relu", [g.bn(g.conv(x, 3, 64, 7, 2, 3), 64)])], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] });
  let cin = 64;
  for (let stage = 0; stage < 4; stage++) {
    const mid = spec.widths[stage]!;
    for (let i = 0; i < spec.depths[stage]!; i++) {
      x = g.dbbBottleneck(x, cin, mid, 4 * mid, i === 0 && stage > 0 ? 2 : 1);
      cin = 4 * mid;
    }
  }
  const y = g.head(x, cin, spec.classes ?? 1000);
  g.output(y, ["N", spec.classes ?? 1000]);
  return g.build();
}

export function repvgg(spec: RepvggSpec, seed = 7): Model {
  if (spec.block === "repmlpnet") return repmlpnet(spec, seed);
  if (spec.block === "dbb-resnet") return dbbResnet(spec, seed);
  const g = new Gen(seed);
  const res = spec.resolution ?? 224;
  let x = g.input("input", ["N", 3, res, res]);
  let cin = 3;
  spec.widths.forEach((w, stage) => {
    for (let i = 0; i < spec.depths[stage]!; i++) {
      const stride = i === 0 ? 2 : 1;
      x = spec.block === "dbb" ? g.dbbBlock(x, cin, w, stride) : spec.block === "orepa" ? g.orepaBlock(x, cin, w, stride) : g.repvggBlock(x, cin, w, stride);
      cin = w;
    }
  });
  const y = g.head(x, cin, spec.classes ?? 1000);
  g.output(y, ["N", spec.classes ?? 1000]);
  return g.build();
}
