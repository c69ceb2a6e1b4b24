// The one place where ONNX nodes are read as linear maps (and where a LinearMap becomes a Conv
// node again). Each reader checks the node's preconditions and returns a refusal saying why not.
import { batchNormAffine } from "../src/algebra/affine.js";
import { makeMap, notCandidate, refuse, type LinearMap, type Pads, type Refusal } from "../src/algebra/linear-map.js";
import type { AveragePoolParams } from "../src/algebra/pool.js";
import { DataType } from "../src/ir/dtype.js";
import { attr, Node } from "../src/ir/graph.js";
import { resolvePads } from "../src/ir/shapes.js";
import { Tensor } from "../src/ir/tensor.js";
import type { PassContext } from "../src/pipeline/context.js";
import { readBorderFill } from "./border-fill.js";

export type LinearOp =
  | { kind: "conv"; node: Node; input: string; map: LinearMap }
  | { kind: "pool"; node: Node; input: string; params: AveragePoolParams }
  | { kind: "affine"; node: Node; input: string; scale: Float64Array; shift: Float64Array }
  /** A constant pad; `values` per channel or one value; `nodes` = every node it consists of. */
  | { kind: "pad"; node: Node; input: string; pads: Pads; values: Float64Array; nodes: Node[] }
  | { kind: "sum"; node: Node; terms: { tensor: string; sign: 1 | -1 }[] }
  | { kind: "identity"; node: Node; input: string };

const present = (s: string | undefined): s is string => s !== undefined && s !== "";

/** Parameters of `node` that other nodes also read: folding would need private copies. */
function sharedParameters(ctx: PassContext, node: Node, names: string[]): Refusal | undefined {
  if (ctx.options.duplicateShared) return undefined;
  for (const name of names) {
    const t = ctx.constant(name);
    if (t && t.size > 1 && ctx.otherUsers(name, node).length > 0)
      return refuse(`parameter '${name}' is shared with ${ctx.otherUsers(name, node)[0]!.name || "another node"}: folding would duplicate it (use --duplicate-shared)`);
  }
  return undefined;
}

function rank4(ctx: PassContext, tensor: string): Refusal | undefined {
  const dims = ctx.shapes().get(tensor)?.dims;
  if (!dims) return refuse(`rank of '${tensor}' is unknown (give --shape)`);
  if (dims.length !== 4) return refuse(`'${tensor}' is ${dims.length}-D, not an NCHW image`);
  return undefined;
}

export function readLinearOp(ctx: PassContext, node: Node): LinearOp | Refusal {
  if (node.domain && node.domain !== "ai.onnx") return refuse(`custom-domain op ${node.domain}.${node.opType}`);
  switch (node.opType) {
    case "Conv": return readConv(ctx, node);
    case "BatchNormalization": return readBatchNorm(ctx, node);
    case "Add": case "Sub": case "Mul": case "Div": return readBinary(ctx, node);
    case "Sum": return node.inputs.length >= 1 ? { kind: "sum", node, terms: node.inputs.map((tensor) => ({ tensor, sign: 1 as const })) } : refuse("empty Sum");
    case "Neg": return { kind: "affine", node, input: node.inputs[0]!, scale: Float64Array.of(-1), shift: Float64Array.of(0) };
    case "AveragePool": return readAveragePool(ctx, node);
    case "Pad": {
      const p = readPad(ctx, node);
      return "refused" in p ? p : { kind: "pad", node, input: p.input, pads: p.pads, values: Float64Array.of(p.value), nodes: [node] };
    }
    case "ScatterND": {
      const fill = readBorderFill(ctx, node, (n) => readPad(ctx, n));
      return "refused" in fill ? fill : { kind: "pad", node, input: fill.input, pads: fill.pads, values: fill.values, nodes: fill.nodes };
    }
    case "Identity": return { kind: "identity", node, input: node.inputs[0]! };
    case "Dropout": {
      if (node.outputs.slice(1).some((o) => present(o) && ctx.consumers(o).length > 0)) return refuse("Dropout mask is used");
      const training = node.inputs[2] ? ctx.constant(node.inputs[2]) : undefined;
      if (node.inputs[2] && (!training || training.toFloat64()[0] !== 0)) return refuse("Dropout in training mode");
      return { kind: "identity", node, input: node.inputs[0]! };
    }
    default:
      return notCandidate(`${node.opType} is not linear`);
  }
}

function readConv(ctx: PassContext, node: Node): LinearOp | Refusal {
  const [x, wName, bName] = node.inputs;
  const w = ctx.constant(wName ?? "");
  if (!w) return refuse("Conv weight is not a constant");
  if (w.dims.length !== 4) return refuse(`Conv is ${w.dims.length - 2}-D (only 2-D convolutions fold)`);
  const b = present(bName) ? ctx.constant(bName) : undefined;
  if (present(bName) && !b) return refuse("Conv bias is not a constant");
  const shared = sharedParameters(ctx, node, [wName!, ...(present(bName) ? [bName] : [])]);
  if (shared) return shared;
  const [O, Cg, kh, kw] = w.dims as [number, number, number, number];
  const groups = node.int("group", 1);
  const strides = node.ints("strides", [1, 1]);
  const dilations = node.ints("dilations", [1, 1]);
  const pads = resolvePads(node, ctx.shapes().get(x!)?.dims, [kh, kw], strides, dilations);
  if (!pads) return refuse("Conv auto_pad needs input sizes that are unknown (give --shape)");
  if (O % groups !== 0) return refuse("Conv output channels not divisible by groups");
  const map = makeMap({
    outChannels: O, inChannels: Cg * groups, groups, kh, kw, kernel: w.floatView(),
    bias: b ? b.toFloat64() : new Float64Array(O),
    stride: [strides[0]!, strides[1]!], pads: [pads[0]!, pads[1]!, pads[2]!, pads[3]!], dilation: [dilations[0]!, dilations[1]!],
  });
  return { kind: "conv", node, input: x!, map };
}

function readBatchNorm(ctx: PassContext, node: Node): LinearOp | Refusal {
  if (node.int("training_mode", 0) !== 0) return refuse("BatchNormalization in training mode");
  if (node.outputs.slice(1).some((o) => present(o) && ctx.consumers(o).length > 0)) return refuse("BatchNormalization running statistics are used");
  if (node.int("spatial", 1) !== 1) return refuse("BatchNormalization with spatial=0");
  const params = node.inputs.slice(1, 5).map((n) => ctx.constant(n));
  if (params.length < 4 || params.some((p) => !p)) return refuse("BatchNormalization parameters are not constants");
  const shared = sharedParameters(ctx, node, node.inputs.slice(1, 5));
  if (shared) return shared;
  const [g, b, m, v] = params.map((p) => p!.toFloat64()) as [Float64Array, Float64Array, Float64Array, Float64Array];
  const { scale, shift } = batchNormAffine(g, b, m, v, node.float("epsilon", 1e-5));
  return { kind: "affine", node, input: node.inputs[0]!, scale, shift };
}

/** A constant that scales or shifts whole channels of an NCHW tensor: shape [], [1], [C,1,1], [1,C,1,1]. */
function channelVector(ctx: PassContext, constName: string, other: string): Float64Array | Refusal {
  const t = ctx.constant(constName)!;
  const dims = t.dims;
  if (dims.length > 4) return refuse(`constant '${constName}' has rank ${dims.length} > 4`);
  const padded = [...new Array(4 - dims.length).fill(1), ...dims];
  if (padded[0] !== 1 || padded[2] !== 1 || padded[3] !== 1)
    return refuse(`constant '${constName}' of shape [${dims}] is not per-channel (for an NCHW tensor only [C,1,1], [1,C,1,1] or scalars are)`);
  const notImage = rank4(ctx, other);
  if (notImage) return notImage;
  const channels = ctx.shapes().get(other)!.dims![1];
  if (padded[1] !== 1 && padded[1] !== channels) return refuse(`constant '${constName}' has ${padded[1]} channels, tensor has ${channels ?? "unknown"}`);
  if (!t.dtype || ![DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16].includes(t.dtype as 1)) return refuse(`constant '${constName}' is not floating point`);
  return t.toFloat64();
}

function readBinary(ctx: PassContext, node: Node): LinearOp | Refusal {
  const [a, b] = node.inputs as [string, string];
  const ca = ctx.constant(a), cb = ctx.constant(b);
  if (ca && cb) return notCandidate("both operands are constants (constant folding, not a linear layer)");
  const op = node.opType;
  const out = ctx.shapes().get(node.outputs[0]!);
  if (out?.dims && out.dims.length !== 4) return notCandidate(`'${node.outputs[0]}' is ${out.dims.length}-D, not an NCHW image`);
  if (out?.dtype !== undefined && ![DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16].includes(out.dtype as 1)) return notCandidate("not a floating-point tensor");
  if (!ca && !cb) {
    if (op === "Add") return { kind: "sum", node, terms: [{ tensor: a, sign: 1 }, { tensor: b, sign: 1 }] };
    if (op === "Sub") return { kind: "sum", node, terms: [{ tensor: a, sign: 1 }, { tensor: b, sign: -1 }] };
    return notCandidate(`${op} of two activations is not linear`);
  }
  // A per-channel constant read by other nodes too (DBB's `Sub t … Add t`) stays for them; folding
  // copies at most a [C] vector, so sharing is not a reason to refuse here (unlike weights and BN).
  const constName = ca ? a : b, x = ca ? b : a;
  const v = channelVector(ctx, constName, x);
  if ("refused" in v) return v;
  const ones = () => new Float64Array(v.length).fill(1);
  const zeros = () => new Float64Array(v.length);
  switch (op) {
    case "Mul": return { kind: "affine", node, input: x, scale: v, shift: zeros() };
    case "Add": return { kind: "affine", node, input: x, scale: ones(), shift: v };
    case "Sub": return ca
      ? { kind: "affine", node, input: x, scale: ones().fill(-1), shift: v } // c − x
      : { kind: "affine", node, input: x, scale: ones(), shift: v.map((s) => -s) };
    default: // Div
      if (ca) return refuse("division by an activation is not linear");
      return { kind: "affine", node, input: x, scale: v.map((s) => 1 / s), shift: zeros() };
  }
}

function readAveragePool(ctx: PassContext, node: Node): LinearOp | Refusal {
  const k = node.ints("kernel_shape", []);
  if (k.length !== 2) return refuse("AveragePool is not 2-D");
  const strides = node.ints("strides", [1, 1]), dilations = node.ints("dilations", [1, 1]);
  const pads = resolvePads(node, ctx.shapes().get(node.inputs[0]!)?.dims, k, strides, dilations);
  if (!pads) return refuse("AveragePool auto_pad needs unknown input sizes");
  if (node.string("auto_pad", "NOTSET").startsWith("SAME") && node.int("count_include_pad", 0) === 0 && pads.some((p) => p))
    return refuse("AveragePool SAME padding excludes the pad from the divisor");
  return {
    kind: "pool", node, input: node.inputs[0]!,
    params: {
      kernel: [k[0]!, k[1]!], stride: [strides[0]!, strides[1]!], pads: [pads[0]!, pads[1]!, pads[2]!, pads[3]!],
      countIncludePad: node.int("count_include_pad", 0) === 1, ceilMode: node.int("ceil_mode", 0) === 1, dilation: [dilations[0]!, dilations[1]!],
    },
  };
}

function readPad(ctx: PassContext, node: Node): { input: string; pads: Pads; value: number } | Refusal {
  const mode = node.string("mode", "constant");
  if (mode !== "constant") return refuse(`Pad mode '${mode}' is not a constant pad`);
  if (present(node.inputs[3])) return refuse("Pad with axes input");
  let pads: number[] | undefined;
  let value = 0;
  if (node.inputs.length > 1 && present(node.inputs[1])) {
    const t = ctx.constant(node.inputs[1]);
    if (!t) return refuse("Pad amounts are not constant");
    pads = Array.from(t.toFloat64());
    if (present(node.inputs[2])) {
      const v = ctx.constant(node.inputs[2]);
      if (!v) return refuse("Pad value is not constant");
      value = v.toFloat64()[0] ?? 0;
    }
  } else {
    pads = node.ints("pads");
    value = node.float("value", 0);
  }
  if (!pads || pads.length !== 8) return refuse("Pad is not on a 4-D tensor");
  if (pads[0] || pads[1] || pads[4] || pads[5]) return refuse("Pad pads batch or channel axes");
  if (pads.some((p) => p < 0)) return refuse("Pad with negative amounts (a crop)");
  return { input: node.inputs[0]!, pads: [pads[2]!, pads[3]!, pads[6]!, pads[7]!], value };
}

/** Emit a LinearMap as a Conv node reading `input` and writing `output` (weights in `dtype`). */
export function emitConv(ctx: PassContext, m: LinearMap, input: string, output: string, baseName: string, dtype: number): Node {
  const w = ctx.rewriter.addInitializer(`${baseName}.weight`, (name) => Tensor.fromFloat64(name, dtype, [m.outChannels, m.inChannels / m.groups, m.kh, m.kw], m.kernel));
  const b = ctx.rewriter.addInitializer(`${baseName}.bias`, (name) => Tensor.fromFloat64(name, dtype, [m.outChannels], m.bias));
  return new Node(ctx.rewriter.uniqueName(baseName), "Conv", [input, w, b], [output], [
    attr.ints("dilations", [...m.dilation]),
    attr.int("group", m.groups),
    attr.ints("kernel_shape", [m.kh, m.kw]),
    attr.ints("pads", [...m.pads]),
    attr.ints("strides", [...m.stride]),
  ]);
}
