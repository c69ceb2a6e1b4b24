// The one place where ONNX nodes are read as linear maps (docs/rules.md §5; emit.ts writes them
// back). Each reader checks the node's preconditions and returns a refusal saying why not.
import { batchNormAffine } from "../../algebra/affine.js";
import { makeMap, notCandidate, refuse, type LinearMap, type Pads, type Refusal } from "../../algebra/linear-map.js";
import type { AveragePoolParams } from "../../algebra/pool.js";
import type { Node } from "../../ir/graph.js";
import { resolvePads } from "../../ir/shapes.js";
import type { RuleContext } from "../../pipeline/context.js";
import { AFFINE_BINARY_OPS } from "../op-traits.js";
import { isFoldableFloat, sharedFoldRefusal } from "../policy.js";
import { readBorderFill } from "./border-fill.js";
import { fusedUnitOf } from "./units.js";

/**
 * Which axis a region's maps act on: "nchw" = axis 1 of a 4-D image (convs, pools, pads);
 * "features" = the last axis of a [N, F] or [N, L, F] tensor (Gemm, MatMul, BN1d, per-feature
 * affines). A fully connected layer is then a 1x1 "conv" on the feature axis, so the same algebra
 * (affine, sum, composition = matrix product) folds both kinds of region.
 */
export type Layout = "nchw" | "features";

export type LinearOp =
  | { kind: "conv"; node: Node; input: string; map: LinearMap; layout: Layout }
  | { kind: "pool"; node: Node; input: string; params: AveragePoolParams }
  | { kind: "affine"; node: Node; input: string; scale: Float64Array; shift: Float64Array; layout: Layout }
  /** A constant pad; `values` per channel or one value; `nodes` = every node it consists of. */
  | { kind: "pad"; node: Node; input: string; pads: Pads; values: Float64Array; nodes: Node[] }
  /**
   * A sum of its terms, times `scale` (ReduceMean over a stack: 1/n); `nodes` = every node it
   * consists of besides `node` (a stack's Unsqueezes and Concat).
   */
  | { kind: "sum"; node: Node; terms: { tensor: string; sign: 1 | -1 }[]; scale?: number; nodes?: Node[] }
  | { kind: "identity"; node: Node; input: string };

const present = (s: string | undefined): s is string => s !== undefined && s !== "";

/**
 * Which operand of an elementwise Mul/Add/Sub/Div is the constant when the node is affine in the
 * other (c − x is, c / x is not), or undefined. Opset < 7 broadcast attributes align the constant
 * elsewhere: not affine in this sense.
 */
export function constantOperand(ctx: RuleContext, n: Node): 0 | 1 | undefined {
  if (!AFFINE_BINARY_OPS.has(n.opType) || !n.isDefaultDomain || n.inputs.length !== 2 || n.attributes.length > 0) return undefined;
  if (fusedUnitOf(ctx, n)) return undefined; // a GELU's or LayerNorm's constant: see units.ts
  const [c0, c1] = n.inputs.map((t) => ctx.constant(t));
  if (c1 && !c0) return 1;
  if (c0 && !c1 && n.opType !== "Div") return 0;
  return undefined;
}

/** The layout a tensor's rank implies: 4-D images are NCHW, 2-D and 3-D tensors carry features last. */
export function layoutOf(ctx: RuleContext, tensor: string): Layout | Refusal {
  const dims = ctx.shapes().get(tensor)?.dims;
  if (!dims) return refuse(`rank of '${tensor}' is unknown (give --shape)`);
  if (dims.length === 4) return "nchw";
  if (dims.length === 2 || dims.length === 3) return "features";
  return notCandidate(`'${tensor}' is ${dims.length}-D`);
}

/** Channel (nchw) or feature (last-axis) count of a tensor, when known. */
export function featureCount(ctx: RuleContext, tensor: string, layout: Layout): number | undefined {
  const dims = ctx.shapes().get(tensor)?.dims;
  if (!dims) return undefined;
  return layout === "nchw" ? dims[1] : dims[dims.length - 1];
}

export function readLinearOp(ctx: RuleContext, node: Node): LinearOp | Refusal {
  if (!node.isDefaultDomain) return refuse(`custom-domain op ${node.domain}.${node.opType}`);
  const unit = fusedUnitOf(ctx, node);
  if (unit) return refuse(`part of a ${unit} written out: kept whole so onnxruntime fuses it (folding its constant would make the model slower)`);
  switch (node.opType) {
    case "Conv": return readConv(ctx, node);
    case "Gemm": return readGemm(ctx, node);
    case "MatMul": return readMatMul(ctx, node);
    case "BatchNormalization": return readBatchNorm(ctx, node);
    case "Add": case "Sub": case "Mul": case "Div": return readBinary(ctx, node);
    case "Sum": return node.inputs.length >= 1 ? { kind: "sum", node, terms: node.inputs.map((tensor) => ({ tensor, sign: 1 as const })) } : refuse("empty Sum");
    case "Neg": {
      const layout = layoutOf(ctx, node.inputs[0]!);
      if (typeof layout !== "string") return layout;
      return { kind: "affine", node, input: node.inputs[0]!, scale: Float64Array.of(-1), shift: Float64Array.of(0), layout };
    }
    case "AveragePool": return readAveragePool(ctx, node);
    case "Pad": {
      const p = readPad(ctx, node);
      return "refused" in p ? p : { kind: "pad", node, input: p.input, pads: p.pads, values: Float64Array.of(p.value), nodes: [node] };
    }
    case "ScatterND": {
      const fill = readBorderFill(ctx, node, (n) => readPad(ctx, n));
      return "refused" in fill ? fill : { kind: "pad", node, input: fill.input, pads: fill.pads, values: fill.values, nodes: fill.nodes };
    }
    case "Slice": return readCrop(ctx, node);
    case "ReduceSum": case "ReduceMean": return readStackSum(ctx, node);
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

function readConv(ctx: RuleContext, node: Node): LinearOp | Refusal {
  const [x, wName, bName] = node.inputs;
  const w = ctx.constant(wName ?? "");
  if (!w) return refuse("Conv weight is not a constant");
  if (w.dims.length !== 4) return refuse(`Conv is ${w.dims.length - 2}-D (only 2-D convolutions fold)`);
  const b = present(bName) ? ctx.constant(bName) : undefined;
  if (present(bName) && !b) return refuse("Conv bias is not a constant");
  const shared = sharedFoldRefusal(ctx, node, [wName!, ...(present(bName) ? [bName] : [])]);
  if (shared) return shared;
  const [O, Cg, kh, kw] = w.dims as [number, number, number, number];
  const groups = node.int("group", 1);
  const strides = node.ints("strides", [1, 1]);
  const dilations = node.ints("dilations", [1, 1]);
  const pads = resolvePads(node, ctx.shapes().get(x!)?.dims, [kh, kw], strides, dilations);
  if (!pads) return refuse(`Conv auto_pad ${node.string("auto_pad", "")} at stride ${strides.join("x")}: its pads depend on input sizes the model leaves dynamic (--shape with --fix-shapes fixes them)`);
  if (O % groups !== 0) return refuse("Conv output channels not divisible by groups");
  const map = makeMap({
    outChannels: O, inChannels: Cg * groups, groups, kh, kw, kernel: w.floatView(),
    bias: b ? b.toFloat64() : new Float64Array(O),
    stride: [strides[0]!, strides[1]!], pads: [pads[0]!, pads[1]!, pads[2]!, pads[3]!], dilation: [dilations[0]!, dilations[1]!],
  });
  return { kind: "conv", node, input: x!, map, layout: "nchw" };
}

/** A fully connected layer as a 1x1 map on the feature axis. */
function denseMap(weightOI: Float64Array | Float32Array, O: number, I: number, bias: Float64Array): LinearMap {
  return makeMap({ outChannels: O, inChannels: I, groups: 1, kh: 1, kw: 1, kernel: weightOI, bias, stride: [1, 1], pads: [0, 0, 0, 0], dilation: [1, 1] });
}

export function transpose2(data: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/** Gemm(A, B, C) = alpha·A·op(B) + beta·C with constant B, C: a dense map of A's rows. */
function readGemm(ctx: RuleContext, node: Node): LinearOp | Refusal {
  const [a, bName, cName] = node.inputs;
  if (node.int("transA", 0) !== 0) return refuse("Gemm with transA");
  const B = ctx.constant(bName ?? "");
  if (!B || B.dims.length !== 2) return refuse("Gemm weight is not a constant matrix");
  const C = present(cName) ? ctx.constant(cName) : undefined;
  if (present(cName) && !C) return refuse("Gemm bias is not a constant");
  const shared = sharedFoldRefusal(ctx, node, [bName!, ...(present(cName) ? [cName] : [])]);
  if (shared) return shared;
  const transB = node.int("transB", 0) === 1;
  const [r, c] = B.dims as [number, number];
  const O = transB ? r : c, I = transB ? c : r;
  const alpha = node.float("alpha", 1), beta = node.float("beta", 1);
  let w: Float64Array | Float32Array = transB ? B.floatView() : transpose2(B.floatView(), r, c);
  if (alpha !== 1) w = w.map((v) => v * alpha);
  const bias = new Float64Array(O);
  if (C) {
    const cv = C.toFloat64();
    const cd = C.dims;
    // C broadcasts to [M, O]: only a per-output vector (or scalar) is a bias of the map.
    if (cd.length === 2 && cd[0] !== 1) return refuse(`Gemm bias of shape [${cd}] varies per row`);
    if (cv.length !== 1 && cv.length !== O) return refuse(`Gemm bias of shape [${cd}] does not match ${O} outputs`);
    for (let o = 0; o < O; o++) bias[o] = beta * cv[cv.length === 1 ? 0 : o]!;
  }
  return { kind: "conv", node, input: a!, map: denseMap(w, O, I, bias), layout: "features" };
}

/** MatMul(X, W) with a constant 2-D W on the right: a dense map of X's last axis. */
function readMatMul(ctx: RuleContext, node: Node): LinearOp | Refusal {
  const [x, wName] = node.inputs as [string, string];
  const W = ctx.constant(wName);
  if (!W || ctx.constant(x)) return notCandidate("MatMul without exactly one constant weight on the right");
  if (W.dims.length !== 2) return refuse(`MatMul weight of rank ${W.dims.length} (batched weights are not a linear layer of the features)`);
  const xDims = ctx.shapes().get(x)?.dims;
  if (!xDims || xDims.length < 2) return refuse("MatMul input rank unknown or 1-D");
  const shared = sharedFoldRefusal(ctx, node, [wName]);
  if (shared) return shared;
  const [I, O] = W.dims as [number, number];
  return { kind: "conv", node, input: x, map: denseMap(transpose2(W.floatView(), I, O), O, I, new Float64Array(O)), layout: "features" };
}

function readBatchNorm(ctx: RuleContext, node: Node): LinearOp | Refusal {
  if (node.int("training_mode", 0) !== 0) return refuse("BatchNormalization in training mode");
  if (node.outputs.slice(1).some((o) => present(o) && ctx.consumers(o).length > 0)) return refuse("BatchNormalization running statistics are used");
  if (node.int("spatial", 1) !== 1) return refuse("BatchNormalization with spatial=0");
  const params = node.inputs.slice(1, 5).map((n) => ctx.constant(n));
  if (params.length < 4 || params.some((p) => !p)) return refuse("BatchNormalization parameters are not constants");
  const shared = sharedFoldRefusal(ctx, node, node.inputs.slice(1, 5));
  if (shared) return shared;
  const [g, b, m, v] = params.map((p) => p!.toFloat64()) as [Float64Array, Float64Array, Float64Array, Float64Array];
  const { scale, shift } = batchNormAffine(g, b, m, v, node.float("epsilon", 1e-5));
  // BN normalizes axis 1: the channels of an image, the features of [N, F] — but not of [N, C, L].
  const rank = ctx.shapes().get(node.inputs[0]!)?.dims?.length;
  if (rank !== 4 && rank !== 2) return refuse(rank === undefined ? "BatchNormalization input rank unknown (a shape computed at run time: give --shape)" : `BatchNormalization over a ${rank}-D tensor (axis 1 is not the feature axis)`);
  return { kind: "affine", node, input: node.inputs[0]!, scale, shift, layout: rank === 4 ? "nchw" : "features" };
}

/**
 * A constant that scales or shifts whole channels: for an NCHW tensor shape [], [1], [C,1,1] or
 * [1,C,1,1]; for a features tensor [..., F] a constant varying only along the last axis.
 */
function channelVector(ctx: RuleContext, constName: string, other: string, layout: Layout): Float64Array | Refusal {
  const t = ctx.constant(constName)!;
  const dims = t.dims;
  const rank = ctx.shapes().get(other)!.dims!.length;
  if (dims.length > rank) return refuse(`constant '${constName}' of rank ${dims.length} would broadcast the tensor up`);
  const padded = [...new Array(rank - dims.length).fill(1), ...dims];
  const axis = layout === "nchw" ? 1 : rank - 1;
  if (padded.some((d, i) => i !== axis && d !== 1))
    return refuse(layout === "nchw"
      ? `constant '${constName}' of shape [${dims}] is not per-channel (for an NCHW tensor only [C,1,1], [1,C,1,1] or scalars are)`
      : `constant '${constName}' of shape [${dims}] varies along more than the feature axis`);
  const count = featureCount(ctx, other, layout);
  if (padded[axis] !== 1 && padded[axis] !== count) return refuse(`constant '${constName}' has ${padded[axis]} channels, tensor has ${count ?? "unknown"}`);
  if (!t.dtype || !isFoldableFloat(t.dtype)) return refuse(`constant '${constName}' is not floating point`);
  return t.toFloat64();
}

function readBinary(ctx: RuleContext, node: Node): LinearOp | Refusal {
  const [a, b] = node.inputs as [string, string];
  const ca = ctx.constant(a), cb = ctx.constant(b);
  if (ca && cb) return notCandidate("both operands are constants (constant folding, not a linear layer)");
  const op = node.opType;
  const out = ctx.shapes().get(node.outputs[0]!);
  if (out?.dtype !== undefined && !isFoldableFloat(out.dtype)) return notCandidate("not a floating-point tensor");
  let layout = layoutOf(ctx, node.outputs[0]!);
  if (typeof layout !== "string") return layout;
  // On a 4-D tensor a constant varying only along the last axis is a per-feature affine of a
  // channels-last tensor (a MatMul's output after a permute, ConvNeXt's [N, H, W, C]); after an
  // NCHW conv the layouts then differ and the region stops there, as it must.
  const constDims = (ca ?? cb)?.dims;
  if (layout === "nchw" && constDims && constDims.length >= 1 && constDims[constDims.length - 1]! > 1 && constDims.slice(0, -1).every((d) => d === 1))
    layout = "features";
  if (!ca && !cb) {
    if (op === "Add") return { kind: "sum", node, terms: [{ tensor: a, sign: 1 }, { tensor: b, sign: 1 }] };
    if (op === "Sub") return { kind: "sum", node, terms: [{ tensor: a, sign: 1 }, { tensor: b, sign: -1 }] };
    return notCandidate(`${op} of two activations is not linear`);
  }
  // A per-channel constant read by other nodes too (DBB's `Sub t … Add t`) stays for them; folding
  // copies at most a [C] vector, so sharing is not a reason to refuse here (unlike weights and BN).
  const constName = ca ? a : b, x = ca ? b : a;
  const inDims = ctx.shapes().get(x)?.dims;
  if (!inDims || inDims.length !== out!.dims!.length) return refuse(`the constant would broadcast '${x}' to another rank`);
  const v = channelVector(ctx, constName, x, layout);
  if ("refused" in v) return v;
  const ones = () => new Float64Array(v.length).fill(1);
  const zeros = () => new Float64Array(v.length);
  switch (op) {
    case "Mul": return { kind: "affine", node, input: x, scale: v, shift: zeros(), layout };
    case "Add": return { kind: "affine", node, input: x, scale: ones(), shift: v, layout };
    case "Sub": return ca
      ? { kind: "affine", node, input: x, scale: ones().fill(-1), shift: v, layout } // c − x
      : { kind: "affine", node, input: x, scale: ones(), shift: v.map((s) => -s), layout };
    default: // Div
      if (ca) return refuse("division by an activation is not linear");
      return { kind: "affine", node, input: x, scale: v.map((s) => 1 / s), shift: zeros(), layout };
  }
}

function readAveragePool(ctx: RuleContext, node: Node): LinearOp | Refusal {
  const k = node.ints("kernel_shape", []);
  if (k.length !== 2) return refuse("AveragePool is not 2-D");
  const strides = node.ints("strides", [1, 1]), dilations = node.ints("dilations", [1, 1]);
  const pads = resolvePads(node, ctx.shapes().get(node.inputs[0]!)?.dims, k, strides, dilations);
  if (!pads) return refuse(`AveragePool auto_pad ${node.string("auto_pad", "")} at stride ${strides.join("x")}: its pads depend on input sizes the model leaves dynamic (--shape with --fix-shapes fixes them)`);
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

function readPad(ctx: RuleContext, node: Node): { input: string; pads: Pads; value: number } | Refusal {
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

/** Constant integer values of an optional input, or of the attribute of the same name (older opsets). */
function intsOf(ctx: RuleContext, node: Node, input: number, attribute: string): number[] | undefined | Refusal {
  const name = node.inputs[input];
  if (present(name)) {
    const t = ctx.constant(name);
    return t ? Array.from(t.toFloat64()) : refuse(`${node.opType} ${attribute} are not constant`);
  }
  return node.attributes.some((a) => a.name === attribute) ? node.ints(attribute) : undefined;
}

/** Ends at or past this are "to the end" (exporters write INT64_MAX or INT32_MAX). */
const TO_THE_END = 2 ** 31 - 1;

/**
 * A Slice that crops rows/columns of an NCHW tensor by amounts that do not depend on its size
 * (ACNet's CropLayer: x[:, :, c:-c, :]) is a pad with negative amounts: a conv reading it is the
 * same conv of the uncropped tensor with its padding lowered by the crop (docs/rules.md §5).
 */
function readCrop(ctx: RuleContext, node: Node): LinearOp | Refusal {
  const x = node.inputs[0]!;
  const dims = ctx.shapes().get(x)?.dims;
  if (!dims || dims.length !== 4) return notCandidate("Slice of a tensor that is not 4-D (or of unknown rank)");
  const starts = node.opType === "Slice" && ctx.opset() >= 10 ? intsOf(ctx, node, 1, "starts") : node.ints("starts");
  const ends = ctx.opset() >= 10 ? intsOf(ctx, node, 2, "ends") : node.ints("ends");
  const axesIn = ctx.opset() >= 10 ? intsOf(ctx, node, 3, "axes") : node.attributes.some((a) => a.name === "axes") ? node.ints("axes") : undefined;
  const steps = ctx.opset() >= 10 ? intsOf(ctx, node, 4, "steps") : undefined;
  for (const v of [starts, ends, axesIn, steps]) if (v && "refused" in v) return v;
  const s = starts as number[] | undefined, e = ends as number[] | undefined;
  if (!s || !e || s.length !== e.length) return refuse("Slice starts/ends are missing");
  const axes = (axesIn as number[] | undefined) ?? s.map((_, i) => i);
  if ((steps as number[] | undefined)?.some((v) => v !== 1)) return notCandidate("Slice with steps other than 1 is not a crop");
  const pads: Pads = [0, 0, 0, 0];
  for (let i = 0; i < axes.length; i++) {
    const axis = axes[i]! < 0 ? axes[i]! + 4 : axes[i]!;
    const dim = dims[axis];
    let start = s[i]!, end = e[i]!;
    if (start < 0 || (end >= 0 && end < TO_THE_END && dim === undefined)) return notCandidate("Slice bounds depend on the tensor's size");
    if (end >= TO_THE_END || (dim !== undefined && end >= dim)) end = 0;
    else if (end >= 0) end = end - dim!; // a fixed size: the crop at the end is dim − end
    if (axis < 2) {
      if (start !== 0 || end !== 0) return notCandidate("Slice selects batch items or channels, not a crop");
      continue;
    }
    if (dim !== undefined && start - end >= dim) return refuse("Slice crops everything");
    pads[axis - 2] = -start; // begin (rows, columns)
    pads[axis] = end; // end: −(cropped count)
  }
  if (pads.every((p) => p === 0)) return { kind: "identity", node, input: x };
  return { kind: "pad", node, input: x, pads, values: Float64Array.of(0), nodes: [node] };
}

/**
 * Σ written as a stack (DyRep's torch.stack(outs).sum(0)): ReduceSum over axis a of
 * Concat(Unsqueeze(t_i, a), axis a), keepdims 0, is Σ t_i; ReduceMean is (1/n) Σ t_i. The
 * Unsqueezes and the Concat must have no other reader (docs/rules.md §5).
 */
function readStackSum(ctx: RuleContext, node: Node): LinearOp | Refusal {
  const concat = ctx.producers().get(node.inputs[0]!);
  if (!concat || concat.opType !== "Concat" || !concat.isDefaultDomain) return notCandidate(`${node.opType} of a tensor that is not a stack`);
  if (node.int("keepdims", 1) !== 0) return notCandidate(`${node.opType} keeps the stacked axis`);
  const rank = ctx.shapes().get(concat.outputs[0]!)?.dims?.length;
  if (rank === undefined) return refuse(`rank of the stack '${concat.outputs[0]}' is unknown`);
  const norm = (a: number) => (a < 0 ? a + rank : a);
  const axesIn = node.opType === "ReduceSum" && ctx.opset() >= 13 ? intsOf(ctx, node, 1, "axes") : node.attributes.some((a) => a.name === "axes") ? node.ints("axes") : undefined;
  if (axesIn && "refused" in axesIn) return axesIn;
  const axes = axesIn as number[] | undefined;
  const axis = norm(concat.int("axis", 0));
  if (!axes || axes.length !== 1 || norm(axes[0]!) !== axis) return notCandidate(`${node.opType} is not over the stacked axis alone`);
  const terms: { tensor: string; sign: 1 }[] = [];
  const nodes: Node[] = [concat];
  if (ctx.consumers(concat.outputs[0]!).length !== 1 || ctx.isGraphOutput(concat.outputs[0]!)) return refuse("the stack has another reader");
  for (const t of concat.inputs) {
    const u = ctx.producers().get(t);
    if (!u || u.opType !== "Unsqueeze" || ctx.consumers(t).length !== 1 || ctx.isGraphOutput(t)) return notCandidate("a stacked term is not an Unsqueeze read only by the stack");
    const uAxes = ctx.opset() >= 13 ? intsOf(ctx, u, 1, "axes") : u.ints("axes");
    if (!uAxes || "refused" in uAxes || uAxes.length !== 1 || norm(uAxes[0]!) !== axis) return notCandidate("a stacked term is unsqueezed on another axis");
    terms.push({ tensor: u.inputs[0]!, sign: 1 });
    nodes.push(u);
  }
  return { kind: "sum", node, terms, nodes, scale: node.opType === "ReduceMean" ? 1 / terms.length : 1 };
}
