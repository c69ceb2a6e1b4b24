// Random linear blocks for differential testing: random subsets of the branch types the
// re-parameterization families use (DyRep grows arbitrary subsets), random kernel sizes, strides,
// groups, legal pads, odd sizes, both export forms, optional negative forms mixed in. Every block
// is optimized and verified; a positive block must fold to exactly one Conv.
import { GraphBuilder } from "../src/ir/builder.js";
import { DataType } from "../src/ir/dtype.js";
import { mulberry32 } from "../src/verify/verify.js";
import type { Model } from "../src/ir/graph.js";

export const BRANCHES = ["kxk", "1x1", "1xk", "kx1", "identity", "1x1-kxk-convpad", "1x1-kxk-subpad", "1x1-avg", "kxk-1x1", "dw-1x1"] as const;
export type Branch = (typeof BRANCHES)[number];
export const NEGATIVES = ["relu-in-branch", "zero-pad-bn", "avg-cip0"] as const;

export interface BlockSpec {
  cin: number;
  cout: number;
  height: number;
  width: number;
  stride: 1 | 2;
  k: 1 | 3 | 5;
  groups: number;
  form: "preserve" | "folded";
  opset: number;
  float16: boolean;
  branches: Branch[];
  after: "none" | "bn" | "scale";
  negative: (typeof NEGATIVES)[number] | null;
  seed: number;
}

/** Which branches a spec may legally contain. */
export function legal(spec: BlockSpec, b: Branch): boolean {
  if (b === "identity") return spec.cin === spec.cout && spec.stride === 1;
  if ((b === "1xk" || b === "kx1") && spec.k === 1) return false;
  return true;
}

class Gen extends GraphBuilder {
  private readonly next: () => number;
  constructor(private readonly spec: BlockSpec) {
    super(spec.opset, spec.float16 ? DataType.FLOAT16 : DataType.FLOAT);
    this.next = mulberry32(spec.seed >>> 0 || 1);
  }

  rand(): number {
    return this.next() - 0.5;
  }

  vec(prefix: string, n: number, f: () => number): string {
    return this.constant(prefix, [n], Array.from({ length: n }, f));
  }

  bn(x: string, c: number): string {
    return this.op("BatchNormalization", [x, this.vec("g", c, () => 1 + this.rand()), this.vec("b", c, () => this.rand()), this.vec("m", c, () => this.rand()), this.vec("v", c, () => 1 + this.rand())], { epsilon: 1e-5 });
  }

  /** A conv, with BN (preserve form) or with a bias (folded form, as PyTorch's exporter leaves it). */
  conv(x: string, cin: number, cout: number, kh: number, kw: number, stride: number, pads: number[], groups: number, norm = true): string {
    const n = cout * (cin / groups) * kh * kw;
    const scale = 1 / Math.sqrt((cin / groups) * kh * kw);
    const w = this.constant("w", [cout, cin / groups, kh, kw], Array.from({ length: n }, () => this.rand() * 2 * scale));
    const inputs = [x, w];
    if (norm && this.spec.form === "folded") inputs.push(this.vec("bias", cout, () => this.rand()));
    const y = this.op("Conv", inputs, { kernel_shape: [kh, kw], strides: [stride, stride], pads, group: groups });
    return norm && this.spec.form === "preserve" ? this.bn(y, cout) : y;
  }

  /** BN(0) of the BN that produced `x` (preserve form) — the DBB border value — as a [1,C,1,1] constant. */
  borderValue(c: number): string {
    const bnNode = this.nodes.at(-1)!;
    if (bnNode.opType !== "BatchNormalization") return this.constant("t", [1, c, 1, 1], Array.from(this.initializers.get(bnNode.inputs[2]!)!.toFloat64()));
    const [g, b, m, v] = bnNode.inputs.slice(1).map((name) => this.initializers.get(name)!.toFloat64());
    return this.constant("t", [1, c, 1, 1], Array.from(g!, (gi, i) => b![i]! - (m![i]! * gi) / Math.sqrt(v![i]! + 1e-5)));
  }

  branch(x: string, b: Branch): string {
    const { cin, cout, k, stride: s, groups: g } = this.spec;
    const p = (k - 1) / 2;
    switch (b) {
      case "kxk": return this.conv(x, cin, cout, k, k, s, [p, p, p, p], g);
      case "1x1": return this.conv(x, cin, cout, 1, 1, s, [0, 0, 0, 0], g);
      case "1xk": return this.conv(x, cin, cout, 1, k, s, [0, p, 0, p], g);
      case "kx1": return this.conv(x, cin, cout, k, 1, s, [p, 0, p, 0], g);
      case "identity": return this.bn(x, cin);
      case "1x1-kxk-convpad": // the 1x1 carries the padding: its border output is BN(0)
        return this.conv(this.conv(x, cin, cin, 1, 1, 1, [p, p, p, p], g), cin, cout, k, k, s, [0, 0, 0, 0], g);
      case "1x1-kxk-subpad": { // BN-value padding written as Sub t → Pad 0 → Add t
        const y = this.conv(x, cin, cin, 1, 1, 1, [0, 0, 0, 0], g);
        if (p === 0) return this.conv(y, cin, cout, k, k, s, [0, 0, 0, 0], g);
        const t = this.borderValue(cin);
        const padded = this.op("Add", [this.op("Pad", [this.op("Sub", [y, t]), this.int64("pads", [0, 0, p, p, 0, 0, p, p])]), t]);
        return this.conv(padded, cin, cout, k, k, s, [0, 0, 0, 0], g);
      }
      case "1x1-avg": { // DBB: 1x1 (carrying the pad) → BN → AvgPool → BN
        const y = this.conv(x, cin, cout, 1, 1, 1, [p, p, p, p], g);
        const pooled = this.op("AveragePool", [y], { kernel_shape: [k, k], strides: [s, s], pads: [0, 0, 0, 0] });
        return this.spec.form === "preserve" ? this.bn(pooled, cout) : pooled;
      }
      case "kxk-1x1": return this.conv(this.conv(x, cin, cin, k, k, s, [p, p, p, p], g), cin, cout, 1, 1, 1, [0, 0, 0, 0], g);
      case "dw-1x1": return this.conv(this.conv(x, cin, cin, k, k, s, [p, p, p, p], cin), cin, cout, 1, 1, 1, [0, 0, 0, 0], 1);
    }
  }

  negativeBranch(x: string): string {
    const { cin, cout, k, stride: s, groups: g } = this.spec;
    const p = (k - 1) / 2;
    switch (this.spec.negative) {
      case "relu-in-branch": return this.conv(this.op("Relu", [this.conv(x, cin, cin, 1, 1, 1, [0, 0, 0, 0], g)]), cin, cout, k, k, s, [p, p, p, p], g);
      case "zero-pad-bn": return this.conv(this.conv(x, cin, cin, 1, 1, 1, [0, 0, 0, 0], g), cin, cout, Math.max(k, 3), Math.max(k, 3), s, [Math.max(p, 1), Math.max(p, 1), Math.max(p, 1), Math.max(p, 1)], g);
      default: { // avg-cip0
        const y = this.conv(x, cin, cout, 1, 1, 1, [0, 0, 0, 0], g, false);
        return this.op("AveragePool", [y], { kernel_shape: [3, 3], strides: [s, s], pads: [1, 1, 1, 1], count_include_pad: 0 });
      }
    }
  }
}

export function buildBlock(spec: BlockSpec): Model {
  const g = new Gen(spec);
  const x = g.input("input", ["N", spec.cin, spec.height, spec.width]);
  const terms = spec.branches.map((b) => g.branch(x, b));
  if (spec.negative) terms.push(g.negativeBranch(x));
  let y = terms.slice(1).reduce((acc, t) => g.op("Add", [acc, t]), terms[0]!);
  if (spec.after === "bn") y = g.bn(y, spec.cout);
  if (spec.after === "scale") y = g.op("Mul", [y, g.constant("gamma", [1, spec.cout, 1, 1], Array.from({ length: spec.cout }, () => g.rand() * 2))]);
  y = g.op("Relu", [y]);
  g.output(y);
  return g.build();
}

/** A deterministic random spec (for the fuzz script; the test suite uses fast-check arbitraries). */
export function randomSpec(seed: number): BlockSpec {
  const r = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const cin = pick([2, 4, 6]);
  const spec: BlockSpec = {
    cin, cout: pick([cin, cin, 4, 8]), height: pick([5, 7, 8, 9, 12]), width: pick([5, 6, 7, 11]),
    stride: pick([1, 1, 2] as const), k: pick([1, 3, 3, 5] as const), groups: 1,
    form: pick(["preserve", "folded"] as const), opset: pick([11, 12, 13, 14, 15, 16, 17]), float16: r() < 0.1,
    branches: [], after: pick(["none", "none", "bn", "scale"] as const), negative: r() < 0.25 ? pick(NEGATIVES) : null, seed: Math.floor(r() * 2 ** 31),
  };
  spec.groups = pick([1, 1, 2].filter((g) => spec.cin % g === 0 && spec.cout % g === 0));
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const b = pick(BRANCHES);
    if (legal(spec, b)) spec.branches.push(b);
  }
  if (spec.branches.length === 0) spec.branches.push("kxk");
  return spec;
}
