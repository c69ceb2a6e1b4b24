// Random locality-injection blocks (RepMLP / RepMLPNet and their variants) for differential
// testing of fold-into-fc: an h×w window partition (6-D Reshape + Transpose), a fully connected
// layer over each window's S·h·w vector (a grouped 1x1 conv on [M, S·h·w, 1, 1], a Gemm, or a
// MatMul), a normalization after it (BN over S, BN1d over S·h·w, a per-share-set scale, or none),
// and random local conv-BN branches (kernels 1/3/5, their own groups, optionally an identity) on
// the same windows, added, and un-partitioned. Shapes are either constants with −1 for the batch
// or traced from Shape(x) as PyTorch exports them. Optional negatives keep a ReLU in a branch.
import { GraphBuilder } from "../src/ir/builder.js";
import { DataType } from "../src/ir/dtype.js";
import type { Model } from "../src/ir/graph.js";
import { mulberry32 } from "../src/verify/verify.js";

export interface FcBlockSpec {
  channels: number;
  sharesets: number;
  window: [number, number];
  parts: [number, number];
  fc: "conv" | "gemm" | "matmul";
  fcGroups: number;
  norm: "bn-s" | "bn1d" | "scale" | "none";
  kernels: number[];
  localGroups: number;
  identity: boolean;
  dynamicShapes: boolean;
  negative: boolean;
  seed: number;
}

const divisors = (n: number) => Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0);

export function randomFcSpec(seed: number): FcBlockSpec {
  const r = mulberry32(seed >>> 0 || 1);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const sharesets = pick([1, 2, 4]);
  const fc = pick(["conv", "conv", "gemm", "matmul"] as const);
  return {
    channels: sharesets * pick([1, 2]),
    sharesets,
    window: [pick([2, 3, 4]), pick([2, 3, 4])],
    parts: [pick([1, 2]), pick([1, 2])],
    fc,
    fcGroups: fc === "conv" ? pick(divisors(sharesets)) : 1,
    norm: pick(["bn-s", "bn1d", "scale", "none"] as const),
    kernels: [1, 3, 5].filter(() => r() < 0.6),
    localGroups: pick(divisors(sharesets)),
    identity: r() < 0.3,
    dynamicShapes: r() < 0.5,
    negative: r() < 0.15,
    seed,
  };
}

export function buildFcBlock(spec: FcBlockSpec): Model {
  const g = new GraphBuilder(13, DataType.FLOAT);
  const next = mulberry32(spec.seed * 7 + 3);
  const rand = () => next() - 0.5;
  const vec = (n: number, f: () => number) => g.constant("p", [n], Array.from({ length: n }, f));
  const bn = (x: string, c: number) =>
    g.op("BatchNormalization", [x, vec(c, () => 1 + rand()), vec(c, rand), vec(c, rand), vec(c, () => 1 + rand())], { epsilon: 1e-5 });
  const { channels: C, sharesets: S, window: [h, w], parts: [hp, wp] } = spec;
  const H = hp * h, W = wp * w, K = S * h * w;
  const x = g.input("x", ["N", C, H, W]);
  // A target shape: a constant with −1 for the batch, or [Shape(x)[0]·C/S·…, rest] as traced by PyTorch.
  const shape = (rest: number[], lead: number) => {
    if (!spec.dynamicShapes) return g.int64("shape", [-1, ...rest]);
    const n = g.op("Gather", [g.op("Shape", [x]), g.scalarInt64("i", 0)], { axis: 0 });
    const m = g.op("Unsqueeze", [g.op("Mul", [n, g.scalarInt64("lead", lead)]), g.int64("axes", [0])]);
    return g.op("Concat", [m, g.int64("rest", rest)], { axis: 0 });
  };
  const rows = (C / S) * hp * wp;
  const t = g.op("Transpose", [g.op("Reshape", [x, shape([C, hp, h, wp, w], 1)])], { perm: [0, 2, 4, 1, 3, 5] });
  // The FC over each window vector.
  let fc: string;
  if (spec.fc === "conv") {
    const wt = g.constant("fc3", [K, K / spec.fcGroups, 1, 1], Array.from({ length: (K * K) / spec.fcGroups }, () => rand() / Math.sqrt(K / spec.fcGroups)));
    fc = g.op("Conv", [g.op("Reshape", [t, shape([K, 1, 1], rows)]), wt], { kernel_shape: [1, 1], group: spec.fcGroups });
  } else if (spec.fc === "gemm") {
    const wt = g.constant("fc", [K, K], Array.from({ length: K * K }, () => rand() / Math.sqrt(K)));
    fc = g.op("Gemm", [g.op("Reshape", [t, g.int64("flat", [-1, K])]), wt, vec(K, rand)], { transB: 1 });
  } else {
    const wt = g.constant("fc", [K, K], Array.from({ length: K * K }, () => rand() / Math.sqrt(K)));
    fc = g.op("MatMul", [g.op("Reshape", [t, g.int64("flat", [-1, K])]), wt]);
  }
  let a: string;
  if (spec.norm === "bn1d") a = bn(g.op("Reshape", [fc, g.int64("flat", [-1, K])]), K);
  else {
    a = g.op("Reshape", [fc, shape([S, h, w], rows)]);
    if (spec.norm === "bn-s") a = bn(a, S);
    if (spec.norm === "scale") a = g.op("Mul", [a, g.constant("scale", [1, S, 1, 1], Array.from({ length: S }, () => 1 + rand()))]);
  }
  a = g.op("Reshape", [a, shape([hp, wp, S, h, w], C / S)]);
  // Local perceptron on the same windows.
  const windows = g.op("Reshape", [t, shape([S, h, w], rows)]);
  const branches = spec.kernels.map((k) => {
    const wt = g.constant("conv", [S, S / spec.localGroups, k, k], Array.from({ length: (S * S * k * k) / spec.localGroups }, rand));
    const y = bn(g.op("Conv", [windows, wt], { kernel_shape: [k, k], pads: [k >> 1, k >> 1, k >> 1, k >> 1], group: spec.localGroups }), S);
    return spec.negative && k === spec.kernels[0] ? g.op("Relu", [y]) : y;
  });
  if (spec.identity) branches.push(windows);
  let sum = a;
  if (branches.length > 0) {
    const local = branches.slice(1).reduce((acc, b) => g.op("Add", [acc, b]), branches[0]!);
    sum = g.op("Add", [a, g.op("Reshape", [local, shape([hp, wp, S, h, w], C / S)])]);
  }
  const back = g.op("Transpose", [sum], { perm: [0, 3, 1, 4, 2, 5] });
  g.output(g.op("Reshape", [back, shape([C, H, W], 1)]));
  return g.build();
}

/**
 * What a folded block must look like, or why it does not: with a local branch and no negative, the
 * FC absorbs every BN, scale and conv (a MatMul keeps one bias Add) — unless the report says the
 * sum would raise MACs past the bound (a dense local conv summed into a grouped FC).
 */
export function fcBlockFailure(spec: FcBlockSpec, out: Model, refusals: { reason: string }[]): string | undefined {
  const ops = (t: string) => out.graph.nodes.filter((n) => n.opType === t);
  if (spec.negative && spec.kernels.length > 0) {
    if (ops("Relu").length !== 1 || ops("Add").length === 0) return "the ReLU branch must stay a separate term";
    return undefined;
  }
  if (spec.kernels.length === 0 && !spec.identity) return undefined;
  if (refusals.some((r) => /raise MACs/.test(r.reason))) return undefined;
  if (ops("BatchNormalization").length > 0) return "a BatchNormalization is left";
  const convs = ops("Conv").length;
  if (convs !== (spec.fc === "conv" ? 1 : 0)) return `${convs} Conv nodes left`;
  const adds = ops("Add").length;
  if (adds > (spec.fc === "matmul" ? 1 : 0)) return `${adds} Add nodes left`;
  const floatMul = ops("Mul").filter((n) => n.inputs.some((i) => out.graph.initializers.get(i)?.dtype === DataType.FLOAT));
  if (floatMul.length > 0) return "a scale Mul is left";
  return undefined;
}
