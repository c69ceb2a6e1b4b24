// The contract between a rewrite rule and the driver (docs/rules.md §1). A rule names the ops it
// roots on and a benefit; `match` looks at the graph around one root and returns either a match
// (where the rewrite goes, what it replaces) or a refusal saying why not, without changing
// anything; `rewrite` turns a match into a Replacement that declares every change (new nodes,
// initializers, rewiring, recorded shapes). Only the Rewriter applies it, and only after the
// driver's filter accepted it: a declined rewrite changes nothing.
import type { Refusal } from "../algebra/linear-map.js";
import type { Node } from "../ir/graph.js";
import type { Tensor } from "../ir/tensor.js";
import type { RuleContext } from "./context.js";

export type { Refusal };
export { refuse, notCandidate, isRefusal } from "../algebra/linear-map.js";

/** Why a node other than the root was left out (what --explain shows). */
export interface Note {
  node: Node;
  reason: string;
}

/** What a match or a refusal may add: findings about the nodes it looked at besides the root. */
export interface Explained {
  notes?: Note[];
}

/** Where a rewrite goes and what it replaces: the filter decides on these before anything changes. */
export interface Match extends Explained {
  /** The node whose position the new nodes take (a region's last node). */
  anchor: Node;
  /** The nodes the rewrite replaces (empty for a rewrite that only rewires or swaps weights). */
  remove: Node[];
}

/** Everything a rewrite changes, declared; applied by the Rewriter (the only code that mutates a graph). */
export interface Replacement {
  /** New nodes, placed where the anchor was (in order). */
  add?: Node[];
  /** New initializers (named with ctx.uniqueName, or under the names of tensors they replace). */
  initializers?: Tensor[];
  /** Inputs of kept nodes pointed at other tensors (e.g. a rewritten private weight). */
  rewire?: { node: Node; input: number; tensor: string }[];
  /** Every reader of `from` reads `to` instead (graph outputs keep their names). */
  replaceUses?: { from: string; to: string }[];
  /** Recorded shapes (value_info) whose size along `axis` changes. */
  resize?: { tensor: string; axis: number; size: number }[];
  /** Tensors the rewrite stopped reading: dropped when nothing reads them any more. */
  collect?: string[];
  summary: string;
  macsBefore?: number;
  macsAfter?: number;
}

export interface Rule<M extends Match = Match> {
  name: string;
  description: string;
  /** Default-domain op types the rule roots on (cheapest check, done by the driver); omitted: every node. */
  rootOps?: readonly string[];
  /** Rules run in decreasing benefit (ties: the order given). */
  benefit: number;
  /**
   * The order roots are tried in: "forward" (topological) or "reverse" (from the graph's end, so a
   * region is tried at its sink before its parts). Default "forward".
   */
  order?: "forward" | "reverse";
  /** Kernel arrays come from a scratch arena recycled before each root (src/algebra/scratch.ts). */
  scratch?: boolean;
  /**
   * Look, never change: a match, or a refusal with its reason. The root is typed read-only; a rule
   * that is not built in has its calls checked by the driver (MatchMutatedGraphError otherwise).
   */
  match(root: Readonly<Node>, ctx: RuleContext): M | (Refusal & Explained);
  /** The changes for an accepted match. */
  rewrite(match: M, ctx: RuleContext): Replacement;
}

/** Decides whether a rewrite may be applied (by RewriteRecord.key); used by bisection and --skip-failing. */
export type RewriteFilter = (key: string) => boolean;

export interface RewriteRecord {
  /** Stable identity of the rewrite across runs on the same input (rule, anchor, replaced nodes). */
  key: string;
  /** The rule that made it. */
  pass: string;
  /** Name of the node that replaced the region (first added node). */
  node: string;
  /** Names and op types of the nodes it replaced. */
  removed: { name: string; op: string }[];
  summary: string;
  macsBefore?: number;
  macsAfter?: number;
}

export function rewriteKey(rule: string, anchor: Node, remove: Node[]): string {
  return `${rule}:${anchor.name || anchor.outputs[0]}:${remove.map((n) => n.name || n.outputs[0]).sort().join(",")}`;
}
