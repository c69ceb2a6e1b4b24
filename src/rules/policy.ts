// Cost and sharing policy, in one module every rule reads (docs/rules.md §4): how far a rewrite
// may raise multiply-accumulates, how much constant folding may grow the file, when a weight
// other nodes share may be folded, which dtypes the float64 algebra covers.
import type { Refusal } from "../algebra/linear-map.js";
import { refuse } from "../algebra/linear-map.js";
import { isFloatType } from "../ir/dtype.js";
import type { Node } from "../ir/graph.js";
import type { RuleContext, RuleOptions } from "../pipeline/context.js";

/** Default bound on how much a composition may raise multiply-accumulates (the 11x11/2 stem: 1.9x). */
export const DEFAULT_MAX_MAC_GROWTH = 2;

/**
 * The largest factor by which a rewrite may raise MACs. Costlier compositions are the authors'
 * deploy form for stems (7x7/2 from three 3x3), so they are done by default within a bound. A
 * chain of 1x1 layers (`pointwise`: a linear bottleneck then the next expansion) is only a matrix
 * product: composing it never pays for more MACs, so by default it must not raise them at all.
 * --no-costlier forbids any growth; --max-mac-growth sets the bound for both kinds.
 */
export function macGrowthLimit(options: RuleOptions, pointwise: boolean): number {
  if (options.noCostlier) return 1;
  return options.maxMacGrowth ?? (pointwise ? 1 : DEFAULT_MAX_MAC_GROWTH);
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
