// A BatchNormalization is a per-channel affine map y = s ⊙ x + t on axis 1, whatever the rank
// (docs/rules.md §14): on [N, C, L] as on images. Next-ViT normalizes before its attention
// (BN → Reshape(B, C, −1) → Transpose → q/k/v Linear, and AvgPool1d → BatchNorm1d → Transpose →
// k/v Linear) and its deploy merges those BNs into the Linear weights. Here the affine is carried
// forward to every reader: through views that keep the channel axis whole (Reshape that only
// merges or splits the axes after it, Transpose that moves it, a Pad of zero amounts) and through
// an unpadded AveragePool over the axes after it (the mean of s·x + t is s·mean(x) + t), until each
// path ends in a layer that absorbs it — a MatMul with a constant weight on that axis whose bias
// Add takes the shift (W' = diag(s)·W, b' = b + tᵀW), or another BatchNormalization on that axis
// (γ' = γ·s, mean' = (mean − t)/s). If any path ends elsewhere, nothing changes.
import { batchNormAffine } from "../algebra/affine.js";
import type { Node } from "../ir/graph.js";
import { Tensor } from "../ir/tensor.js";
import type { RuleContext } from "../pipeline/context.js";
import { notCandidate, refuse, type Match, type Rule } from "../pipeline/rule.js";
import { sharedParameter, isFoldableFloat } from "./policy.js";

interface Terminal {
  kind: "matmul" | "bn";
  node: Node;
  /** MatMul: the bias Add after it and which of its inputs is the constant bias. */
  bias?: { node: Node; input: number };
}

interface IntoReadersMatch extends Match {
  scale: Float64Array;
  shift: Float64Array;
  terminals: Terminal[];
}

const present = (s: string | undefined): s is string => s !== undefined && s !== "";

/** The inference-BN affine of `node` (constant parameters, axis 1), or a refusal. */
function bnAffine(ctx: RuleContext, node: Node): { scale: Float64Array; shift: Float64Array } | { refused: string } {
  if (node.int("training_mode", 0) !== 0 || node.outputs.slice(1).some(present)) return refuse("BatchNormalization in training mode");
  const params = node.inputs.slice(1, 5).map((n) => ctx.constant(n));
  if (params.length < 4 || params.some((p) => !p)) return refuse("BatchNormalization parameters are not constants");
  const [g, b, m, v] = params.map((p) => p!.toFloat64()) as [Float64Array, Float64Array, Float64Array, Float64Array];
  return batchNormAffine(g, b, m, v, node.float("epsilon", 1e-5));
}

/** Same dims (numbers equal, or the same run-time symbol) for axes [0, upTo]. */
function samePrefix(ctx: RuleContext, a: string, b: string, upTo: number): boolean {
  const sa = ctx.shapes().get(a), sb = ctx.shapes().get(b);
  if (!sa?.dims || !sb?.dims || sa.dims.length <= upTo || sb.dims.length <= upTo) return false;
  for (let i = 0; i <= upTo; i++) {
    const da = sa.dims[i], db = sb.dims[i];
    if (da !== undefined || db !== undefined) {
      if (da !== db) return false;
    } else if (!sa.symbols?.[i] || sa.symbols[i] !== sb.symbols?.[i]) return false;
  }
  return true;
}

/**
 * Follow `tensor` (the affine acts on `axis`) to every reader; push the layers that absorb it into
 * `terminals`. Returns a refusal for the first path that ends elsewhere.
 */
function follow(ctx: RuleContext, tensor: string, axis: number, channels: number, terminals: Terminal[], depth = 0): { refused: string } | undefined {
  if (depth > 12) return refuse("the path to the layers is too long");
  if (ctx.isGraphOutput(tensor)) return refuse(`'${tensor}' is a graph output`);
  const rank = ctx.shapes().get(tensor)?.dims?.length;
  if (rank === undefined) return refuse(`rank of '${tensor}' is unknown`);
  for (const r of ctx.consumers(tensor)) {
    if (!r.isDefaultDomain) return refuse(`read by custom-domain op ${r.opType}`);
    const out = r.outputs[0]!;
    switch (r.opType) {
      case "Shape": case "Size": continue; // they read the shape only, which the affine keeps
      case "Reshape": {
        // Only reshapes that keep every axis up to the channel axis (merging or splitting later ones).
        if (r.inputs[0] !== tensor || !samePrefix(ctx, tensor, out, axis)) return refuse(`Reshape '${r.name}' does not keep the channel axis`);
        const f = follow(ctx, out, axis, channels, terminals, depth + 1);
        if (f) return f;
        continue;
      }
      case "Transpose": {
        const perm = r.ints("perm", Array.from({ length: rank }, (_, i) => rank - 1 - i));
        const f = follow(ctx, out, perm.indexOf(axis), channels, terminals, depth + 1);
        if (f) return f;
        continue;
      }
      case "Pad": {
        const amounts = present(r.inputs[1]) ? ctx.constant(r.inputs[1])?.toFloat64() : r.ints("pads");
        if (r.inputs[0] !== tensor || !amounts || present(r.inputs[3]) || Array.from(amounts).some((v) => v !== 0)) return refuse(`Pad '${r.name}' pads the tensor (its border would not be shifted)`);
        const f = follow(ctx, out, axis, channels, terminals, depth + 1);
        if (f) return f;
        continue;
      }
      case "AveragePool": {
        if (axis !== 1 || r.string("auto_pad", "NOTSET") !== "NOTSET" || r.ints("pads", []).some((v) => v !== 0)) return refuse(`AveragePool '${r.name}' pads or pools the channel axis`);
        const f = follow(ctx, out, axis, channels, terminals, depth + 1);
        if (f) return f;
        continue;
      }
      case "MatMul": {
        const w = ctx.constant(r.inputs[1]!);
        if (r.inputs[0] !== tensor || !w || w.dims.length !== 2 || axis !== rank - 1 || w.dims[0] !== channels) return refuse(`MatMul '${r.name}' does not have a constant weight on the channel axis`);
        if (sharedParameter(ctx, r, [r.inputs[1]!], "fc")) return refuse(`the weight of '${r.name}' is shared`);
        const adds = ctx.consumers(out);
        const add = adds.length === 1 && !ctx.isGraphOutput(out) && adds[0]!.opType === "Add" ? adds[0]! : undefined;
        const bi = add ? add.inputs.findIndex((t) => t !== out && ctx.constant(t)) : -1;
        const b = bi >= 0 ? ctx.constant(add!.inputs[bi]!) : undefined;
        if (!add || !b || b.size !== w.dims[1] || b.dims.slice(0, -1).some((d) => d !== 1) || sharedParameter(ctx, add, [add.inputs[bi]!], "fc"))
          return refuse(`MatMul '${r.name}' has no bias Add of its own to take the shift`);
        terminals.push({ kind: "matmul", node: r, bias: { node: add, input: bi } });
        continue;
      }
      case "BatchNormalization": {
        if (axis !== 1 || r.inputs[0] !== tensor) return refuse(`BatchNormalization '${r.name}' is on another axis`);
        const a = bnAffine(ctx, r);
        if ("refused" in a) return a;
        if (sharedParameter(ctx, r, r.inputs.slice(1, 5), "fc")) return refuse(`the parameters of '${r.name}' are shared`);
        terminals.push({ kind: "bn", node: r });
        continue;
      }
      default:
        return refuse(`read by ${r.opType} '${r.name}', which does not absorb a per-channel affine`);
    }
  }
  return undefined;
}

export const affineIntoReaders: Rule<IntoReadersMatch> = {
  name: "affine-into-readers",
  description: "a BatchNormalization on [N, C, …] carried through views and average pools into the MatMul weights / BNs that read it (Next-ViT's pre-attention BNs)",
  rootOps: ["BatchNormalization"],
  benefit: 35,
  match(node, ctx) {
    const x = node.inputs[0]!, y = node.outputs[0]!;
    const info = ctx.shapes().get(x);
    if (!info?.dims || info.dims.length < 3) return notCandidate("not on a tensor of rank 3 or more");
    if (!isFoldableFloat(info.dtype)) return notCandidate("not a floating-point tensor");
    const a = bnAffine(ctx, node);
    if ("refused" in a) return a;
    if (sharedParameter(ctx, node, node.inputs.slice(1, 5), "fc")) return refuse("its parameters are shared");
    const terminals: Terminal[] = [];
    const why = follow(ctx, y, 1, a.scale.length, terminals);
    // On an image, collapse-linear-regions may still fold it: only say why for [N, C, L] and beyond.
    if (why) return info.dims.length === 4 ? notCandidate(why.refused) : refuse(`BatchNormalization over [${info.dims.map((d) => d ?? "?")}] (an affine on axis 1) not folded: ${why.refused}`);
    if (terminals.length === 0) return notCandidate("no layer reads it");
    if (terminals.some((t) => t.kind === "bn") && a.scale.some((v) => v === 0)) return refuse("a zero scale cannot move into a following BatchNormalization");
    return { anchor: node, remove: [node], ...a, terminals };
  },
  rewrite({ anchor, scale: s, shift: t, terminals }, ctx) {
    const initializers: Tensor[] = [];
    const rewire: { node: Node; input: number; tensor: string }[] = [];
    const collect: string[] = [];
    const put = (node: Node, input: number, like: Tensor, data: Float64Array) => {
      collect.push(node.inputs[input]!);
      const tensor = Tensor.fromFloat64(ctx.uniqueName(`${node.inputs[input]}_folded`), like.dtype, like.dims, data);
      initializers.push(tensor);
      rewire.push({ node, input, tensor: tensor.name });
    };
    for (const term of terminals) {
      if (term.kind === "matmul") {
        const w = ctx.constant(term.node.inputs[1]!)!;
        const [I, O] = w.dims as [number, number];
        const wv = w.toFloat64(), nw = new Float64Array(I * O);
        const bias = ctx.constant(term.bias!.node.inputs[term.bias!.input]!)!;
        const nb = Float64Array.from(bias.toFloat64());
        for (let i = 0; i < I; i++)
          for (let o = 0; o < O; o++) {
            nw[i * O + o] = s[i]! * wv[i * O + o]!;
            nb[o] = nb[o]! + t[i]! * wv[i * O + o]!;
          }
        put(term.node, 1, w, nw);
        put(term.bias!.node, term.bias!.input, bias, nb);
      } else {
        // BN₂(s·x + t) = γ₂ (s·x + t − m₂)/σ₂ + β₂ = (γ₂·s) (x − (m₂ − t)/s)/σ₂ + β₂
        const gamma = ctx.constant(term.node.inputs[1]!)!, mean = ctx.constant(term.node.inputs[3]!)!;
        const g = gamma.toFloat64(), m = mean.toFloat64();
        put(term.node, 1, gamma, g.map((v, c) => v * s[c]!));
        put(term.node, 3, mean, m.map((v, c) => (v - t[c]!) / s[c]!));
      }
    }
    return {
      initializers, rewire, collect,
      replaceUses: [{ from: anchor.outputs[0]!, to: anchor.inputs[0]! }],
      summary: `BatchNormalization '${anchor.name}' folded into ${terminals.map((x) => `${x.node.opType} '${x.node.name}'`).join(", ")}`,
    };
  },
};
