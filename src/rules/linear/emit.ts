// Writes a LinearMap back as ONNX nodes (docs/rules.md §5): a Conv for an image region, a Gemm or
// MatMul (+ Add of the bias) for a features region. New weights are handed back, never added to the
// graph here: the rule's Replacement declares them.
import { channelRows, regroup, rowLength, type LinearMap } from "../../algebra/linear-map.js";
import { attr, Node } from "../../ir/graph.js";
import { Tensor, encodeFloat, type TensorData } from "../../ir/tensor.js";
import type { RuleContext } from "../../pipeline/context.js";
import { transpose2 } from "./read.js";

/** A new initializer under a fresh name based on `base`, remembered in `into`; returns its name. */
export function newInitializer(ctx: RuleContext, into: Tensor[], base: string, make: (name: string) => Tensor): string {
  const t = make(ctx.uniqueName(base));
  into.push(t);
  return t.name;
}

/**
 * Emit a features-layout map: Gemm for [N, F] inputs, MatMul (+ Add of the bias) otherwise.
 * Returns the nodes (one or two); their new weights are appended to `inits`.
 */
export function emitDense(ctx: RuleContext, map: LinearMap, input: string, output: string, baseName: string, dtype: number, inits: Tensor[]): Node[] {
  // A grouped map (an identity, a per-feature affine summed with another) is written as its dense matrix.
  const m = map.groups === 1 ? map : regroup(map, 1);
  const rank = ctx.shapes().get(input)?.dims?.length ?? 2;
  const O = m.outChannels, I = m.inChannels;
  const hasBias = m.bias.some((v) => v !== 0);
  if (rank === 2) {
    const w = newInitializer(ctx, inits, `${baseName}.weight`, (name) => Tensor.fromFloat64(name, dtype, [O, I], m.kernel));
    const inputs = [input, w];
    if (hasBias) inputs.push(newInitializer(ctx, inits, `${baseName}.bias`, (name) => Tensor.fromFloat64(name, dtype, [O], m.bias)));
    return [new Node(ctx.uniqueName(baseName), "Gemm", inputs, [output], [attr.int("transB", 1)])];
  }
  const wT = transpose2(m.kernel, O, I); // [I, O] for MatMul
  const w = newInitializer(ctx, inits, `${baseName}.weight`, (name) => Tensor.fromFloat64(name, dtype, [I, O], wT));
  if (!hasBias) return [new Node(ctx.uniqueName(baseName), "MatMul", [input, w], [output])];
  const mid = ctx.uniqueName(`${output}_matmul`);
  const b = newInitializer(ctx, inits, `${baseName}.bias`, (name) => Tensor.fromFloat64(name, dtype, [O], m.bias));
  return [
    new Node(ctx.uniqueName(baseName), "MatMul", [input, w], [mid]),
    new Node(ctx.uniqueName(`${baseName}_bias`), "Add", [mid, b], [output]),
  ];
}

/** How many nodes emitDense makes (to decide whether a features region is worth rewriting). */
export function denseNodeCount(ctx: RuleContext, m: LinearMap, input: string): number {
  const rank = ctx.shapes().get(input)?.dims?.length ?? 2;
  return rank === 2 || m.bias.every((v) => v === 0) ? 1 : 2;
}

/**
 * A map's kernel stored in `dtype`. A map computed by rows (a branch sum, an affine fold) is
 * computed one output channel at a time into a row-sized float64 array and stored from there: the
 * region's kernel never exists whole in float64. The values are the rows the whole kernel holds.
 */
function storedKernel(m: LinearMap, dtype: number): TensorData {
  const rows = channelRows(m);
  if (!rows) return encodeFloat(dtype, m.kernel);
  const per = rowLength(m);
  const row = new Float64Array(per);
  const first = encodeFloat(dtype, row);
  const out = new (first.constructor as new (n: number) => TensorData)(per * m.outChannels);
  const direct = out instanceof Float32Array || out instanceof Float64Array; // set() converts as encodeFloat does
  for (let o = 0; o < m.outChannels; o++) {
    rows.row(o, row);
    if (direct) (out as Float32Array | Float64Array).set(row, o * per);
    else (out as Exclude<TensorData, Float32Array | Float64Array>).set(encodeFloat(dtype, row) as never, o * per);
  }
  return out;
}

/** Emit a LinearMap as a Conv node reading `input` and writing `output` (weights in `dtype`, appended to `inits`). */
export function emitConv(ctx: RuleContext, m: LinearMap, input: string, output: string, baseName: string, dtype: number, inits: Tensor[]): Node {
  const bias = channelRows(m)?.bias() ?? m.bias; // computed by rows: the kernel is not computed whole for it
  const w = newInitializer(ctx, inits, `${baseName}.weight`, (name) => Tensor.fromData(name, dtype, [m.outChannels, m.inChannels / m.groups, m.kh, m.kw], storedKernel(m, dtype)));
  const b = newInitializer(ctx, inits, `${baseName}.bias`, (name) => Tensor.fromFloat64(name, dtype, [m.outChannels], bias));
  return new Node(ctx.uniqueName(baseName), "Conv", [input, w, b], [output], [
    attr.ints("dilations", [...m.dilation]),
    attr.int("group", m.groups),
    attr.ints("kernel_shape", [m.kh, m.kw]),
    attr.ints("pads", [...m.pads]),
    attr.ints("strides", [...m.stride]),
  ]);
}
