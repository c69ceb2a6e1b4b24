// All graph mutation goes through here (MLIR's PatternRewriter idea): passes describe a
// replacement, the rewriter applies it, keeps the node order topological, garbage-collects what
// the replaced nodes left unused, and records the rewrite for the report.
import type { Graph, Node } from "../ir/graph.js";
import type { Tensor } from "../ir/tensor.js";

export interface RewriteRecord {
  /** Stable identity of the rewrite across runs on the same input (pass, anchor, replaced nodes). */
  key: string;
  pass: string;
  /** Name of the node that replaced the region (first added node). */
  node: string;
  /** Names and op types of the nodes it replaced. */
  removed: { name: string; op: string }[];
  summary: string;
  macsBefore?: number;
  macsAfter?: number;
}

export interface Replacement {
  pass: string;
  /** The node whose position the new nodes take (the region's last node). */
  anchor: Node;
  remove: Node[];
  add: Node[];
  summary: string;
  macsBefore?: number;
  macsAfter?: number;
  /** Tensors the rewrite stopped reading (e.g. replaced initializers): dropped if now unused. */
  collect?: string[];
  /** Initializers that take the place of removed nodes' outputs, under those outputs' names. */
  initializers?: Tensor[];
}

/** Decides whether a rewrite may be applied (used to bisect a verification failure). */
export type RewriteFilter = (key: string) => boolean;

export function rewriteKey(pass: string, anchor: Node, remove: Node[]): string {
  return `${pass}:${anchor.name || anchor.outputs[0]}:${remove.map((n) => n.name || n.outputs[0]).sort().join(",")}`;
}

export class Rewriter {
  readonly records: RewriteRecord[] = [];
  /** Rewrites a filter turned down (by key), so passes can move on. */
  readonly declined = new Set<string>();
  private names = new Set<string>();
  private pending: string[] = [];
  /** Initializers this run created (the model's own ones are never merged or rewritten in place). */
  readonly created = new Set<string>();
  filter: RewriteFilter | undefined;

  constructor(private readonly graph: Graph, private readonly invalidate: () => void) {
    for (const n of graph.nodes) this.names.add(n.name);
    for (const k of graph.initializers.keys()) this.names.add(k);
    for (const n of graph.nodes) for (const o of n.outputs) this.names.add(o);
    for (const i of graph.inputs) this.names.add(i.name ?? "");
  }

  /** A name no node, tensor or initializer uses yet. */
  uniqueName(base: string): string {
    let name = base, i = 1;
    while (this.names.has(name)) name = `${base}_${i++}`;
    this.names.add(name);
    return name;
  }

  addInitializer(base: string, make: (name: string) => Tensor): string {
    const name = this.uniqueName(base);
    const t = make(name);
    this.graph.initializers.set(name, t);
    this.pending.push(name);
    this.created.add(name);
    return name;
  }

  /** Point input `index` of `node` at another tensor (e.g. a rewritten private weight). */
  setInput(node: Node, index: number, tensor: string): void {
    node.inputs[index] = tensor;
    this.invalidate();
  }

  /** Every reader of `from` reads `to` instead (graph outputs keep their names). */
  replaceAllUses(from: string, to: string): void {
    for (const n of this.graph.nodes) n.inputs = n.inputs.map((i) => (i === from ? to : i));
    this.invalidate();
  }

  /** Would the filter accept this rewrite? (For passes that mutate before calling replace.) */
  allows(pass: string, anchor: Node, remove: Node[]): boolean {
    const key = rewriteKey(pass, anchor, remove);
    if (!this.filter || this.filter(key)) return true;
    this.declined.add(key);
    return false;
  }

  /** Was a rewrite anchored at this node declined already (so a pass need not rebuild it)? */
  declinedAnchor(anchor: Node): boolean {
    if (this.declined.size === 0) return false;
    const prefix = `:${anchor.name || anchor.outputs[0]}:`;
    for (const k of this.declined) if (k.includes(prefix)) return true;
    return false;
  }

  /**
   * Apply a replacement. Returns false (and undoes initializers added for it) when the filter
   * declines it; passes then treat the region as left alone.
   */
  replace(r: Replacement): boolean {
    const key = rewriteKey(r.pass, r.anchor, r.remove);
    if (this.filter && !this.filter(key)) {
      for (const name of this.pending) this.graph.initializers.delete(name);
      this.pending = [];
      this.declined.add(key);
      return false;
    }
    this.pending = [];
    for (const t of r.initializers ?? []) {
      this.graph.initializers.set(t.name, t);
      this.created.add(t.name);
    }
    const nodes = this.graph.nodes;
    const at = nodes.indexOf(r.anchor);
    if (at < 0) throw new Error(`rewriter: anchor ${r.anchor.name} is not in the graph`);
    const removing = new Set(r.remove);
    const before = nodes.slice(0, at).filter((n) => !removing.has(n));
    const after = nodes.slice(at + 1).filter((n) => !removing.has(n));
    this.graph.nodes = [...before, ...(removing.has(r.anchor) ? [] : [r.anchor]), ...r.add, ...after];
    const touched = new Set<string>();
    for (const n of r.remove) for (const i of n.inputs) if (i) touched.add(i);
    for (const t of r.collect ?? []) if (t) touched.add(t);
    this.collectGarbage(touched);
    this.records.push({
      key,
      pass: r.pass, node: r.add[0]?.name ?? r.anchor.name, summary: r.summary,
      removed: r.remove.map((n) => ({ name: n.name, op: n.opType })),
      macsBefore: r.macsBefore, macsAfter: r.macsAfter,
    });
    this.invalidate();
    return true;
  }

  /** Drop initializers and nodes that only the removed nodes used (transitively); stale value_info too. */
  private collectGarbage(candidates: Set<string>): void {
    const outputs = new Set(this.graph.outputs.map((o) => o.name ?? ""));
    let changed = true;
    while (changed) {
      changed = false;
      const used = new Set<string>();
      const producerOf = new Map<string, Node>();
      for (const n of this.graph.nodes) {
        for (const i of n.inputs) used.add(i);
        for (const o of n.outputs) if (o) producerOf.set(o, n);
      }
      const drop = new Set<Node>();
      for (const name of [...candidates]) {
        candidates.delete(name);
        if (used.has(name) || outputs.has(name)) continue;
        if (this.graph.initializers.delete(name)) {
          // IR < 4 models list initializers among the inputs too: drop that entry with it.
          this.graph.inputs = this.graph.inputs.filter((i) => i.name !== name);
          changed = true;
        }
        // The producer, once none of its outputs is read (shape plumbing of a removed Reshape,
        // a Constant): default-domain ops have no side effects, so it goes, and its inputs become
        // candidates in turn (next sweep, with the readers recounted).
        const producer = producerOf.get(name);
        if (producer && !drop.has(producer) && producer.isDefaultDomain && !producer.hasSubgraph() &&
            producer.outputs.every((o) => !o || (!used.has(o) && !outputs.has(o)))) {
          drop.add(producer);
          for (const i of producer.inputs) if (i) candidates.add(i);
          changed = true;
        }
      }
      if (drop.size > 0) this.graph.nodes = this.graph.nodes.filter((n) => !drop.has(n));
    }
    const produced = new Set<string>();
    for (const n of this.graph.nodes) for (const o of n.outputs) produced.add(o);
    this.graph.valueInfo = this.graph.valueInfo.filter((v) => produced.has(v.name ?? "") || this.graph.initializers.has(v.name ?? ""));
  }
}
