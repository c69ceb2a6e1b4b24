// The only code that changes a graph (MLIR's PatternRewriter idea, docs/rules.md §1): it applies
// a Replacement a rule declared, keeps the node order topological, garbage-collects what the
// replaced nodes left unused, records the rewrite for the report, and tells its listeners what
// changed (the rule context keeps its derived views up to date from that).
import { attributeGraphs, namesDefinedIn, type Graph, type Node } from "../ir/graph.js";
import { onnx } from "../ir/proto.js";
import type { Change, RewriterView } from "./context.js";
import { rewriteKey, type Match, type Replacement, type RewriteRecord } from "./rule.js";

export type { Change };

export class Rewriter implements RewriterView {
  readonly records: RewriteRecord[] = [];
  /** Initializers this run created (the model's own ones are never merged or rewritten in place). */
  readonly created = new Set<string>();
  private names = new Set<string>();
  private listeners: ((change: Change) => void)[] = [];

  constructor(private readonly graph: Graph) {
    for (const n of graph.nodes) this.names.add(n.name);
    for (const k of graph.initializers.keys()) this.names.add(k);
    for (const n of graph.nodes) for (const o of n.outputs) this.names.add(o);
    for (const i of graph.inputs) this.names.add(i.name ?? "");
    // A new outer tensor must not take a name a subgraph defines (it would shadow or be shadowed).
    for (const n of graph.nodes) if (n.hasSubgraph()) for (const a of n.attributes) for (const g of attributeGraphs(a)) namesDefinedIn(g, this.names);
  }

  listen(listener: (change: Change) => void): void {
    this.listeners.push(listener);
  }

  /** A name no node, tensor or initializer uses yet. */
  uniqueName(base: string): string {
    let name = base, i = 1;
    while (this.names.has(name)) name = `${base}_${i++}`;
    this.names.add(name);
    return name;
  }

  /** Apply a rewrite the filter accepted: `match` says where and what it replaces, `r` the rest. */
  apply(rule: string, match: Match, r: Replacement): RewriteRecord {
    const graph = this.graph;
    const { anchor, remove } = match;
    const add = r.add ?? [];
    const at = graph.nodes.indexOf(anchor);
    if (at < 0) throw new Error(`rewriter: anchor ${anchor.name} is not in the graph`);
    const change: Change = { removed: [...remove], added: add, rewired: [], tensors: new Set() };
    for (const t of r.initializers ?? []) {
      graph.initializers.set(t.name, t);
      this.created.add(t.name);
      change.tensors.add(t.name);
    }
    for (const { node, input, tensor } of r.rewire ?? []) {
      node.inputs[input] = tensor;
      change.rewired.push(node);
    }
    // Readers inside subgraphs (an If branch reading `from` from this graph) are renamed too; a
    // rule asking for a rename a body would capture (Graph.renameCapturedBy) is a bug in the rule.
    for (const { from, to } of r.replaceUses ?? [])
      for (const n of graph.nodes) {
        const direct = n.inputs.includes(from), inBody = n.subgraphReads().includes(from);
        if (direct) n.inputs = n.inputs.map((i) => (i === from ? to : i));
        if (inBody && !n.renameSubgraphReads(from, to)) throw new Error(`rewriter: ${rule} renames '${from}' to '${to}', which a subgraph of '${n.name}' defines`);
        if (direct || inBody) change.rewired.push(n);
      }
    for (const { tensor, axis, size } of r.resize ?? [])
      for (const v of graph.valueInfo) {
        const dims = v.type?.tensorType?.shape?.dim;
        if (v.name === tensor && dims?.[axis]) {
          dims[axis] = onnx.TensorShapeProto.Dimension.create({ dimValue: size });
          change.tensors.add(tensor);
        }
      }
    const removing = new Set(remove);
    const before = graph.nodes.slice(0, at).filter((n) => !removing.has(n));
    const after = graph.nodes.slice(at + 1).filter((n) => !removing.has(n));
    graph.nodes = [...before, ...(removing.has(anchor) ? [] : [anchor]), ...add, ...after];
    for (const n of [...remove, ...add]) for (const o of n.outputs) if (o) change.tensors.add(o);
    const touched = new Set<string>();
    for (const n of remove) for (const i of n.reads()) touched.add(i);
    for (const t of r.collect ?? []) if (t) touched.add(t);
    this.collectGarbage(touched, change);
    const record: RewriteRecord = {
      key: rewriteKey(rule, anchor, remove),
      // Unnamed nodes are shown as opType(first output), as refusals show them.
      pass: rule, node: shownName(add[0] ?? anchor), summary: r.summary,
      removed: remove.map((n) => ({ name: shownName(n), op: n.opType })),
      macsBefore: r.macsBefore, macsAfter: r.macsAfter,
    };
    this.records.push(record);
    for (const listener of this.listeners) listener(change);
    return record;
  }

  /**
   * Drop initializers and nodes that only the removed nodes used (transitively); stale value_info
   * too. A worklist over use counts (reads from inside subgraphs count): linear in the graph,
   * however long the dead chain.
   */
  private collectGarbage(candidates: Set<string>, change: Change): void {
    const graph = this.graph;
    const outputs = new Set(graph.outputs.map((o) => o.name ?? ""));
    const uses = new Map<string, number>();
    const producerOf = new Map<string, Node>();
    for (const n of graph.nodes) {
      for (const i of n.reads()) uses.set(i, (uses.get(i) ?? 0) + 1);
      for (const o of n.outputs) if (o) producerOf.set(o, n);
    }
    const read = (t: string) => (uses.get(t) ?? 0) > 0 || outputs.has(t);
    const work = [...candidates];
    const drop = new Set<Node>();
    const droppedInits = new Set<string>();
    while (work.length > 0) {
      const name = work.pop()!;
      if (!name || read(name)) continue;
      if (graph.initializers.delete(name)) {
        droppedInits.add(name);
        change.tensors.add(name);
      }
      // The producer, once none of its outputs is read (shape plumbing of a removed Reshape,
      // a Constant): default-domain ops have no side effects, so it goes, and its inputs become
      // candidates in turn.
      const producer = producerOf.get(name);
      if (producer && !drop.has(producer) && producer.isDefaultDomain && !producer.hasSubgraph() && producer.outputs.every((o) => !o || !read(o))) {
        drop.add(producer);
        for (const i of producer.reads()) {
          uses.set(i, uses.get(i)! - 1);
          work.push(i);
        }
      }
    }
    // IR < 4 models list initializers among the inputs too: drop those entries with them.
    if (droppedInits.size > 0) graph.inputs = graph.inputs.filter((i) => !droppedInits.has(i.name ?? ""));
    if (drop.size > 0) {
      graph.nodes = graph.nodes.filter((n) => !drop.has(n));
      for (const n of drop) {
        change.removed.push(n);
        for (const o of n.outputs) if (o) change.tensors.add(o);
      }
    }
    const produced = new Set<string>();
    for (const n of graph.nodes) for (const o of n.outputs) produced.add(o);
    graph.valueInfo = graph.valueInfo.filter((v) => produced.has(v.name ?? "") || graph.initializers.has(v.name ?? ""));
  }
}

function shownName(n: Node): string {
  return n.name || `${n.opType}(${n.outputs[0] ?? ""})`;
}
