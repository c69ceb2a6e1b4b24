// Collapse every linear region into one Conv (docs/rules.md §7, one mechanism for all families).
// Rooted on a region's sink (tried from the graph's end, so the largest region containing a tensor
// comes before its parts). Walking up from a tensor, each node is read as a linear op (linear/read.ts)
// and combined with the float64 algebra: affine folds, Add/Sub trees become branch sums, a conv
// or pool after a linear stage composes (border rule), Pads feed the next layer's padding. Where a
// combination is refused, the region is cut there and the refusal noted for --explain; the cut-off
// part is collapsed on its own when the driver reaches it.
import { affineAfter, perChannel } from "../algebra/affine.js";
import { composeLazily } from "../algebra/compose.js";
import { identityMap, isRefusal, macsPerPixel, type LinearMap, type Pads, type Refusal } from "../algebra/linear-map.js";
import { averagePoolMap } from "../algebra/pool.js";
import { negate, sumMaps } from "../algebra/sum.js";
import { DataType } from "../ir/dtype.js";
import { knownProduct, type ShapeMap } from "../ir/shapes.js";
import { Node } from "../ir/graph.js";
import type { Tensor } from "../ir/tensor.js";
import type { RuleContext } from "../pipeline/context.js";
import { notCandidate, refuse, type Match, type Note, type Rule } from "../pipeline/rule.js";
import { denseNodeCount, emitConv, emitDense } from "./linear/emit.js";
import { featureCount, layoutOf, readLinearOp, type Layout, type LinearOp } from "./linear/read.js";
import { LINEAR_OPS, STACK_REDUCE_OPS, SUM_OPS, WEIGHTED_LAYER_OPS } from "./op-traits.js";
import { COST_PROBE_SIZES, kernelGrowthRefusal, largerKernelRefusal, macRefusal, type RegionCost } from "./policy.js";

/**
 * The nodes of a part as a persistent sequence: extending a part shares its sub-parts' sequences
 * instead of copying them, so walking a chain of n nodes costs O(n), not O(n²).
 */
class NodeSeq {
  static readonly empty = new NodeSeq([], 0);
  private constructor(private readonly items: readonly (Node | NodeSeq)[], readonly size: number) {}

  static of(nodes: readonly Node[]): NodeSeq {
    return nodes.length === 0 ? NodeSeq.empty : new NodeSeq(nodes, nodes.length);
  }

  /** The items (sequences or nodes) one after the other. */
  static join(...items: (Node | NodeSeq)[]): NodeSeq {
    const kept = items.filter((i) => !(i instanceof NodeSeq) || i.size > 0);
    const size = kept.reduce((n, i) => n + (i instanceof NodeSeq ? i.size : 1), 0);
    return size === 0 ? NodeSeq.empty : new NodeSeq(kept, size);
  }

  /** The nodes in order (an explicit stack: sequences nest as deep as the graph is long). */
  toArray(): Node[] {
    const out: Node[] = [];
    const stack: { seq: NodeSeq; at: number }[] = [{ seq: this, at: 0 }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.at === top.seq.items.length) {
        stack.pop();
        continue;
      }
      const item = top.seq.items[top.at++]!;
      if (item instanceof NodeSeq) stack.push({ seq: item, at: 0 });
      else out.push(item);
    }
    return out;
  }
}

/** A part of a region: `map` (null = identity) applied to `leaf`, built from `nodes`. */
interface Part {
  leaf: string;
  map: LinearMap | null;
  nodes: NodeSeq;
  /** The axis the map acts on (undefined for a bare leaf). */
  layout?: Layout;
  /**
   * A Pad waiting for the conv/pool that consumes it: its amounts and the per-channel value the
   * border holds (an affine after the Pad maps the value too: DBB's `Sub t → Pad 0 → Add t`).
   * `values` of length 1 broadcast; null means zeros.
   */
  pad?: { pads: Pads; values: Float64Array | null };
  /** For a root sum over several inputs: the terms kept as separate Adds/Subs (partialSum). */
  rest?: Term[];
}

type Term = Part & { coef: number; sign: 1 | -1; tensor: string };

const leaf = (tensor: string): Part => ({ leaf: tensor, map: null, nodes: NodeSeq.empty });

class RegionBuilder {
  /** Reading a node decodes its weights: done once per node per graph version. */
  private readonly ops: Map<Node, LinearOp | Refusal>;
  /**
   * part() of non-root tensors, per composeLayers setting, per graph version: a part depends only
   * on its tensor, so each is computed once however many roots reach it.
   */
  private readonly parts: readonly [Map<string, Part>, Map<string, Part>];
  /** Sums inside a refused root sum whose terms all have different inputs (not roots worth trying), per graph version. */
  readonly hopeless: Set<Node>;
  /** Off: a layer after another layer starts a new region (affine folds and sums only). */
  composeLayers = true;
  /** Why nodes met on the walk were left out of the region. */
  readonly notes: Note[] = [];
  private readonly noted = new Map<Node, Set<string>>();

  constructor(private readonly ctx: RuleContext) {
    this.ops = ctx.memo("collapse-linear-regions:ops", () => new Map<Node, LinearOp | Refusal>());
    // Parts hold kernels from the scratch arena: valid for one candidate only (graph fuzz, seed 4599).
    this.parts = ctx.scratchMemo("collapse-linear-regions:parts", () => [new Map<string, Part>(), new Map<string, Part>()] as const);
    this.hopeless = ctx.memo("collapse-linear-regions:hopeless", () => new Set<Node>());
  }

  read(node: Node): LinearOp | Refusal {
    let op = this.ops.get(node);
    if (!op) this.ops.set(node, (op = readLinearOp(this.ctx, node)));
    return op;
  }

  private note(node: Node, reason: string): void {
    // The walk that finds the parts to compute first meets the same nodes again: note each once.
    const seen = (this.noted.get(node) ?? this.noted.set(node, new Set()).get(node))!;
    if (seen.has(reason)) return;
    seen.add(reason);
    this.notes.push({ node, reason });
  }

  channels(tensor: string, layout: Layout = "nchw"): number | undefined {
    return featureCount(this.ctx, tensor, layout);
  }

  /** Can the walk continue above `tensor`? Only if the region is its sole reader. */
  private internal(tensor: string): boolean {
    return this.ctx.consumers(tensor).length === 1 && !this.ctx.isGraphOutput(tensor);
  }

  private op(tensor: string): LinearOp | undefined {
    const node = this.ctx.producers().get(tensor);
    if (!node) return undefined;
    const op = this.read(node);
    if ("refused" in op) {
      // A node that looks linear but fails a precondition is worth explaining; a Relu is not.
      if (!op.quiet) this.note(node, op.refused);
      return undefined;
    }
    return op;
  }

  /**
   * The part ending at `tensor`. A region can be as long as the graph, so the walk must not recurse
   * once per node: the root call first finds, with an explicit stack, every tensor whose part it
   * will need, and computes them deepest first; each then finds its sub-parts memoized.
   */
  part(tensor: string, root = false): Part {
    const memo = this.parts[this.composeLayers ? 1 : 0];
    if (root) {
      const needed = this.partsBelow(tensor);
      for (let k = needed.length - 1; k >= 0; k--) this.part(needed[k]!);
      return this.partNow(tensor, true);
    }
    let p = memo.get(tensor);
    if (!p) memo.set(tensor, (p = this.partNow(tensor, false)));
    return p;
  }

  /**
   * The non-root tensors partNow(root) reaches through part() calls, parents before children (the
   * same decisions partNow and sum make: sole readers, linear ops, flattened sum trees).
   */
  private partsBelow(root: string): string[] {
    const memo = this.parts[this.composeLayers ? 1 : 0];
    const order: string[] = [];
    const stack: { tensor: string; root: boolean }[] = [{ tensor: root, root: true }];
    while (stack.length > 0) {
      const { tensor, root } = stack.pop()!;
      if (!root) {
        if (memo.has(tensor) || !this.internal(tensor)) continue;
        order.push(tensor);
      }
      const op = this.op(tensor);
      if (!op) continue;
      if (op.kind !== "sum") stack.push({ tensor: op.input, root: false });
      else {
        const terms: { tensor: string; coef: number }[] = [];
        this.terms(op.node, 1, terms, []);
        for (const t of terms) if (this.internal(t.tensor)) stack.push({ tensor: t.tensor, root: false });
      }
    }
    return order;
  }

  private partNow(tensor: string, root: boolean): Part {
    if (!root && !this.internal(tensor)) return leaf(tensor);
    const op = this.op(tensor);
    if (!op) return leaf(tensor);
    switch (op.kind) {
      case "identity": {
        const p = this.part(op.input);
        return { ...p, nodes: NodeSeq.join(p.nodes, op.node) };
      }
      case "affine": {
        let p = this.part(op.input);
        if (p.map && p.layout !== op.layout) {
          // A layout change is a region border: e.g. a [C] constant on a conv's NCHW output scales its columns.
          if (p.layout === "nchw")
            this.note(op.node, `its constant varies along the last axis of a 4-D tensor: not per-channel for the conv before it (for an NCHW tensor only [C,1,1], [1,C,1,1] or scalars are)`);
          p = leaf(op.input);
        }
        const base = p.map ?? this.identity(p.leaf, op.scale.length > 1 ? op.scale.length : undefined, op.node, op.layout);
        if (!base) return leaf(tensor);
        const pad = p.pad && { pads: p.pad.pads, values: affineValues(p.pad.values, op.scale, op.shift) };
        return { leaf: p.leaf, map: affineAfter(base, op), nodes: NodeSeq.join(p.nodes, op.node), pad, layout: op.layout };
      }
      case "pad": {
        const p = this.part(op.input);
        const values = op.values.every((v) => v === 0) ? null : op.values;
        const pad = { pads: op.pads, values };
        if (p.map && p.layout !== "nchw") return { ...leaf(op.input), nodes: NodeSeq.of(op.nodes), pad, layout: "nchw" };
        if (!p.pad) return { ...p, nodes: NodeSeq.join(p.nodes, ...op.nodes), pad, layout: "nchw" };
        // Pad after pad: a zero-amount Pad (exporters emit them before AveragePool) is an identity;
        // two pads with the same border value are one pad of the summed amounts.
        if (op.pads.every((v) => v === 0)) return { ...p, nodes: NodeSeq.join(p.nodes, ...op.nodes) };
        // A crop (negative amounts) and a pad do not add up (crop then pad loses the data the pad
        // replaces); two crops do.
        const crop = (pads: Pads) => pads.some((v) => v < 0);
        if ((crop(op.pads) || crop(p.pad.pads)) && !(op.pads.every((v) => v <= 0) && p.pad.pads.every((v) => v <= 0)))
          return { ...leaf(op.input), nodes: NodeSeq.of(op.nodes), pad };
        if (sameValues(p.pad.values, values))
          return { ...p, nodes: NodeSeq.join(p.nodes, ...op.nodes), pad: { pads: p.pad.pads.map((v, i) => v + op.pads[i]!) as Pads, values } };
        return { ...leaf(op.input), nodes: NodeSeq.of(op.nodes), pad };
      }
      case "conv": case "pool": {
        const layout: Layout = op.kind === "conv" ? op.layout : "nchw";
        let p = this.part(op.input);
        if (p.map && p.layout !== layout) p = leaf(op.input);
        let second: LinearMap | undefined;
        if (op.kind === "conv") second = op.map;
        else {
          const c = p.map?.outChannels ?? this.channels(p.leaf);
          if (c === undefined) return leaf(tensor);
          const params = this.ctx.options.unsafeIgnoreBorderRule ? { ...op.params, countIncludePad: true } : op.params;
          const pool = averagePoolMap(c, params);
          if (isRefusal(pool)) {
            this.note(op.node, pool.refused);
            return leaf(tensor);
          }
          second = pool;
        }
        return { ...this.compose(p, second, op.node, op.input), layout };
      }
      case "sum":
        return this.sum(op.node, root);
    }
  }

  private identity(tensor: string, hint: number | undefined, node: Node, layout: Layout = "nchw"): LinearMap | undefined {
    const c = hint ?? this.channels(tensor, layout);
    if (c === undefined) {
      this.note(node, `channel count of '${tensor}' is unknown (give --shape)`);
      return undefined;
    }
    return identityMap(c);
  }

  /**
   * A pad value and a bias computed from the same stored parameters agree to the storage precision
   * of the model (float16: 2^-11), not to float64's.
   */
  private padValueRtol(node: Node): number {
    const dtype = this.ctx.shapes().get(node.inputs[0]!)?.dtype;
    return dtype === DataType.FLOAT16 ? 2 ** -10 : dtype === DataType.BFLOAT16 ? 2 ** -7 : 1e-6;
  }

  /** `second` (a conv or pool map with its own pads) applied after part `p`. */
  private compose(p: Part, second: LinearMap, node: Node, input: string): Part {
    let layer = second;
    let padValue: Float64Array | undefined;
    if (p.pad) {
      const { pads, values } = p.pad;
      // A crop of the region's input lowers the layer's padding (docs/rules.md §5); a crop between
      // two layers would need the composition to know it: not done.
      if (pads.some((v) => v < 0) && p.map) {
        this.note(node, "a crop (Slice) between two layers is not composed");
        return { leaf: input, map: second, nodes: NodeSeq.of([node]) };
      }
      // A crop then zero padding on the same side is not less padding: the cropped rows would come
      // back as data where the layer reads zeros. A crop folds only on sides the layer does not pad
      // (there it becomes an offset into the layer's window).
      if (pads.some((v, i) => v < 0 && second.pads[i]! > 0)) {
        this.note(node, "a crop (Slice) on a side the layer pads: the cropped rows are not zeros, so the crop cannot lower the padding");
        return { leaf: input, map: second, nodes: NodeSeq.of([node]) };
      }
      const zero = !values || values.every((v) => v === 0);
      if (!zero && second.pads.some((v) => v !== 0)) return { leaf: input, map: second, nodes: NodeSeq.of([node]) };
      layer = { ...second, pads: second.pads.map((v, i) => v + pads[i]!) as Pads };
      if (!zero) padValue = perChannel(values!, second.inChannels);
    }
    if (p.map && !this.composeLayers) return { leaf: input, map: second, nodes: NodeSeq.of([node]) };
    if (!p.map) {
      // Directly on the region's input: a Pad with value 0 merges into the layer's own padding.
      if (p.pad && padValue) return { leaf: input, map: second, nodes: NodeSeq.of([node]) };
      return { leaf: p.leaf, map: layer, nodes: NodeSeq.join(p.nodes, node) };
    }
    // Lazily: the kernel arithmetic runs only if the region passes its cost check and is emitted.
    const composed = composeLazily(p.map, layer, padValue, { ignoreBorderRule: this.ctx.options.unsafeIgnoreBorderRule, padValueRtol: this.padValueRtol(node) });
    if (isRefusal(composed)) {
      this.note(node, composed.refused);
      return { leaf: input, map: second, nodes: NodeSeq.of([node]) };
    }
    return { leaf: p.leaf, map: composed, nodes: NodeSeq.join(p.nodes, node) };
  }

  /**
   * Flatten a sum tree (Add/Sub/Sum and stacked sums, single-reader inner sums) into terms with
   * their coefficients (±1, or 1/n under a ReduceMean over a stack).
   */
  private terms(node: Node, coef: number, out: { tensor: string; coef: number }[], sums: Node[]): void {
    // Depth first in term order, with an explicit stack: a tree of sums can be as deep as the graph.
    type Sum = Extract<LinearOp, { kind: "sum" }>;
    const open = (n: Node, c: number) => {
      const op = this.read(n) as Sum;
      sums.push(n, ...(op.nodes ?? []));
      return { op, coef: c, at: 0 };
    };
    const stack = [open(node, coef)];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.at === top.op.terms.length) {
        stack.pop();
        continue;
      }
      const t = top.op.terms[top.at++]!;
      const c = top.coef * t.sign * (top.op.scale ?? 1);
      const inner = this.internal(t.tensor) ? this.op(t.tensor) : undefined;
      if (inner?.kind === "sum") stack.push(open(inner.node, c));
      else out.push({ tensor: t.tensor, coef: c });
    }
  }

  private sum(node: Node, root: boolean): Part {
    const output = node.outputs[0]!;
    const terms: { tensor: string; coef: number }[] = [];
    const sums: Node[] = [];
    this.terms(node, 1, terms, sums);
    const layout = layoutOf(this.ctx, output);
    if (typeof layout !== "string") return leaf(output);
    const parts = terms.map((t) => {
      const p = this.internal(t.tensor) ? this.part(t.tensor) : leaf(t.tensor);
      const usable = !p.pad && (!p.map || p.layout === layout);
      return { ...(usable ? p : leaf(t.tensor)), coef: t.coef, sign: (t.coef < 0 ? -1 : 1) as 1 | -1, tensor: t.tensor };
    });
    const leaves = [...new Set(parts.map((p) => p.leaf))];
    if (leaves.length > 1) {
      const why = this.differentInputs(parts.map((p) => p.leaf));
      if (!root) {
        this.note(node, why);
        return leaf(output);
      }
      return { ...this.partialSum(node, sums, parts, why, layout), layout };
    }
    const merged = this.merge(parts, node, layout);
    if (!merged) return leaf(output);
    return { leaf: leaves[0]!, map: merged, nodes: NodeSeq.join(...parts.map((p) => p.nodes), ...sums), layout };
  }

  private merge(parts: (Part & { coef: number })[], node: Node, layout: Layout): LinearMap | undefined {
    const known = parts.find((p) => p.map)?.map;
    const maps: LinearMap[] = [];
    for (const p of parts) {
      const m = p.map ?? (known ? identityMap(known.inChannels) : this.identity(p.leaf, undefined, node, layout));
      if (!m) return undefined;
      if (p.coef === 1) maps.push(m);
      else if (p.coef === -1) maps.push(negate(m));
      else maps.push(affineAfter(m, { scale: Float64Array.of(p.coef), shift: Float64Array.of(0) }));
    }
    const merged = sumMaps(maps);
    if (isRefusal(merged)) {
      this.note(node, merged.refused);
      return undefined;
    }
    return merged;
  }

  private differentInputs(leaves: string[]): string {
    const producers = this.ctx.producers();
    const hints = new Set<string>();
    for (const l of new Set(leaves)) {
      const readers = this.ctx.consumers(l).length;
      const producer = producers.get(l);
      if (!producer) continue;
      const op = this.read(producer);
      if ("refused" in op) hints.add(op.quiet ? `${producer.opType} inside a branch` : op.refused);
      else if (readers > 1 || this.ctx.isGraphOutput(l)) hints.add(`'${l}' has another reader (folding would change it)`);
    }
    const unique = atMost([...new Set(leaves)].map((l) => `'${l}'`), " vs ", "inputs");
    return `branches do not share one input: ${unique}${hints.size ? ` — ${atMost([...hints], "; ", "reasons")}` : ""}`;
  }

  /** A root sum over several inputs: merge the largest same-input group, keep the other terms. */
  private partialSum(node: Node, sums: Node[], parts: Term[], why: string, layout: Layout): Part {
    const groups = new Map<string, typeof parts>();
    for (const p of parts) groups.set(p.leaf, [...(groups.get(p.leaf) ?? []), p]);
    const best = [...groups.values()].filter((g) => g.length >= 2).sort((a, b) => b.length - a.length)[0];
    if (!best) {
      this.note(node, why);
      // No two terms share an input, so no sum inside this tree has a same-input group either:
      // trying each inner sum as a root again would only repeat the walk (quadratic in a long comb).
      for (const s of sums) if (s !== node) this.hopeless.add(s);
      return leaf(node.outputs[0]!);
    }
    const merged = this.merge(best, node, layout);
    if (!merged) return leaf(node.outputs[0]!);
    const rest = parts.filter((p) => !best.includes(p));
    // Kept terms are written back as Adds/Subs: a term scaled by a ReduceMean cannot be.
    if (rest.some((p) => Math.abs(p.coef) !== 1)) {
      this.note(node, `${why}; the other terms are scaled (a mean) and cannot be kept as Adds`);
      return leaf(node.outputs[0]!);
    }
    return { leaf: best[0]!.leaf, map: merged, nodes: NodeSeq.join(...best.map((p) => p.nodes), ...sums), rest };
  }
}

/** A list for a message: the first few items and how many there are in all. */
function atMost(items: string[], sep: string, what: string, n = 4): string {
  return items.length <= n ? items.join(sep) : `${items.slice(0, n).join(sep)}${sep}… (${items.length} ${what})`;
}

function sameValues(a: Float64Array | null, b: Float64Array | null): boolean {
  const za = !a || a.every((v) => v === 0), zb = !b || b.every((v) => v === 0);
  if (za || zb) return za && zb;
  const n = Math.max(a!.length, b!.length);
  for (let i = 0; i < n; i++) if (a![a!.length === 1 ? 0 : i] !== b![b!.length === 1 ? 0 : i]) return false;
  return true;
}

/** The border value after an affine: s ⊙ v + t (v = 0 when the pad was a zero pad). */
function affineValues(values: Float64Array | null, scale: Float64Array, shift: Float64Array): Float64Array {
  const n = Math.max(values?.length ?? 1, scale.length, shift.length);
  const at = (a: Float64Array, i: number) => a[a.length === 1 ? 0 : i]!;
  return Float64Array.from({ length: n }, (_, i) => (values ? at(values, i) : 0) * at(scale, i) + at(shift, i));
}

/** Positions a map is applied at per input: H·W of an image, L of a [N, L, F] token tensor. */
function positions(shapes: ShapeMap, tensor: string): number | undefined {
  const dims = shapes.get(tensor)?.dims;
  return dims && knownProduct(dims.length === 4 ? dims.slice(2) : dims.slice(1, -1));
}

type LayerOp = Extract<LinearOp, { kind: "conv" | "pool" }>;

/** The region's layers (convs and pools) as the builder reads them. */
function layers(builder: RegionBuilder, nodes: Node[]): LayerOp[] {
  return nodes.map((n) => builder.read(n)).filter((op): op is LayerOp => !("refused" in op) && (op.kind === "conv" || op.kind === "pool"));
}

/** MACs of the region's convs and of the composite at one set of shapes; undefined where a position count is unknown. */
function costAt(shapes: ShapeMap, at: string, ops: LayerOp[], anchor: Node, map: LinearMap): RegionCost | undefined {
  const out = positions(shapes, anchor.outputs[0]!);
  if (!out) return undefined;
  let macsBefore = 0;
  for (const op of ops) {
    if (op.kind !== "conv") continue;
    const p = positions(shapes, op.node.outputs[0]!);
    if (p === undefined) return undefined;
    macsBefore += macsPerPixel(op.map) * p;
  }
  return { macsBefore, macsAfter: macsPerPixel(map) * out, at };
}

/**
 * The region's costs: at the shapes the rules see when every position count is known there;
 * otherwise at each probe size for the dims the model leaves dynamic (rules/policy.ts).
 */
function regionCosts(ctx: RuleContext, ops: LayerOp[], anchor: Node, map: LinearMap): RegionCost[] {
  const exact = costAt(ctx.shapes(), "the model's shapes", ops, anchor, map);
  if (exact) return [exact];
  return COST_PROBE_SIZES.map((size) => costAt(ctx.costShapes(size), `dynamic dims = ${size}`, ops, anchor, map)).filter((c): c is RegionCost => !!c);
}

/**
 * The composite's natural extent (rules/policy.ts kernelGrowthRefusal): 1 + Σ (k−1)·d·(stride
 * before the layer) per axis, the stride before a layer being the product of the strides between
 * the region's leaf and the layer (branches summed together have equal strides, so any path does).
 */
function naturalExtent(ctx: RuleContext, builder: RegionBuilder, ops: LayerOp[], nodes: Node[]): { kh: number; kw: number } {
  const inRegion = new Set(nodes);
  // Strides before each tensor, memoized: a walk per layer would be quadratic in a long chain.
  const before = new Map<string, [number, number]>();
  const strideBefore = (tensor: string): [number, number] => {
    const path: { t: string; s: readonly number[] }[] = [];
    let base: [number, number] = [1, 1], t = tensor;
    for (let steps = 0; steps <= nodes.length; steps++) {
      const known = before.get(t);
      if (known) {
        base = known;
        break;
      }
      const p = ctx.producers().get(t);
      if (!p || !inRegion.has(p)) break;
      const op = builder.read(p);
      if ("refused" in op) break;
      if (op.kind === "sum") {
        path.push({ t, s: [1, 1] });
        t = op.terms[0]!.tensor;
      } else {
        path.push({ t, s: op.kind === "conv" ? op.map.stride : op.kind === "pool" ? op.params.stride : [1, 1] });
        t = op.input;
      }
    }
    let [sh, sw] = base;
    for (let k = path.length - 1; k >= 0; k--) {
      sh *= path[k]!.s[0]!;
      sw *= path[k]!.s[1]!;
      before.set(path[k]!.t, [sh, sw]);
    }
    return before.get(tensor) ?? base;
  };
  let kh = 1, kw = 1;
  for (const op of ops) {
    const [k, d] = op.kind === "conv" ? [[op.map.kh, op.map.kw], op.map.dilation] : [op.params.kernel, op.params.dilation];
    const [sh, sw] = strideBefore(op.input);
    kh += (k[0]! - 1) * d[0]! * sh;
    kw += (k[1]! - 1) * d[1]! * sw;
  }
  return { kh, kw };
}

function weightDtype(ctx: RuleContext, nodes: Node[], leafTensor: string): number {
  for (const n of nodes) if (WEIGHTED_LAYER_OPS.has(n.opType)) {
    const w = ctx.constant(n.inputs[1]!);
    if (w) return w.dtype;
  }
  return ctx.shapes().get(leafTensor)?.dtype ?? DataType.FLOAT;
}

/**
 * Cheap, selective check before any weight is decoded (onnxruntime's RewriteRule habit): can
 * `anchor` be the last node of a region of two or more nodes at all?
 */
function mayRootRegion(ctx: RuleContext, anchor: Node): boolean {
  const data = anchor.inputs.filter((i) => i && !ctx.constant(i));
  if (SUM_OPS.has(anchor.opType) && data.length >= 2) return true;
  const input = data[0];
  if (STACK_REDUCE_OPS.has(anchor.opType) && input) return ctx.producers().get(input)?.opType === "Concat";
  if (!input || ctx.consumers(input).length !== 1 || ctx.isGraphOutput(input)) return false;
  const producer = ctx.producers().get(input);
  return !!producer && LINEAR_OPS.has(producer.opType) && producer.isDefaultDomain;
}

interface Region extends Match {
  part: Omit<Part, "nodes"> & { map: LinearMap; nodes: Node[] };
  macsBefore: number;
  macsAfter: number;
  dense: boolean;
  rest: Term[];
  /** Why a larger region was not taken. */
  note?: string;
}

/**
 * The region ending at `anchor` (with or without composing layers in sequence), if folding it
 * gains nodes; a refusal when it would raise MACs past the bound.
 */
function regionAt(ctx: RuleContext, builder: RegionBuilder, anchor: Node, composeLayers: boolean): Region | Refusal | undefined {
  builder.composeLayers = composeLayers;
  const root = builder.part(anchor.outputs[0]!, true);
  builder.composeLayers = true;
  if (!root.map || root.pad) return undefined;
  const part = { ...root, map: root.map, nodes: root.nodes.toArray() };
  if (!part.nodes.includes(anchor)) return undefined;
  // A crop folds into a conv only by lowering padding the conv has (or a sum's union has): an ONNX
  // Conv cannot carry negative pads, so a crop the region cannot absorb stays a Slice.
  if (part.map.pads.some((v) => v < 0)) return refuse("a crop (Slice) of the input is more than the padding of the convs it feeds: it stays");
  const rest = part.rest ?? [];
  const dense = part.layout === "features";
  // A reduction stays a reduction unless folding it removes work (docs/rules.md §4): a pooling
  // with no layer to fold into would become a dense depthwise kernel, larger and slower.
  if (!dense && part.nodes.some((n) => n.opType === "AveragePool") && !part.nodes.some((n) => WEIGHTED_LAYER_OPS.has(n.opType)))
    return notCandidate("a pooling with no layer to fold into stays a pooling");
  const emitted = (dense ? denseNodeCount(ctx, part.map, part.leaf) : 1) + rest.length;
  if (part.nodes.length <= emitted) return undefined; // nothing gained: as many nodes as before
  // Per-feature affines alone (a LayerNorm's γ and β) are cheaper as they are than as a dense
  // F×F matrix: a features region must contain a layer to fold into.
  if (dense && !part.nodes.some((n) => { const op = builder.read(n); return !("refused" in op) && op.kind === "conv"; })) return undefined;
  // A depthwise conv composed into a dense one (dw3x3 → pw1x1) multiplies the cost by the kernel
  // area and is left as two layers (docs/rules.md §4); so is a kernel that grows past its layers,
  // and, unless it saves a quarter of the MACs, one larger than its largest layer's.
  const pointwise = part.map.kh === 1 && part.map.kw === 1;
  const ops = layers(builder, part.nodes);
  const costs = regionCosts(ctx, ops, anchor, part.map);
  const largest = Math.max(0, ...ops.map((op) => (op.kind === "conv" ? op.map.kh * op.map.kw : 0)));
  const refused = macRefusal(ctx.options, costs, pointwise) ?? kernelGrowthRefusal(part.map, naturalExtent(ctx, builder, ops, part.nodes))
    ?? (dense ? undefined : largerKernelRefusal(ctx.options, costs, largest, part.map.kh * part.map.kw));
  if (refused) return refused;
  const { macsBefore, macsAfter } = costs[0] ?? { macsBefore: 0, macsAfter: 0 };
  return { anchor, remove: part.nodes, part: part as Region["part"], macsBefore, macsAfter, dense, rest };
}

export const collapseLinearRegions: Rule<Region> = {
  name: "collapse-linear-regions",
  description: "fold BN/affine, merge parallel branches, compose sequential convs/pools into one Conv per linear region",
  rootOps: [...LINEAR_OPS],
  benefit: 30,
  order: "reverse",
  // Kernel arrays of a region come from a scratch arena, recycled before each candidate region.
  scratch: true,
  match(anchor, ctx) {
    if (!anchor.outputs[0] || !mayRootRegion(ctx, anchor)) return notCandidate("cannot end a region of two or more nodes");
    const builder = new RegionBuilder(ctx);
    if (builder.hopeless.has(anchor)) return notCandidate("inside a sum whose terms all have different inputs");
    const read = builder.read(anchor);
    if ("refused" in read) return read;
    // The largest region first; if composing its layers would cost too much, the region without
    // sequential compositions (its BN/affine folds and branch sums still pay off).
    let region = regionAt(ctx, builder, anchor, true);
    if (region && "refused" in region) {
      const reason = region.refused;
      region = regionAt(ctx, builder, anchor, false);
      if (!region || "refused" in region) return { ...refuse(reason), notes: builder.notes };
      region.note = `layers not composed: ${reason}`;
    }
    if (!region) return { ...notCandidate("no region to fold"), notes: builder.notes };
    return { ...region, notes: builder.notes };
  },
  rewrite(region, ctx) {
    const { anchor, part, macsBefore, macsAfter, dense, rest } = region;
    const output = anchor.outputs[0]!;
    const base = (anchor.name || output).replace(/\/[^/]*$/, "") || output;
    const dtype = weightDtype(ctx, part.nodes, part.leaf);
    const add: Node[] = [];
    const initializers: Tensor[] = [];
    const convOut = rest.length ? ctx.uniqueName(`${output}_reparam`) : output;
    if (dense) add.push(...emitDense(ctx, part.map, part.leaf, convOut, `${base}/reparam_fc`, dtype, initializers));
    else add.push(emitConv(ctx, part.map, part.leaf, convOut, `${base}/reparam_conv`, dtype, initializers));
    let acc = convOut;
    rest.forEach((term, i) => {
      const out = i === rest.length - 1 ? output : ctx.uniqueName(`${output}_partial`);
      add.push(new Node(ctx.uniqueName(`${base}/reparam_${term.sign > 0 ? "add" : "sub"}`), term.sign > 0 ? "Add" : "Sub", [acc, term.tensor], [out]));
      acc = out;
    });
    const histogram = new Map<string, number>();
    for (const n of part.nodes) histogram.set(n.opType, (histogram.get(n.opType) ?? 0) + 1);
    const what = [...histogram].map(([op, n]) => `${n} ${op}`).join(" + ");
    return {
      add, initializers, macsBefore, macsAfter,
      summary: `${what} → ${dense ? `${add.map((n) => n.opType).join("+")} ${part.map.inChannels}→${part.map.outChannels}` : `Conv ${part.map.kh}x${part.map.kw}/${part.map.stride[0]}${part.map.groups > 1 ? ` g${part.map.groups}` : ""}`}${rest.length ? ` + ${rest.length} kept term(s)` : ""}${region.note ? ` (${region.note})` : ""}`,
    };
  },
};
