// Locality injection into a fully connected layer (docs/rules.md §8: RepMLP, RepMLPNet), in
// general form. Pattern: Add(a, b) where a and b are chains from one tensor T through
//   - views: Reshape, Flatten, Squeeze, Unsqueeze, Identity (never move elements in the C-order
//     buffer), and
//   - row-wise linear nodes (src/eval/row-map.ts: Conv, BatchNormalization, Gemm, MatMul by a
//     constant, Mul/Add/Sub/Div by a constant, Transpose keeping axis 0),
// one of them a fully connected layer P: Gemm/MatMul, or a 1x1 Conv on [M, K, 1, 1] vectors
// (RepMLPNet's grouped fc3). Both chains are then affine maps on the same rows of T's buffer — a
// row being P's input vector — so each is read off in float64 (unit-basis probe), they are summed,
// and the sum becomes P's weight (a grouped 1x1 conv keeps the largest group count the sum allows).
// The other chain, the Add, and the linear nodes around P go; P's views stay.
import { gcd } from "../algebra/linear-map.js";
import { chainBlocks, probeRowMap, type AffineRowMap, type RowStep } from "../eval/row-map.js";
import { Node, attr } from "../ir/graph.js";
import { knownProduct, type Dims } from "../ir/shapes.js";
import { Tensor } from "../ir/tensor.js";
import type { RuleContext } from "../pipeline/context.js";
import { notCandidate, refuse, type Match, type Refusal, type Rule } from "../pipeline/rule.js";
import { newInitializer } from "./linear/emit.js";
import { constantOperand } from "./linear/read.js";
import { AFFINE_BINARY_OPS as ELEMENTWISE, DENSE_OPS, VIEW_OPS as VIEWS } from "./op-traits.js";
import { isFoldableFloat, macGrowthLimit, sharedParameter } from "./policy.js";

type Chain = { start: string; nodes: Node[] };


/** Index of the data input of a view or row-wise node, or undefined when `n` is neither. */
function dataInput(ctx: RuleContext, n: Node): number | undefined {
  if (!n.isDefaultDomain || n.outputs.filter((o) => o).length !== 1) return undefined;
  if (VIEWS.has(n.opType)) return 0;
  if (n.opType === "Transpose") return n.ints("perm", [])[0] === 0 ? 0 : undefined;
  if (ELEMENTWISE.has(n.opType)) {
    const c = constantOperand(ctx, n);
    return c === undefined ? undefined : 1 - c;
  }
  const constRest = n.inputs.slice(1).every((t) => !t || ctx.constant(t));
  if (!constRest) return undefined;
  if (n.opType === "Conv" || n.opType === "BatchNormalization") return 0;
  if (n.opType === "Gemm") return n.int("transA", 0) === 0 && n.float("alpha", 1) === 1 ? 0 : undefined;
  if (n.opType === "MatMul") return ctx.constant(n.inputs[1]!)?.dims.length === 2 ? 0 : undefined;
  return undefined;
}

/** Walk from an Add input back through single-reader views and row-wise nodes. */
function walkBack(ctx: RuleContext, from: string): Chain {
  const producers = ctx.producers();
  const nodes: Node[] = [];
  let t = from;
  while (ctx.consumers(t).length === 1 && !ctx.isGraphOutput(t)) {
    const p = producers.get(t);
    const i = p && dataInput(ctx, p);
    if (!p || i === undefined) break;
    nodes.unshift(p);
    t = p.inputs[i]!;
  }
  return { start: t, nodes };
}

const isFc = (ctx: RuleContext, n: Node) => {
  if (DENSE_OPS.has(n.opType)) return true;
  if (n.opType !== "Conv") return false;
  // 1x1 on 1x1 maps, giving 1x1 maps (pads would add border outputs the matrix does not hold).
  const d = ctx.shapes().get(n.inputs[0]!)?.dims, y = ctx.shapes().get(n.outputs[0]!)?.dims;
  const w = ctx.constant(n.inputs[1]!)?.dims;
  return !!d && !!y && !!w && [d, y, w].every((dims) => dims.length > 2 && dims.slice(2).every((v) => v === 1));
};

/** A row-wise node's natural rows from the shapes around it (axis 0 split off), or why not. */
function rowStep(ctx: RuleContext, n: Node): RowStep | Refusal {
  const shapes = ctx.shapes();
  const di = dataInput(ctx, n)!;
  const xd = shapes.get(n.inputs[di]!)?.dims, yd = shapes.get(n.outputs[0]!)?.dims;
  if (!xd || !yd || xd.length < 2) return refuse(`${n.opType} '${n.name}': input shape unknown`);
  if (n.opType === "Gemm" || n.opType === "MatMul") {
    // Feature sizes from the weight: known even when the input came from `x.view(x.size(0), -1)`.
    const w = ctx.constant(n.inputs[1]!)!.dims;
    const transB = n.opType === "Gemm" && n.int("transB", 0) === 1;
    const rowIn = transB ? w[1] : w[0], rowOut = transB ? w[0] : w[1];
    if (rowIn === undefined || rowOut === undefined || w.length !== 2 || (n.opType === "Gemm" && xd.length !== 2))
      return refuse(`${n.opType} '${n.name}': not a matrix on the last axis`);
    if (n.opType === "Gemm" && n.inputs[2]) {
      const c = ctx.constant(n.inputs[2])!;
      if (c.dims.length === 2 && c.dims[0] !== 1) return refuse(`Gemm '${n.name}': its C varies per row`);
    }
    if (rowIn === 0 || rowOut === 0) return refuse(`${n.opType} '${n.name}': empty rows`);
    return { node: n, dataInput: di, inRow: [rowIn], rowIn, rowOut, matrixRows: true, blocks: 1 };
  }
  const rowIn = knownProduct(xd.slice(1)), rowOut = knownProduct(yd.slice(1));
  if (rowIn === undefined || rowOut === undefined) return refuse(`${n.opType} '${n.name}': shape [${xd.map((d) => d ?? "?")}] must be static past axis 0`);
  if (rowIn === 0 || rowOut === 0) return refuse(`${n.opType} '${n.name}': empty rows`);
  if (ELEMENTWISE.has(n.opType)) {
    const c = ctx.constant(n.inputs[1 - di]!)!;
    if (c.dims.length === xd.length && c.dims[0] !== 1) return refuse(`${n.opType} '${n.name}': its constant varies along axis 0`);
    if (c.dims.length > xd.length || rowIn !== rowOut) return refuse(`${n.opType} '${n.name}': its constant broadcasts the data to a larger shape`);
  }
  // A Conv's groups are contiguous channel blocks of its row; BN and constants act per element.
  const blocks = n.opType === "Conv" ? n.int("group", 1) : n.opType === "Transpose" ? 1 : "diagonal";
  return { node: n, dataInput: di, inRow: xd.slice(1) as number[], rowIn, rowOut, blocks };
}

/** Two Add operands of equal shape: same rank, equal known dims, at most one unknown (then equal: same element count). */
function sameShape(a: Dims | undefined, b: Dims | undefined): boolean {
  if (!a || !b || a.length !== b.length) return false;
  let unknown = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === undefined || b[i] === undefined) {
      if (a[i] !== b[i]) return false;
      unknown++;
    } else if (a[i] !== b[i]) return false;
  }
  return unknown <= 1;
}

interface Plan extends Match {
  add: Node;
  start: string;
  branches: RowStep[][];
  chains: Chain[];
  fc: Node;
  width: number;
}

/** Pattern, preconditions and cost of the fold at `add`, in that order (cheap checks first). */
function plan(ctx: RuleContext, add: Node): Plan | Refusal {
  if (add.inputs.length !== 2 || add.inputs[0] === add.inputs[1]) return notCandidate("not a sum of two branches");
  const chains = add.inputs.map((t) => walkBack(ctx, t));
  const fcs = chains.flatMap((c) => c.nodes.filter((n) => isFc(ctx, n)));
  if (fcs.length === 0) return notCandidate("no fully connected layer"); // conv-only regions are collapse-linear-regions' work
  // Branches from different tensors (a residual around an MLP with a nonlinearity) are not this pattern.
  if (chains[0]!.start !== chains[1]!.start) return notCandidate("branches from different tensors");
  const shapes = ctx.shapes();
  // The probe runs in float64: integer chains (truncating Div, wrapping) are not this algebra.
  if (!isFoldableFloat(shapes.get(chains[0]!.start)?.dtype) || !isFoldableFloat(shapes.get(add.outputs[0]!)?.dtype))
    return refuse("not a floating-point tensor");
  if (!sameShape(shapes.get(add.inputs[0]!)?.dims, shapes.get(add.inputs[1]!)?.dims)) return refuse("the two addends' shapes are not provably equal");
  const weightSize = (n: Node) => ctx.constant(n.inputs[1]!)?.size ?? 0;
  const fc = fcs.reduce((a, b) => (weightSize(b) > weightSize(a) ? b : a));
  const branches: RowStep[][] = [];
  for (const chain of chains) {
    const steps: RowStep[] = [];
    for (const n of chain.nodes) {
      if (VIEWS.has(n.opType)) continue;
      const s = rowStep(ctx, n);
      if ("refused" in s) return s;
      const shared = sharedParameter(ctx, n, n.inputs, "fc");
      if (shared) return refuse(`parameter '${shared.name}' of ${n.name} is shared with another node (use --duplicate-shared)`);
      steps.push(s);
    }
    branches.push(steps);
  }
  // A region row is one input vector of the FC: walk its size back to T through the nodes before it.
  const fcBranch = branches.find((b) => b.some((s) => s.node === fc))!;
  const at = fcBranch.findIndex((s) => s.node === fc);
  let width = fcBranch[at]!.rowIn;
  for (let i = at - 1; i >= 0; i--) {
    const s = fcBranch[i]!;
    if (width % s.rowOut !== 0) return refuse(`${s.node.opType} '${s.node.name}' does not act on whole FC rows`);
    width = (width / s.rowOut) * s.rowIn;
  }
  const tDims = shapes.get(chains[0]!.start)?.dims;
  const perSample = tDims && knownProduct(tDims.slice(1));
  if (perSample === undefined || perSample % width !== 0) return refuse(`FC rows of ${width} elements do not tile '${chains[0]!.start}'`);
  return { anchor: add, remove: [], add, start: chains[0]!.start, branches, chains, fc, width };
}

function macs(ctx: RuleContext, steps: RowStep[], width: number): number {
  let current = width, total = 0;
  for (const s of steps) {
    const k = current / s.rowIn;
    const w = ctx.constant(s.node.inputs[1]!)?.dims;
    if (s.node.opType === "Conv" && w) total += k * s.rowOut * knownProduct(w.slice(1))!;
    else if (s.node.opType === "Gemm" || s.node.opType === "MatMul") total += k * s.rowIn * s.rowOut;
    current = k * s.rowOut;
  }
  return total;
}

function sum(a: AffineRowMap, b: AffineRowMap): AffineRowMap {
  const matrix = a.matrix.map((v, i) => v + b.matrix[i]!), bias = a.bias.map((v, i) => v + b.bias[i]!);
  return { rows: a.rows, cols: a.cols, groups: a.groups, matrix, bias };
}

/** New nodes computing `map` in place of the FC: reading `input`, writing the FC's output tensor. */
function emitFc(ctx: RuleContext, fc: Node, input: string, map: AffineRowMap, inputRank: number, inits: Tensor[]): Node[] {
  const dtype = ctx.constant(fc.inputs[1]!)!.dtype;
  const base = fc.name || fc.outputs[0]!;
  const init = (suffix: string, dims: number[], data: Float64Array) =>
    newInitializer(ctx, inits, `${base}/reparam_${suffix}`, (name) => Tensor.fromFloat64(name, dtype, dims, data));
  const { rows, cols, matrix, bias } = map;
  // A Gemm/MatMul FC splits its rows into one block, so the sum is dense (groups = 1) there.
  if (fc.opType === "Gemm") {
    const w = init("weight", [rows, cols], matrix), b = init("bias", [rows], bias);
    return [new Node(fc.name, "Gemm", [input, w, b], [fc.outputs[0]!], [attr.int("transB", 1)])];
  }
  if (fc.opType === "MatMul") {
    const t = new Float64Array(cols * rows);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = matrix[r * cols + c]!;
    const w = init("weight", [cols, rows], t);
    if (bias.every((v) => v === 0)) return [new Node(fc.name, "MatMul", [input, w], [fc.outputs[0]!])];
    const mid = ctx.uniqueName(`${fc.outputs[0]}_matmul`);
    const b = init("bias", [rows], bias);
    return [new Node(fc.name, "MatMul", [input, w], [mid]), new Node(ctx.uniqueName(`${base}/reparam_bias`), "Add", [mid, b], [fc.outputs[0]!])];
  }
  const { groups } = map, spatial = inputRank - 2;
  const w = init("weight", [rows, cols / groups, ...new Array(spatial).fill(1)], matrix), b = init("bias", [rows], bias);
  const attrs = [attr.ints("kernel_shape", new Array(spatial).fill(1)), ...(groups > 1 ? [attr.int("group", groups)] : [])];
  return [new Node(fc.name, "Conv", [input, w, b], [fc.outputs[0]!], attrs)];
}

interface FcFold extends Plan {
  map: AffineRowMap;
  groups: number;
  fcChain: Chain;
  macsBefore: number;
  macsAfter: number;
}

export const foldIntoFc: Rule<FcFold> = {
  name: "fold-into-fc",
  description: "fold linear branches summed with a fully connected layer (Gemm/MatMul, or a 1x1 conv on vectors) into its matrix, seeing through Reshape/Transpose views (RepMLP, RepMLPNet)",
  rootOps: ["Add"],
  benefit: 20,
  match(add, ctx) {
    const p = plan(ctx, add);
    if ("refused" in p) return p;
    // Blocks both branches keep apart (RepMLPNet: the sharesets) stay apart: one probe per block column.
    const [ga, gb] = p.branches.map((steps) => chainBlocks(steps, p.width));
    const groups = gcd(ga!, gb!);
    const maps: AffineRowMap[] = [];
    for (const steps of p.branches) {
      const m = probeRowMap(steps, p.width, groups, (n) => ctx.constant(n), ctx.opset());
      if ("refused" in m) return refuse(m.refused);
      maps.push(m);
    }
    if (maps[0]!.rows !== maps[1]!.rows) return refuse("the branches give rows of different sizes");
    // The FC's own branch keeps its views; its other nodes must be per-element (BN, constants:
    // shape-keeping, so the views around them see the same shapes once they are dropped).
    const fcChain = p.chains.find((c) => c.nodes.includes(p.fc))!;
    const perElement = (n: Node) => n.opType === "BatchNormalization" || ELEMENTWISE.has(n.opType);
    const blocker = fcChain.nodes.find((n) => n !== p.fc && !VIEWS.has(n.opType) && !perElement(n));
    if (blocker) return refuse(`${blocker.opType} '${blocker.name}' sits in the FC's branch: only views and per-element nodes can be dropped there`);
    const map = sum(maps[0]!, maps[1]!);
    const macsBefore = p.branches.reduce((s, b) => s + macs(ctx, b, p.width), 0);
    const macsAfter = (map.rows * map.cols) / map.groups;
    // The FC's matrix replaces the local branches' kernels: no pointwise exception here (docs/rules.md §4).
    if (macsAfter > macGrowthLimit(ctx.options, false) * macsBefore) return refuse(`folding into the FC would raise MACs per row ${macsBefore} → ${macsAfter}`);
    const other = p.chains.find((c) => c !== fcChain)!.nodes;
    return { ...p, remove: [add, ...fcChain.nodes, ...other], map, groups, fcChain, macsBefore, macsAfter };
  },
  rewrite(f, ctx) {
    // Rebuild the FC's branch from T: its views, re-linked past the dropped per-element nodes, and
    // the new FC; the last node writes the Add's output.
    const fcIn = ctx.shapes().get(f.fc.inputs[0]!)!.dims!;
    const initializers: Tensor[] = [];
    const rebuilt: Node[] = [];
    let current = f.start;
    for (const n of f.fcChain.nodes) {
      if (n === f.fc) rebuilt.push(...emitFc(ctx, f.fc, current, f.map, fcIn.length, initializers));
      else if (VIEWS.has(n.opType)) rebuilt.push(new Node(n.name, n.opType, [current, ...n.inputs.slice(1)], [...n.outputs], n.attributes));
      else continue;
      current = rebuilt[rebuilt.length - 1]!.outputs[0]!;
    }
    rebuilt[rebuilt.length - 1]!.outputs = [f.add.outputs[0]!];
    const other = f.chains.find((c) => c !== f.fcChain)!.nodes;
    const folded = [...other, ...f.fcChain.nodes].filter((n) => n !== f.fc && !VIEWS.has(n.opType)).map((n) => n.opType);
    return {
      add: rebuilt, initializers, macsBefore: f.macsBefore, macsAfter: f.macsAfter,
      summary: `${folded.length ? folded.join(" + ") : "identity"} folded into ${f.fc.opType} '${f.fc.name}': [${f.map.rows}, ${f.map.cols}] matrix${f.groups > 1 ? ` (${f.groups} groups)` : ""}`,
    };
  },
};
