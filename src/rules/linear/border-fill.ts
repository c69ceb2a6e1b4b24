// DBB's BN-value padding as training code writes it: `out = F.pad(bn(x), p)` then the border rows
// and columns overwritten with the per-channel value t (`out[:, :, 0:p, :] = t`, …). PyTorch exports
// each slice assignment as a ScatterND whose indices and updates are computed from the padded
// tensor's shape (Shape/Gather/Range/Expand/Where/… plumbing). This reader proves that such a chain
// is exactly "pad with a per-channel value": it evaluates the plumbing in float64 for more than one
// batch size, applies the scatters to a marked tensor, and checks that every border position — and
// no interior position — ends up holding a value that depends on the channel only.
import { isRefusal, refuse, type Pads, type Refusal } from "../../algebra/linear-map.js";
import { EVALUATED_OPS, evaluateNode, tensorUnsupported, valueFromTensor, type Value } from "../../eval/index.js";
import { DataType } from "../../ir/dtype.js";
import type { Node } from "../../ir/graph.js";
import type { RuleContext } from "../../pipeline/context.js";

export interface BorderFill {
  input: string;
  pads: Pads;
  /** The value every border position holds, per channel. */
  values: Float64Array;
  /** Every node the pattern consists of: the Pad, the scatters and their index plumbing. */
  nodes: Node[];
}

const BATCHES = [1, 2];

export function readBorderFill(ctx: RuleContext, last: Node, readPad: (n: Node) => { input: string; pads: Pads; value: number } | Refusal): BorderFill | Refusal {
  const producers = ctx.producers();
  // The chain: Pad → ScatterND → … → ScatterND (`last`).
  const scatters: Node[] = [];
  let node: Node | undefined = last;
  while (node?.opType === "ScatterND" && node.isDefaultDomain) {
    if (node.string("reduction", "none") !== "none") return refuse("ScatterND with a reduction");
    scatters.unshift(node);
    node = producers.get(node.inputs[0]!);
  }
  if (!node || node.opType !== "Pad") return refuse("ScatterND that does not overwrite a padded tensor");
  const pad = readPad(node);
  if ("refused" in pad) return pad;
  const padNode = node;
  const chain = new Set([padNode.outputs[0]!, ...scatters.map((s) => s.outputs[0]!)]);
  const dims = ctx.shapes().get(padNode.outputs[0]!)?.dims;
  if (!dims || dims.length !== 4 || dims.slice(1).some((d) => d === undefined)) return refuse("padded tensor's channel and spatial sizes are unknown");
  const [, C, H, W] = dims as [number | undefined, number, number, number];

  // The plumbing: everything feeding the scatters' indices and updates, down to constants and the
  // chain's own tensors. The chain's *values* are activations: they may reach the indices only
  // through Shape (e.g. Shape(Slice(padded))), so below they are evaluated as zeros of the right
  // shape, and a "tainted" (value-carrying) tensor must never reach an index or an update.
  const plumbing = new Set<Node>();
  const tainted = new Set<string>(chain);
  const collect = (tensor: string): Refusal | undefined => {
    if (!tensor || ctx.constant(tensor) || chain.has(tensor)) return undefined;
    const p = producers.get(tensor);
    if (!p) return refuse(`index computation reads graph input '${tensor}'`);
    if (plumbing.has(p)) return undefined;
    if (!p.isDefaultDomain || !EVALUATED_OPS.has(p.opType) || p.hasSubgraph()) return refuse(`index computation uses ${p.opType}, which is not evaluated`);
    plumbing.add(p);
    for (const i of p.inputs) {
      const r = collect(i);
      if (r) return r;
    }
    if (p.opType !== "Shape" && p.opType !== "Size" && p.inputs.some((i) => tainted.has(i))) for (const o of p.outputs) tainted.add(o);
    return undefined;
  };
  for (const s of scatters) for (const i of s.inputs.slice(1)) {
    const r = collect(i);
    if (r) return r;
    if (tainted.has(i)) return refuse("the scatter indices or values depend on activation values");
  }
  // Ownership: nothing outside the pattern may read its intermediate tensors.
  const owned = new Set<Node>([padNode, ...scatters, ...plumbing]);
  for (const n of owned)
    for (const o of n.outputs) {
      if (!o || n === last) continue;
      if (ctx.isGraphOutput(o) || ctx.consumers(o).some((c) => !owned.has(c))) return refuse(`'${o}' is also read outside the padding pattern`);
    }

  let values: Float64Array | undefined;
  const [pt, pl, pb, pr] = pad.pads;
  for (const N of dims[0] !== undefined ? [dims[0]] : BATCHES) {
    const memo = new Map<string, Value>();
    const evalTensor = (tensor: string): Value | Refusal => {
      const known = memo.get(tensor);
      if (known) return known;
      const c = ctx.constant(tensor);
      if (c) {
        if (tensorUnsupported(c)) return refuse(`constant '${tensor}' cannot be evaluated`);
        const v = valueFromTensor(c);
        memo.set(tensor, v);
        return v;
      }
      if (chain.has(tensor)) {
        // Only its shape can matter (checked above): zeros of the padded shape.
        const z: Value = { dtype: DataType.FLOAT, dims: [N, C, H, W], data: new Float64Array(N * C * H * W) };
        memo.set(tensor, z);
        return z;
      }
      const p = producers.get(tensor)!;
      const inputs: (Value | undefined)[] = [];
      for (const i of p.inputs) {
        if (!i) { inputs.push(undefined); continue; }
        const v = evalTensor(i);
        if ("refused" in v) return v;
        inputs.push(v);
      }
      const out = evaluateNode(p, inputs, ctx.opset());
      if (isRefusal(out)) return refuse(`index computation: ${out.refused}`);
      p.outputs.forEach((o, k) => o && memo.set(o, out[k]!));
      return memo.get(tensor)!;
    };
    // A marked padded tensor: NaN inside (the input), the Pad's value on the border.
    const size = N * C * H * W;
    const data = new Float64Array(size);
    const inside = (i: number, j: number) => i >= pt && i < H - pb && j >= pl && j < W - pr;
    for (let n = 0; n < N; n++)
      for (let c = 0; c < C; c++)
        for (let i = 0; i < H; i++)
          for (let j = 0; j < W; j++) data[((n * C + c) * H + i) * W + j] = inside(i, j) ? NaN : pad.value;
    let current: Value = { dtype: DataType.FLOAT, dims: [N, C, H, W], data };
    for (const s of scatters) {
      const idx = evalTensor(s.inputs[1]!), upd = evalTensor(s.inputs[2]!);
      if ("refused" in idx) return idx;
      if ("refused" in upd) return upd;
      if (upd.data.some((v) => !Number.isFinite(v))) return refuse("border values are not finite");
      const out = evaluateNode(s, [current, idx, upd], ctx.opset());
      if (isRefusal(out)) return refuse(`ScatterND: ${out.refused}`);
      current = out[0]!;
    }
    // Interior untouched; every border position of channel c holds the same value.
    const perChannel = new Float64Array(C).fill(NaN);
    for (let n = 0; n < N; n++)
      for (let c = 0; c < C; c++)
        for (let i = 0; i < H; i++)
          for (let j = 0; j < W; j++) {
            const v = current.data[((n * C + c) * H + i) * W + j]!;
            if (inside(i, j)) {
              if (!Number.isNaN(v)) return refuse("the scatters overwrite positions inside the padded image");
            } else if (Number.isNaN(perChannel[c]!)) perChannel[c] = v;
            else if (perChannel[c] !== v) return refuse("border values differ within a channel");
          }
    if (values && values.some((v, c) => v !== perChannel[c])) return refuse("border values depend on the batch size");
    values = perChannel;
  }
  return { input: pad.input, pads: pad.pads, values: values!, nodes: [...owned] };
}
