// Cost and sharing policy, in one module every rule reads (docs/rules.md §4): how far a rewrite
// may raise multiply-accumulates, how much constant folding may grow the file, when a weight
// other nodes share may be folded, which dtypes the float64 algebra covers.
import type { Refusal } from "../algebra/linear-map.js";
import { refuse } from "../algebra/linear-map.js";
import { isFloatType } from "../ir/dtype.js";
import type { Node } from "../ir/graph.js";
import type { RuleContext, RuleOptions } from "../pipeline/context.js";

/**
 * Default bound on how much a composition may raise multiply-accumulates: none. Latency is the
 * cost, and on onnxruntime's CPU kernels it follows MACs: the 11x11/2 stem the authors compose
 * from three 3x3 convs has 1.9x their MACs and runs 2.4x slower (npm run bench:fixtures).
 * --max-mac-growth 2 gives the authors' forms.
 */
export const DEFAULT_MAX_MAC_GROWTH = 1;

/**
 * The largest factor by which a rewrite may raise MACs (docs/rules.md §4). By default none: a
 * composition that raises MACs makes the model slower and is refused with its reason (the layers
 * still fold their BNs, affines and branch sums). --max-mac-growth F allows growth up to F. A chain
 * of 1x1 layers (`pointwise`: a linear bottleneck then the next expansion) is only a matrix
 * product. --no-costlier is the default bound, kept as a flag.
 */
export function macGrowthLimit(options: RuleOptions, pointwise: boolean): number {
  if (options.noCostlier) return 1;
  return options.maxMacGrowth ?? (pointwise ? 1 : DEFAULT_MAX_MAC_GROWTH);
}

/**
 * Sizes at which a dim the model leaves dynamic is taken when a cost bound is checked: a small
 * and a large image. MACs are polynomials in H and W, so their ratio at these sizes bounds the
 * growth per output position (at tiny sizes padded borders weigh more, at large ones it converges).
 */
export const COST_PROBE_SIZES = [64, 1024] as const;

/** What a composition costs and what it replaces, at one set of shapes. */
export interface RegionCost {
  macsBefore: number;
  macsAfter: number;
  /** The shapes these were measured at: "the model's shapes", or a probe size for dynamic dims. */
  at: string;
}

/**
 * A composition must not raise multiply-accumulates by more than the limit, at the model's shapes
 * or — where the model leaves H and W dynamic — per output position (at every COST_PROBE_SIZES).
 */
export function macRefusal(options: RuleOptions, costs: RegionCost[], pointwise: boolean): Refusal | undefined {
  const limit = macGrowthLimit(options, pointwise);
  for (const c of costs)
    if (c.macsBefore > 0 && c.macsAfter > limit * c.macsBefore)
      return refuse(`composition would raise MACs ${c.macsBefore} → ${c.macsAfter} (${(c.macsAfter / c.macsBefore).toFixed(2)}x at ${c.at}: slower on CPU runtimes; ${macLimitSource(options, limit)})`);
  return undefined;
}

/**
 * The kernel itself is bounded by its natural extent: composing layers in sequence adds their
 * extents (k₁ + (k₂−1)·s₁), summing branches takes the largest, so along each axis the composite
 * needs at most 1 + Σ (kᵢ−1)·dᵢ·(stride before layer i) taps. A larger composite comes from
 * branches whose pads put their windows far apart (two 1x1 convs with pads [p,0,0,p] and
 * [0,p,p,0] sum to a (p+1)² kernel): exact, but a kernel that grows with the pads, whatever the
 * MAC count says, and that verification alone may need gigabytes for. Such a region is refused.
 */
export function kernelGrowthRefusal(composite: { kh: number; kw: number }, natural: { kh: number; kw: number }): Refusal | undefined {
  if (composite.kh <= natural.kh && composite.kw <= natural.kw) return undefined;
  return refuse(`composition would need a ${composite.kh}x${composite.kw} kernel where its layers span ${natural.kh}x${natural.kw} (branches whose pads set their windows apart)`);
}

/**
 * A composition that grows the kernel past the largest one it replaces (three 3x3 → one 7x7) runs
 * slower per MAC on onnxruntime's CPU kernels than the small convs did: the 7x7 stem with 0.89x
 * the MACs measured 1.1x slower, the 7x7/2 one with 0.31x the MACs 0.56x (npm run bench:fixtures).
 * By default such a composition must save at least this share of the MACs; --max-mac-growth
 * (the user asking for the authors' composed forms) lifts the rule.
 */
export const KERNEL_GROWTH_MIN_SAVING = 0.25;

/** Why a composition whose kernel outgrows its layers' is refused as slower, or undefined. */
export function largerKernelRefusal(options: RuleOptions, costs: RegionCost[], largestArea: number, composedArea: number): Refusal | undefined {
  if (options.maxMacGrowth !== undefined || composedArea <= largestArea) return undefined;
  for (const c of costs)
    if (c.macsBefore > 0 && c.macsAfter > (1 - KERNEL_GROWTH_MIN_SAVING) * c.macsBefore)
      return refuse(`composition would grow the kernel to ${composedArea} taps (from ${largestArea}) while saving only ${((1 - c.macsAfter / c.macsBefore) * 100).toFixed(0)}% of the MACs at ${c.at}: a larger kernel is slower per MAC on CPU runtimes (--max-mac-growth allows it)`);
  return undefined;
}

/** How --explain names the bound that refused a rewrite. */
export function macLimitSource(options: RuleOptions, limit: number): string {
  return options.noCostlier ? "--no-costlier" : `limit ${limit}x, --max-mac-growth`;
}

/** Constant folding must not turn a small graph into a big file (Expand of a scalar to an image). */
export function foldGrowsTooMuch(inputElements: number, outputElements: number): boolean {
  return outputElements > Math.max(4096, 2 * inputElements);
}

/** The dtypes the float64 algebra and its proofs cover (integer arithmetic truncates and wraps). */
export function isFoldableFloat(dtype: number | undefined): boolean {
  return dtype !== undefined && isFloatType(dtype);
}

/**
 * How a rule treats a parameter other nodes also read:
 * - "fold": a linear fold writes new weights for the node. A parameter read elsewhere would need a
 *   private copy: refused unless --duplicate-shared — except when every other reader is the same
 *   layer (recursion, SReT), which may fold at each use (dedupe-initializers merges the identical
 *   results; the driver redoes the run with `strictSharing` if the model grows anyway). BN
 *   statistics are never treated as a shared layer. Scalars are never "shared weights".
 * - "fc": as "fold" without the same-layer allowance (the FC rewrite rebuilds a whole branch).
 * - "prune": pruning changes the tensor's shape for every reader: any other reader refuses.
 */
export type SharingMode = "fold" | "fc" | "prune";

/** The first of `names` that `node` may not fold because others read it, and who they are; undefined when none. */
export function sharedParameter(ctx: RuleContext, node: Node, names: readonly string[], mode: SharingMode): { name: string; others: Node[] } | undefined {
  if (mode !== "prune" && ctx.options.duplicateShared) return undefined;
  for (const name of names) {
    if (!name) continue;
    const t = ctx.constant(name);
    if (mode !== "prune" && !(t && t.size > 1)) continue;
    const others = ctx.otherUsers(name, node);
    if (others.length === 0) continue;
    if (mode === "fold" && !ctx.options.strictSharing && node.opType !== "BatchNormalization" && others.every((o) => sameLayer(ctx, o, node))) {
      ctx.readSharedWeights = true; // the driver checks the model did not grow because of it
      continue;
    }
    return { name, others };
  }
  return undefined;
}

/** The "fold" policy as a refusal (the linear readers' form). */
export function sharedFoldRefusal(ctx: RuleContext, node: Node, names: readonly string[]): Refusal | undefined {
  const shared = sharedParameter(ctx, node, names, "fold");
  return shared && refuse(`parameter '${shared.name}' is shared with ${shared.others[0]!.name || "another node"}: folding would duplicate it (use --duplicate-shared)`);
}

/** The same layer applied to another input: same op, attributes and constant operands. */
function sameLayer(ctx: RuleContext, a: Node, b: Node): boolean {
  if (a.opType !== b.opType || a.domain !== b.domain || a.inputs.length !== b.inputs.length) return false;
  if (JSON.stringify(a.attributes) !== JSON.stringify(b.attributes)) return false;
  return a.inputs.every((name, i) => (ctx.constant(name) || ctx.constant(b.inputs[i]!) ? name === b.inputs[i] : true));
}
