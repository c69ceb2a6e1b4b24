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

  private add4(...xs: string[]): string {
    return xs.slice(1).reduce((acc, y) => this.op("Add", [acc, y]), xs[0]!);
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
  block?: "repvgg" | "dbb";
  resolution?: number;
  classes?: number;
}

export const SPECS: Record<string, RepvggSpec> = {
  // RepVGG-A0: a = 0.75, b = 2.5; RepVGG-B1: a = 2, b = 4 (Ding et al., 2021, Table 2).
  "repvgg-a0": { widths: [48, 48, 96, 192, 1280], depths: [1, 2, 4, 14, 1] },
  "repvgg-b1": { widths: [64, 128, 256, 512, 2048], depths: [1, 4, 6, 16, 1] },
  "dbb-a0": { widths: [48, 48, 96, 192, 1280], depths: [1, 2, 4, 14, 1], block: "dbb" },
  // Over protobuf's 2 GiB of weights (≈ 2.3 GB float32 in training form): stored as external data.
  "repvgg-2gb": { widths: [64, 256, 512, 1792, 4096], depths: [1, 4, 6, 16, 1], resolution: 64 },
};

export function repvgg(spec: RepvggSpec, seed = 7): Model {
  const g = new Gen(seed);
  const res = spec.resolution ?? 224;
  let x = g.input("input", ["N", 3, res, res]);
  let cin = 3;
  spec.widths.forEach((w, stage) => {
    for (let i = 0; i < spec.depths[stage]!; i++) {
      const stride = i === 0 ? 2 : 1;
      x = spec.block === "dbb" ? g.dbbBlock(x, cin, w, stride) : g.repvggBlock(x, cin, w, stride);
      cin = w;
    }
  });
  const y = g.head(x, cin, spec.classes ?? 1000);
  g.output(y, ["N", spec.classes ?? 1000]);
  return g.build();
}
