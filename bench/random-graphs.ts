// Random whole graphs for differential testing of the CLI (bench/graph-fuzz.ts). A seed makes one
// case, deterministically: a DAG over every op the rewrite rules touch — Conv (pads, strides,
// groups, dilation, auto_pad SAME_UPPER/SAME_LOWER/VALID), BatchNormalization, Mul/Add/Sub/Div by
// constants, Pad, AveragePool, Gemm/MatMul heads, Reshape/Flatten/Transpose, activations, Concat,
// Slice, Add trees of multi-branch blocks — with `If` bodies that read outer tensors, dynamic
// dims, `--shape` overrides, external data and float16 bodies behind float32 I/O (Cast wrappers).
//
// Spatial sizes are tracked as functions of the input's H and W over a set of candidate sizes
// (every value is checked, so an op is only added if it is valid at all of them), so two tensors
// are added or concatenated only where they agree at every size the harness later runs.
import { GraphBuilder, valueInfo, type Dim } from "../src/ir/builder.js";
import { DataType } from "../src/ir/dtype.js";
import { Node, type Model } from "../src/ir/graph.js";
import { onnx, type AttributeProto } from "../src/ir/proto.js";
import { Tensor } from "../src/ir/tensor.js";
import { mulberry32 } from "../src/verify/rng.js";

/** The project's one mulberry32 (src/verify/rng.ts); seed 0 is moved off the generator's weak start. */
export function prng(seed: number): () => number {
  return mulberry32(seed >>> 0 || 0x9e3779b9);
}

/** Which parts of the generator are on (the CI test turns on all of them; a replay can narrow). */
export interface GraphFeatures {
  dynamicSpatial: boolean;
  shapeOverride: boolean;
  ifBodies: boolean;
  externalData: boolean;
  float16: boolean;
  /** Faults injected on purpose (each case at most one). */
  faults: Fault[];
}

/** A truncated weights file, an output that would overwrite the input's weights, a missing output folder. */
export const FAULTS = ["truncated-data", "alias-data", "missing-out-dir"] as const;
export type Fault = (typeof FAULTS)[number];

export const ALL_FEATURES: GraphFeatures = { dynamicSpatial: true, shapeOverride: true, ifBodies: true, externalData: true, float16: true, faults: [...FAULTS] };

export interface GraphCase {
  seed: number;
  model: Model;
  /** The float input `x` [N, C, H, W] and, when there is an If, a bool scalar `cond`. */
  channels: number;
  /** Symbolic dims of `x` → the values at which the graph is valid (each is checked by construction). */
  dimValues: { N: number[]; H: number[]; W: number[] };
  dynamicSpatial: boolean;
  hasCond: boolean;
  /** `--shape x=…` given to the tool (a specialization the written model must honor or declare). */
  shapeOverride?: number[];
  externalData: boolean;
  /** Pass `--external-data` for the output too. */
  outputExternalData: boolean;
  noVerify: boolean;
  float16: boolean;
  fault?: Fault;
  /** What was built, in order (for reading a failure). */
  ops: string[];
  /** The generator's own extra CLI flags (e.g. --max-mac-growth). */
  flags: string[];
}

interface T {
  name: string;
  c: number;
  /** Size along H (W) at each candidate input H (W). */
  h: number[];
  w: number[];
}

const sig = (t: T) => `${t.c}|${t.h.join(",")}|${t.w.join(",")}`;
const spatialSig = (t: T) => `${t.h.join(",")}|${t.w.join(",")}`;

type AutoPad = "NOTSET" | "SAME_UPPER" | "SAME_LOWER" | "VALID";

function windowOut(n: number, k: number, s: number, d: number, pb: number, pe: number, autoPad: AutoPad): number {
  if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") return Math.ceil(n / s);
  if (autoPad === "VALID") return Math.floor((n - d * (k - 1) - 1) / s) + 1;
  return Math.floor((n + pb + pe - d * (k - 1) - 1) / s) + 1;
}

class Gen {
  readonly b: GraphBuilder;
  readonly ops: string[] = [];
  readonly pool: T[] = [];
  private readonly r: () => number;
  graphOutputs: { name: string; dims?: Dim[]; elemType?: number }[] = [];
  flags: string[] = [];
  private outCount = 0;

  constructor(seed: number, readonly opset: number, readonly float16: boolean, readonly dynamicSpatial: boolean) {
    this.r = prng(seed);
    this.b = new GraphBuilder(opset, float16 ? DataType.FLOAT16 : DataType.FLOAT);
  }

  rand(): number {
    return this.r();
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.r() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.r() < p;
  }
  pick<X>(xs: readonly X[]): X {
    return xs[Math.floor(this.r() * xs.length)]!;
  }
  /** A value away from zero (a safe divisor, a scale that does not vanish). */
  nonzero(): number {
    return (this.chance(0.5) ? 1 : -1) * (0.5 + this.r());
  }
  vec(prefix: string, n: number, f: () => number): string {
    return this.b.constant(prefix, [n], Array.from({ length: n }, f));
  }

  add(t: T, op: string): T {
    // Every emitting site checks sizes before it emits a node; this is the backstop.
    if (t.h.some((v) => v < 1) || t.w.some((v) => v < 1)) throw new Error(`generator bug: ${op} made an empty tensor`);
    this.pool.push(t);
    this.ops.push(op);
    return t;
  }

  /** A recent tensor of rank 4 (recent ones are preferred, so graphs grow deep as well as wide). */
  recent(): T {
    const n = this.pool.length;
    const i = this.chance(0.6) ? n - 1 : Math.max(0, n - 1 - Math.floor(this.r() * Math.min(n, 6)));
    return this.pool[i]!;
  }

  bn(x: T): T {
    const c = x.c;
    const y = this.b.op("BatchNormalization", [x.name, this.vec("g", c, () => this.nonzero()), this.vec("b", c, () => this.rand() - 0.5), this.vec("m", c, () => this.rand() - 0.5), this.vec("v", c, () => 0.5 + this.rand())], { epsilon: 1e-5 });
    return this.add({ ...x, name: y }, "BN");
  }

  conv(x: T, opts: { cout?: number; k?: [number, number]; s?: number; d?: number; group?: number; pads?: number[]; autoPad?: AutoPad; bias?: boolean } = {}): T | undefined {
    const cin = x.c;
    const depthwise = opts.group === undefined && this.chance(0.15);
    const cout = opts.cout ?? (depthwise ? cin : this.pick([cin, cin, 4, 6, 8]));
    let group = opts.group ?? (depthwise ? cin : 1);
    if (opts.group === undefined && !depthwise && cin % 2 === 0 && cout % 2 === 0 && this.chance(0.15)) group = 2;
    const k = opts.k ?? this.pick<[number, number]>([[1, 1], [3, 3], [3, 3], [5, 5], [1, 3], [3, 1], [2, 2]]);
    const s = opts.s ?? this.pick([1, 1, 1, 2]);
    const autoPad = opts.autoPad ?? (opts.pads ? "NOTSET" : undefined) ?? this.pick<AutoPad>(["NOTSET", "NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]);
    // onnxruntime runs no dilated conv with auto_pad SAME_*.
    const d = opts.d ?? (k[0] > 1 && !autoPad.startsWith("SAME") && this.chance(0.15) ? 2 : 1);
    let pads = opts.pads;
    if (!pads && autoPad === "NOTSET") {
      const same = [0, 1].map((a) => (d * (k[a]! - 1)) >> 1);
      const mode = this.r();
      if (mode < 0.6) pads = [same[0]!, same[1]!, same[0]!, same[1]!];
      else if (mode < 0.9) pads = [this.int(0, 2), this.int(0, 2), this.int(0, 2), this.int(0, 2)];
      else pads = [this.int(0, 7), this.int(0, 7), this.int(0, 7), this.int(0, 7)]; // large asymmetric
    }
    const h = x.h.map((n) => windowOut(n, k[0], s, d, pads?.[0] ?? 0, pads?.[2] ?? 0, autoPad));
    const w = x.w.map((n) => windowOut(n, k[1], s, d, pads?.[1] ?? 0, pads?.[3] ?? 0, autoPad));
    if (h.some((v) => v < 1) || w.some((v) => v < 1)) return undefined;
    const fanIn = (cin / group) * k[0] * k[1];
    const scale = 1.5 / Math.sqrt(fanIn);
    const wt = this.b.constant("w", [cout, cin / group, k[0], k[1]], Array.from({ length: cout * fanIn }, () => (this.rand() * 2 - 1) * scale));
    const inputs = [x.name, wt];
    if (opts.bias ?? this.chance(0.5)) inputs.push(this.vec("bias", cout, () => this.rand() - 0.5));
    const attrs: Record<string, number[] | number | string> = { kernel_shape: k, strides: [s, s], group };
    if (d !== 1) attrs.dilations = [d, d];
    if (autoPad === "NOTSET") attrs.pads = pads!;
    else attrs.auto_pad = autoPad;
    const y = this.b.op("Conv", inputs, attrs);
    return this.add({ name: y, c: cout, h, w }, `Conv(k${k.join("x")} s${s} d${d} g${group} ${autoPad === "NOTSET" ? `pads ${pads!.join(",")}` : autoPad})`);
  }

  activation(x: T): T {
    const kind = this.pick(["Relu", "Relu", "LeakyRelu", "Sigmoid", "Clip", "Tanh", "PRelu", "HardSigmoid", ...(this.opset >= 14 ? ["HardSwish"] : [])]);
    let y: string;
    if (kind === "LeakyRelu") y = this.b.op("LeakyRelu", [x.name], { alpha: 0.1 });
    else if (kind === "Clip") y = this.b.op("Clip", [x.name, this.b.constant("lo", [], [0]), this.b.constant("hi", [], [6])]);
    else if (kind === "PRelu") y = this.b.op("PRelu", [x.name, this.b.constant("slope", [x.c, 1, 1], Array.from({ length: x.c }, () => this.rand() * 0.5))]);
    else if (kind === "HardSigmoid") y = this.b.op("HardSigmoid", [x.name], { alpha: 0.2, beta: 0.5 });
    else y = this.b.op(kind, [x.name]);
    return this.add({ ...x, name: y }, kind);
  }

  /** Mul/Add/Sub/Div by a constant: per channel, scalar or rank-3, on either side where that is still affine. */
  affine(x: T): T {
    const op = this.pick(["Mul", "Add", "Sub", "Div"]);
    const form = this.pick(["chan", "chan", "scalar", "rank3", "one"]);
    const dims = form === "chan" ? [1, x.c, 1, 1] : form === "rank3" ? [x.c, 1, 1] : form === "one" ? [1] : [];
    const n = form === "chan" || form === "rank3" ? x.c : 1;
    const cst = this.b.constant("k", dims, Array.from({ length: n }, () => (op === "Div" || op === "Mul" ? this.nonzero() : this.rand() - 0.5)));
    const constFirst = op !== "Div" && this.chance(0.3);
    const y = this.b.op(op, constFirst ? [cst, x.name] : [x.name, cst]);
    return this.add({ ...x, name: y }, `${op}(${form}${constFirst ? ", const first" : ""})`);
  }

  pad(x: T): T | undefined {
    const pads = [this.int(0, 2), this.int(0, 2), this.int(0, 2), this.int(0, 2)];
    const mode = this.pick(["constant", "constant", "constant", "reflect", "edge"]);
    if (mode === "constant" && this.chance(0.1)) pads[this.int(0, 3)] = -1; // a crop
    const value = mode === "constant" && this.chance(0.4) ? this.rand() - 0.5 : 0;
    const h = x.h.map((n) => n + pads[0]! + pads[2]!);
    const w = x.w.map((n) => n + pads[1]! + pads[3]!);
    if (h.some((v) => v < 1) || w.some((v) => v < 1)) return undefined;
    // reflect needs pads < size
    if (mode === "reflect" && (x.h.some((n) => n <= Math.max(pads[0]!, pads[2]!)) || x.w.some((n) => n <= Math.max(pads[1]!, pads[3]!)))) return undefined;
    const inputs = [x.name, this.b.int64("pads", [0, 0, pads[0]!, pads[1]!, 0, 0, pads[2]!, pads[3]!])];
    if (value !== 0 || this.chance(0.3)) inputs.push(this.b.constant("pv", [], [value]));
    const y = this.b.op("Pad", inputs, { mode });
    return this.add({ name: y, c: x.c, h, w }, `Pad(${mode} ${pads.join(",")}${value ? ` value ${value.toFixed(2)}` : ""})`);
  }

  pool2d(x: T, kind: "AveragePool" | "MaxPool"): T | undefined {
    const k = this.pick([2, 3, 3]);
    const s = this.pick([1, 1, 2]);
    const autoPad = this.pick<AutoPad>(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "VALID"]);
    const p = autoPad === "NOTSET" ? (this.chance(0.6) ? [k >> 1, k >> 1, k >> 1, k >> 1].map((v) => Math.min(v, k - 1)) : [this.int(0, k - 1), this.int(0, k - 1), this.int(0, k - 1), this.int(0, k - 1)]) : [0, 0, 0, 0];
    const h = x.h.map((n) => windowOut(n, k, s, 1, p[0]!, p[2]!, autoPad));
    const w = x.w.map((n) => windowOut(n, k, s, 1, p[1]!, p[3]!, autoPad));
    if (h.some((v) => v < 1) || w.some((v) => v < 1)) return undefined;
    const attrs: Record<string, number[] | number | string> = { kernel_shape: [k, k], strides: [s, s] };
    if (autoPad === "NOTSET") attrs.pads = p;
    else attrs.auto_pad = autoPad;
    const cip = kind === "AveragePool" ? (this.chance(0.5) ? 1 : 0) : 0;
    if (kind === "AveragePool" && (cip || this.chance(0.3))) attrs.count_include_pad = cip;
    const y = this.b.op(kind, [x.name], attrs);
    return this.add({ name: y, c: x.c, h, w }, `${kind}(k${k} s${s} ${autoPad === "NOTSET" ? `pads ${p.join(",")}` : autoPad}${kind === "AveragePool" ? ` cip${cip}` : ""})`);
  }

  slice(x: T): T | undefined {
    if (this.chance(0.5) && x.c > 1) {
      const start = this.int(0, x.c - 1);
      const end = this.int(start + 1, x.c);
      const y = this.b.op("Slice", [x.name, this.b.int64("st", [start]), this.b.int64("en", [end]), this.b.int64("ax", [1])]);
      return this.add({ ...x, name: y, c: end - start }, `Slice(channels ${start}:${end})`);
    }
    // Spatial: drop a border with an end of INT64_MAX, a negative end, or a fixed end (a specialization hazard).
    const axis = this.pick([2, 3]);
    const form = this.pick(["start1", "end-1", "fixed"]);
    const sizes = axis === 2 ? x.h : x.w;
    let out: number[];
    let st: number, en: number;
    if (form === "start1") [st, en, out] = [1, 2 ** 53, sizes.map((n) => n - 1)];
    else if (form === "end-1") [st, en, out] = [0, -1, sizes.map((n) => n - 1)];
    else {
      en = this.int(2, 9);
      st = 0;
      out = sizes.map((n) => Math.min(n, en));
    }
    if (out.some((v) => v < 1)) return undefined;
    const y = this.b.op("Slice", [x.name, this.b.int64("st", [st]), (en === 2 ** 53 ? this.int64Max() : this.b.int64("en", [en])), this.b.int64("ax", [axis])]);
    return this.add({ name: y, c: x.c, h: axis === 2 ? out : x.h, w: axis === 3 ? out : x.w }, `Slice(axis ${axis} ${form})`);
  }

  /** A multi-branch block (RepVGG/ACNet/DBB family): every branch ends at the same size; summed by an Add tree. */
  repBlock(x: T): T | undefined {
    const s = this.pick([1, 1, 2]);
    const k = this.pick([3, 3, 5, 1]);
    const p = (k - 1) >> 1;
    const cout = this.pick([x.c, x.c, 4, 8]);
    const bnAfter = (t: T | undefined) => (t && this.chance(0.6) ? this.bn(t) : t);
    const kinds = ["kxk", "kxk-same", "1x1", "1xk", "kx1", "identity", "1x1-kxk", "1x1-avg", "dw-pw", "pad-kxk"];
    const branches: T[] = [];
    const n = this.int(2, 4);
    for (let i = 0; i < n * 2 && branches.length < n; i++) {
      const kind = this.pick(kinds);
      let t: T | undefined;
      switch (kind) {
        case "kxk": t = bnAfter(this.conv(x, { cout, k: [k, k], s, pads: [p, p, p, p], d: 1, group: 1 })); break;
        case "kxk-same": t = bnAfter(this.conv(x, { cout, k: [k, k], s, autoPad: this.pick(["SAME_UPPER", "SAME_LOWER"] as const), d: 1, group: 1 })); break;
        case "1x1": t = bnAfter(this.conv(x, { cout, k: [1, 1], s, pads: [0, 0, 0, 0], d: 1, group: 1 })); break;
        case "1xk": t = bnAfter(this.conv(x, { cout, k: [1, k], s, pads: [0, p, 0, p], d: 1, group: 1 })); break;
        case "kx1": t = bnAfter(this.conv(x, { cout, k: [k, 1], s, pads: [p, 0, p, 0], d: 1, group: 1 })); break;
        case "identity": t = cout === x.c && s === 1 ? (this.chance(0.5) ? this.bn(x) : x) : undefined; break;
        case "1x1-kxk": {
          const a = bnAfter(this.conv(x, { cout: x.c, k: [1, 1], s: 1, pads: this.chance(0.5) ? [p, p, p, p] : [0, 0, 0, 0], d: 1, group: 1 }));
          const padded = a && a.h[0]! > x.h[0]! ? 0 : p;
          t = a && bnAfter(this.conv(a, { cout, k: [k, k], s, pads: [padded, padded, padded, padded], d: 1, group: 1 }));
          break;
        }
        case "1x1-avg": {
          const a = bnAfter(this.conv(x, { cout, k: [1, 1], s: 1, pads: [p, p, p, p], d: 1, group: 1 }));
          if (!a || a.h.some((v) => v < k) || a.w.some((v) => v < k)) break;
          const y = this.b.op("AveragePool", [a.name], { kernel_shape: [k, k], strides: [s, s], pads: [0, 0, 0, 0] });
          t = bnAfter(this.add({ name: y, c: cout, h: a.h.map((v) => Math.floor((v - k) / s) + 1), w: a.w.map((v) => Math.floor((v - k) / s) + 1) }, `AveragePool(k${k} s${s})`));
          break;
        }
        case "dw-pw": {
          const a = bnAfter(this.conv(x, { cout: x.c, k: [k, k], s, pads: [p, p, p, p], d: 1, group: x.c }));
          t = a && bnAfter(this.conv(a, { cout, k: [1, 1], s: 1, pads: [0, 0, 0, 0], d: 1, group: 1 }));
          break;
        }
        case "pad-kxk": {
          const a = this.b.op("Pad", [x.name, this.b.int64("pads", [0, 0, p, p, 0, 0, p, p])], { mode: "constant" });
          const padded = this.add({ name: a, c: x.c, h: x.h.map((v) => v + 2 * p), w: x.w.map((v) => v + 2 * p) }, `Pad(${p})`);
          t = bnAfter(this.conv(padded, { cout, k: [k, k], s, pads: [0, 0, 0, 0], d: 1, group: 1 }));
          break;
        }
      }
      if (t && (branches.length === 0 || sig(t) === sig(branches[0]!))) branches.push(t);
    }
    if (branches.length === 0) return undefined;
    let y = branches[0]!;
    if (branches.length > 2 && this.chance(0.3)) {
      const name = this.b.op("Sum", branches.map((t) => t.name));
      y = this.add({ ...y, name }, `Sum(${branches.length})`);
    } else for (const t of branches.slice(1)) y = this.add({ ...y, name: this.b.op("Add", [y.name, t.name]) }, "Add");
    if (this.chance(0.3)) y = this.chance(0.5) ? this.bn(y) : this.affine(y);
    return this.chance(0.7) ? this.activation(y) : y;
  }

  /** Channels-last affine: Transpose → MatMul/Mul/Add over the channel axis → Transpose back. */
  channelsLast(x: T): T {
    const nhwc = this.b.op("Transpose", [x.name], { perm: [0, 2, 3, 1] });
    let y = nhwc;
    let c = x.c;
    if (this.chance(0.5)) {
      const c2 = this.pick([c, 4, 8]);
      y = this.b.op("MatMul", [y, this.b.constant("fc", [c, c2], Array.from({ length: c * c2 }, () => (this.rand() * 2 - 1) / Math.sqrt(c)))]);
      c = c2;
    } else y = this.b.op("Mul", [y, this.vec("ls", c, () => this.nonzero())]);
    if (this.chance(0.7)) y = this.b.op("Add", [y, this.vec("lb", c, () => this.rand() - 0.5)]);
    const back = this.b.op("Transpose", [y], { perm: [0, 3, 1, 2] });
    return this.add({ name: back, c, h: x.h, w: x.w }, `Transpose→channels-last affine→Transpose (${x.c}→${c})`);
  }

  /** INT64_MAX as an end, as PyTorch writes `x[:, :, 1:]`. */
  int64Max(): string {
    const name = this.b.fresh("en");
    this.b.initializers.set(name, Tensor.fromData(name, DataType.INT64, [1], BigInt64Array.of(9223372036854775807n)));
    return name;
  }

  /** Two tensors of the same size: Add or Concat (channels). */
  merge(): T | undefined {
    const x = this.recent();
    const mates = this.pool.filter((t) => t !== x && spatialSig(t) === spatialSig(x));
    if (mates.length === 0) return undefined;
    const same = mates.filter((t) => t.c === x.c);
    if (same.length && this.chance(0.5)) {
      const y = this.pick(same);
      return this.add({ ...x, name: this.b.op("Add", [x.name, y.name]) }, "Add(two tensors)");
    }
    const y = this.pick(mates);
    return this.add({ ...x, c: x.c + y.c, name: this.b.op("Concat", [x.name, y.name], { axis: 1 }) }, "Concat");
  }

  /** A classifier head: global pool → Flatten/Reshape → Gemm or MatMul+Add (→ another FC, → a scale). */
  head(x: T): string {
    let y: string;
    if (this.chance(0.7)) y = this.b.op("GlobalAveragePool", [x.name]);
    else y = this.b.op("ReduceMean", [x.name], { axes: [2, 3] });
    y = this.chance(0.5) ? this.b.op("Flatten", [y], { axis: 1 }) : this.b.op("Reshape", [y, this.b.int64("shape", [0, -1])]);
    let c = x.c;
    const fcs = this.int(1, 2);
    const ops = [`head(${fcs} FC)`];
    for (let i = 0; i < fcs; i++) {
      const c2 = this.pick([3, 5, 8]);
      if (this.chance(0.5)) {
        const transB = this.chance(0.5) ? 1 : 0;
        const wdims = transB ? [c2, c] : [c, c2];
        y = this.b.op("Gemm", [y, this.b.constant("fcw", wdims, Array.from({ length: c * c2 }, () => (this.rand() * 2 - 1) / Math.sqrt(c))), this.vec("fcb", c2, () => this.rand() - 0.5)], { transB, alpha: this.pick([1, 1, 0.5]), beta: this.pick([1, 1, 2]) });
      } else {
        y = this.b.op("MatMul", [y, this.b.constant("fcw", [c, c2], Array.from({ length: c * c2 }, () => (this.rand() * 2 - 1) / Math.sqrt(c)))]);
        if (this.chance(0.7)) y = this.b.op("Add", [y, this.vec("fcb", c2, () => this.rand() - 0.5)]);
      }
      if (this.chance(0.3)) y = this.b.op("Mul", [y, this.vec("fcs", c2, () => this.nonzero())]);
      c = c2;
    }
    this.ops.push(ops.join(""));
    return this.output(y, ["N", c]);
  }

  /** An If whose branches read outer tensors (one of which the rules may want to fold away). */
  ifNode(cond: string): string | undefined {
    const a = this.recent();
    const mates = this.pool.filter((t) => sig(t) === sig(a));
    const bT = this.pick(mates);
    const k = this.b.constant("ifk", [1, a.c, 1, 1], Array.from({ length: a.c }, () => this.nonzero()));
    const elem = this.float16 ? DataType.FLOAT16 : DataType.FLOAT;
    const thenKind = this.pick(["Mul", "Identity"]);
    const thenBranch = onnx.GraphProto.create({
      name: "then_body",
      node: [onnx.NodeProto.create({ name: "then_op", opType: thenKind, input: thenKind === "Mul" ? [a.name, k] : [a.name], output: ["then_out"] })],
      output: [valueInfo("then_out", elem)],
    });
    const elseKind = this.pick(["Relu", "Add"]);
    const elseBranch = onnx.GraphProto.create({
      name: "else_body",
      node: [onnx.NodeProto.create({ name: "else_op", opType: elseKind, input: elseKind === "Add" ? [bT.name, a.name] : [bT.name], output: ["else_out"] })],
      output: [valueInfo("else_out", elem)],
    });
    const name = this.b.fresh("If");
    const out = `${name}_out`;
    const attrs: AttributeProto[] = [
      onnx.AttributeProto.create({ name: "then_branch", type: onnx.AttributeProto.AttributeType.GRAPH, g: thenBranch }),
      onnx.AttributeProto.create({ name: "else_branch", type: onnx.AttributeProto.AttributeType.GRAPH, g: elseBranch }),
    ];
    this.b.nodes.push(new Node(name, "If", [cond], [out], attrs));
    this.ops.push(`If(then ${thenKind}, else ${elseKind}) reading ${a.name}${bT !== a ? ` and ${bT.name}` : ""}`);
    return this.output(out, this.dims(a));
  }

  dims(t: T): Dim[] {
    return ["N", t.c, this.dynamicSpatial ? `h_${this.outCount}` : t.h[0]!, this.dynamicSpatial ? `w_${this.outCount}` : t.w[0]!];
  }

  /** A graph output (behind a Cast to float32 when the body is float16). */
  output(name: string, dims: Dim[] | undefined): string {
    let out = name;
    if (this.float16) out = this.b.op("Cast", [name], { to: DataType.FLOAT });
    this.graphOutputs.push({ name: out, dims, elemType: DataType.FLOAT });
    this.outCount++;
    return out;
  }
}

/** Candidate sizes for a dynamic spatial dim: four distinct values of both parities. */
function candidates(g: Gen): number[] {
  for (;;) {
    const set = new Set<number>();
    while (set.size < 4) set.add(g.int(6, 19));
    const xs = [...set].sort((a, b) => a - b);
    if (xs.some((v) => v % 2) && xs.some((v) => v % 2 === 0)) return xs;
  }
}

export function randomGraph(seed: number, features: GraphFeatures = ALL_FEATURES): GraphCase {
  const meta = prng(seed ^ 0x51ed270b);
  const m = () => meta();
  const opset = [11, 12, 13, 13, 14, 15, 16, 17][Math.floor(m() * 8)]!;
  const float16 = features.float16 && m() < 0.12;
  const dynamicSpatial = features.dynamicSpatial && m() < 0.55;
  const g = new Gen(seed, opset, float16, dynamicSpatial);
  const channels = g.pick([2, 3, 4, 6]);
  const hs = dynamicSpatial ? candidates(g) : [g.int(6, 16)];
  const ws = dynamicSpatial ? candidates(g) : [g.int(6, 16)];
  const x = g.b.input("x", ["N", channels, dynamicSpatial ? "H" : hs[0]!, dynamicSpatial ? "W" : ws[0]!], DataType.FLOAT);
  let x0 = x;
  if (float16) x0 = g.b.op("Cast", [x], { to: DataType.FLOAT16 });
  g.add({ name: x0, c: channels, h: hs, w: ws }, float16 ? "input → Cast(float16)" : "input");

  const steps = g.int(2, 9);
  for (let i = 0; i < steps; i++) {
    const r = g.rand();
    const base = g.recent();
    if (r < 0.3) g.repBlock(base);
    else if (r < 0.45) {
      const c = g.conv(base);
      if (c && g.chance(0.6)) g.bn(c);
      if (c && g.chance(0.5)) g.activation(g.pool.at(-1)!);
    } else if (r < 0.53) g.affine(base);
    else if (r < 0.59) g.bn(base);
    else if (r < 0.65) g.pad(base);
    else if (r < 0.71) g.pool2d(base, g.chance(0.8) ? "AveragePool" : "MaxPool");
    else if (r < 0.76) g.slice(base);
    else if (r < 0.83) g.merge();
    else if (r < 0.89) g.channelsLast(base);
    else if (r < 0.93) g.activation(base);
    else {
      // a chain the cost bound has to judge: dw k×k → pointwise, or 1x1 convs with large asymmetric pads
      if (g.chance(0.5)) {
        const dw = g.conv(base, { cout: base.c, k: [3, 3], s: 1, d: 1, group: base.c, pads: [1, 1, 1, 1] });
        if (dw) g.conv(dw, { cout: g.pick([8, 16]), k: [1, 1], s: 1, d: 1, group: 1, pads: [0, 0, 0, 0] });
      } else {
        const a = g.conv(base, { k: [1, 1], s: 1, d: 1, group: 1, pads: [g.int(0, 6), g.int(0, 6), g.int(0, 6), g.int(0, 6)] });
        if (a) g.conv(a, { k: [1, 1], s: 1, d: 1, group: 1, pads: [g.int(0, 6), g.int(0, 6), g.int(0, 6), g.int(0, 6)] });
      }
    }
  }

  if (g.pool.length === 1) g.conv(g.pool[0]!, { k: [3, 3], s: 1, d: 1, pads: [1, 1, 1, 1] });
  const last = g.pool.at(-1)!;
  g.output(last.name, m() < 0.2 ? undefined : g.dims(last));
  // An intermediate as a second output (folding must keep it), sometimes.
  if (g.pool.length > 3 && m() < 0.25) {
    const mid = g.pool[1 + Math.floor(m() * (g.pool.length - 2))]!;
    if (!g.graphOutputs.some((o) => o.name === mid.name) && mid.name !== x) g.output(mid.name, g.dims(mid));
  }
  let hasCond = false;
  if (features.ifBodies && m() < 0.25) {
    g.b.input("cond", [], DataType.BOOL);
    hasCond = true;
    g.ifNode("cond");
  }
  if (m() < 0.35) g.head(g.recent());
  for (const o of g.graphOutputs) g.b.output(o.name, o.dims, o.elemType);
  const model = g.b.build();

  const noVerify = m() < 0.2;
  let shapeOverride: number[] | undefined;
  if (dynamicSpatial && features.shapeOverride && m() < 0.4) shapeOverride = [1, channels, hs[Math.floor(m() * hs.length)]!, ws[Math.floor(m() * ws.length)]!];
  else if (!dynamicSpatial && features.shapeOverride && m() < 0.1) shapeOverride = [m() < 0.5 ? 1 : 2, channels, hs[0]!, ws[0]!];
  const externalData = features.externalData && m() < 0.3;
  const outputExternalData = m() < 0.2;
  let fault: Fault | undefined;
  if (m() < 0.06) {
    const f: Fault = externalData ? (m() < 0.5 ? "truncated-data" : "alias-data") : "missing-out-dir";
    if (features.faults.includes(f)) fault = f;
  }
  const flags: string[] = [];
  if (m() < 0.1) flags.push("--max-mac-growth", String([1.5, 2, 4][Math.floor(m() * 3)]));
  // Half the specializing --shape runs let the rules rely on it: the output must then declare it.
  if (dynamicSpatial && shapeOverride && m() < 0.5) flags.push("--fix-shapes");
  return {
    seed, model, channels, dimValues: { N: [1, 2, 3], H: hs, W: ws }, dynamicSpatial, hasCond, shapeOverride,
    externalData, outputExternalData, noVerify, float16, fault, ops: g.ops, flags,
  };
}
