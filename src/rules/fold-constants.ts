// The prepare stage's constant folding (as onnxsim does, inside the tool; docs/rules.md §6): every
// node whose inputs are all constants is evaluated in float64 (src/eval) and replaced by an
// initializer — BN parameter arithmetic, kernels generated in the graph (OREPA: Einsum, Mul, Add,
// Reshape, a Conv on weights), shape plumbing of tensors whose shape is static in the model,
// constant attention heads. A node the evaluator cannot handle stays as it is (and --explain names
// the op and why).
//
// Rooted on the first foldable node, the match is the whole constant region from there to the
// graph's end (values propagate forward in one topological sweep), anchored at its last node:
// one rewrite folds every constant subgraph there is.
import {
  EVALUATED_OPS, evaluateNode, recycle, tensorFromValue, tensorUnsupported, valueFromTensor, withRecycling, type Value,
} from "../eval/index.js";
import { DataType } from "../ir/dtype.js";
import type { Node } from "../ir/graph.js";
import type { ShapeMap } from "../ir/shapes.js";
import type { Tensor } from "../ir/tensor.js";
import type { RuleContext } from "../pipeline/context.js";
import { isRefusal, notCandidate, refuse, type Match, type Note, type Refusal, type Rule } from "../pipeline/rule.js";
import { foldGrowsTooMuch } from "./policy.js";

interface ConstantRegion extends Match {
  /** Values of the removed nodes' outputs. */
  produced: Map<string, Value>;
  /** Outputs every reader of which was passed with some left in the graph: already stored as tensors. */
  written: Map<string, Tensor>;
}

type Evaluated = { outputs: Value[]; inputs: (Value | undefined)[] } | Refusal;

/** Cheap checks first: can `node` be folded at all (its op, domain, outputs)? */
function foldable(ctx: RuleContext, node: Node): boolean {
  if (node.opType === "Constant" || !node.isDefaultDomain || node.hasSubgraph() || !EVALUATED_OPS.has(node.opType)) return false;
  return !node.outputs.some((o) => o && ctx.isGraphOutput(o));
}

/** Evaluate `node` if its inputs are known; a quiet refusal when they are not. */
function evaluate(
  ctx: RuleContext, node: Node, valueOf: (name: string) => Value | undefined, declared: () => ShapeMap, lastRead: (node: Node, name: string) => boolean,
): Evaluated {
  let inputs: (Value | undefined)[] = [];
  if ((node.opType === "Shape" || node.opType === "Size") && !valueOf(node.inputs[0]!)) {
    const dims = declared().get(node.inputs[0]!)?.dims;
    if (!dims || dims.some((d) => d === undefined)) return notCandidate("shape not static in the model");
    // Evaluate on a placeholder of the right shape (only its dims are read).
    inputs = [{ dtype: DataType.FLOAT, dims: dims as number[], data: new Float64Array(0) }];
  } else {
    for (const name of node.inputs) {
      if (!name) {
        inputs.push(undefined);
        continue;
      }
      const v = valueOf(name);
      if (!v) return notCandidate("an input is not constant");
      inputs.push(v);
    }
    if (inputs.length === 0) return notCandidate("no inputs");
  }
  const overwritable = new Set<Value>();
  node.inputs.forEach((name, i) => name && inputs[i] && lastRead(node, name) && overwritable.add(inputs[i]));
  const result = evaluateNode(node, inputs, ctx.opset(), overwritable);
  if (isRefusal(result)) return refuse(`constant subgraph not evaluated: ${result.refused}`);
  return { outputs: result, inputs };
}

/** Names the graph's remaining nodes read that the folded nodes produce: what becomes initializers. */
function stillRead(ctx: RuleContext, gone: Set<Node>, produced: ReadonlyMap<string, unknown>): Set<string> {
  const read = new Set<string>();
  for (const n of ctx.graph.nodes) if (!gone.has(n)) for (const i of n.reads()) if (produced.has(i)) read.add(i);
  return read;
}

/**
 * The growth guard (policy.foldGrowsTooMuch) judges what would be written: a folded value the rest
 * of the graph reads, against the constant values it was computed from. Intermediates that only
 * feed other folded nodes are never written (OREPA's `oi,hw->oihw` grows 9x on its way into a
 * kernel sum). A node whose written value grows too much stays, with its reason, and its own
 * inputs are judged in turn.
 */
function keepWhatGrows(ctx: RuleContext, removed: Node[], sizes: Map<string, number>, sources: Map<string, number>, notes: Note[]): Node[] {
  const gone = new Set(removed);
  const producer = new Map<string, Node>();
  for (const n of removed) for (const o of n.outputs) if (o) producer.set(o, n);
  for (;;) {
    const restored: Node[] = [];
    for (const name of stillRead(ctx, gone, sizes)) {
      const n = producer.get(name)!;
      const written = sizes.get(name)!, from = sources.get(name)!;
      if (!gone.has(n) || !foldGrowsTooMuch(from, written)) continue;
      notes.push({ node: n, reason: `folding would write ${written} values computed from ${from} constant values: the model would grow` });
      restored.push(n);
    }
    if (restored.length === 0) return removed.filter((n) => gone.has(n));
    for (const n of restored) {
      gone.delete(n);
      for (const o of n.outputs) sizes.delete(o);
    }
  }
}

/** The region's live values by name, and how many of them share each buffer. */
class LiveValues extends Map<string, Value> {
  private readonly users = new Map<ArrayBufferLike, number>();

  override set(name: string, v: Value): this {
    this.drop(name);
    this.users.set(v.data.buffer, (this.users.get(v.data.buffer) ?? 0) + 1);
    return super.set(name, v);
  }

  /** Whether another live value holds the buffer of `name`'s (Identity, Reshape could share one). */
  shared(name: string): boolean {
    const v = this.get(name);
    return !!v && this.users.get(v.data.buffer)! > 1;
  }

  /** Forget `name`'s value; its buffer is reused (value.ts recycle) when no other live value holds it. */
  drop(name: string): void {
    const v = this.get(name);
    if (!v) return;
    super.delete(name);
    const left = this.users.get(v.data.buffer)! - 1;
    if (left > 0) this.users.set(v.data.buffer, left);
    else {
      this.users.delete(v.data.buffer);
      recycle(v.data);
    }
  }
}

/**
 * The constant region from `root` to the graph's end, evaluated in one topological sweep. `hold`:
 * keep what a node that may be restored would need written (see below); without it, a value is
 * dropped once its last reader is folded, and the rare region where that was too early (a
 * restored node reads a dropped value) is evaluated again with it.
 */
function matchRegion(ctx: RuleContext, root: Node, hold: boolean): ConstantRegion | Refusal {
  const values = new LiveValues();
  const valueOf = (name: string): Value | undefined => {
    const v = values.get(name);
    if (v) return v;
    const t = ctx.constant(name);
    if (!t || tensorUnsupported(t)) return undefined;
    const decoded = valueFromTensor(t);
    values.set(name, decoded);
    return decoded;
  };
  const declared = () => ctx.declaredShapes();
  // The root first (most candidate roots are refused here, before anything below is built); it
  // overwrites none of its inputs.
  const first = evaluate(ctx, root, valueOf, declared, () => false);
  if ("refused" in first) return first;
  const nodes = ctx.graph.nodes;
  const removed: Node[] = [];
  const produced = new Map<string, Value>();
  /** Element count of every folded output (kept when its value is dropped). */
  const sizes = new Map<string, number>();
  const notes: Note[] = [];
  // How many constant values each folded value was computed from (shared ones counted per use).
  const sources = new Map<string, number>();
  // Memory: a value is dropped (the decoded float64 copy of an initializer, an intermediate
  // kernel) as soon as every node that reads it is folded and settled, and its buffer is reused
  // by the next evaluations (value.ts withRecycling). keepWhatGrows may restore a folded node whose
  // written output would grow the model, and a restored node's inputs are then written. With
  // `hold`, a node whose output may grow keeps its inputs until it is settled — every reader of its
  // outputs folded and settled in turn (OREPA: `oi,hw->oihw` grows 9x, and so does the
  // `oihw,o->oihw` after it, until an Add with the origin kernel, which does not grow); a settled
  // node is never restored (its outputs are read by folded, never-restored nodes only). Without
  // `hold` every folded node is settled at once: a block's intermediates are not all alive at once.
  // `holders`: reads of a tensor by nodes that are not yet folded and settled (a subgraph's read
  // counts once and is never released: nodes with subgraphs are not folded).
  const holders = new Map<string, number>();
  for (const n of nodes) for (const name of [...n.inputs, ...n.subgraphReads()]) if (name) holders.set(name, (holders.get(name) ?? 0) + 1);
  const producer = new Map<string, Node>();
  const settled = (node: Node) => node.outputs.every((o) => !o || holders.get(o) === undefined || holders.get(o) === 0);
  const settle = (node: Node): void => {
    for (const name of node.inputs) {
      if (!name) continue;
      const left = holders.get(name)! - 1;
      holders.set(name, left);
      if (left !== 0) continue;
      values.drop(name);
      produced.delete(name);
      const p = producer.get(name);
      if (p && growing.has(p) && settled(p)) settle(p);
    }
  };
  const growing = new Set<Node>();
  const keep = (node: Node, outputs: Value[], inputs: (Value | undefined)[]) => {
    const shapeOnly = node.opType === "Shape" || node.opType === "Size";
    let from = 0;
    node.inputs.forEach((name, i) => (from += sources.get(name) ?? inputs[i]?.data.length ?? 0));
    node.outputs.forEach((o, i) => {
      if (o) {
        values.set(o, outputs[i]!);
        produced.set(o, outputs[i]!);
        sources.set(o, shapeOnly ? outputs[i]!.data.length : from);
        sizes.set(o, outputs[i]!.data.length);
        producer.set(o, node);
      }
    });
    removed.push(node);
    const mayGrow = node.outputs.some((o) => o && foldGrowsTooMuch(sources.get(o)!, sizes.get(o)!));
    if (mayGrow && hold) growing.add(node);
    if (!growing.has(node) || settled(node)) settle(node);
  };
  /** Whether every other reader of `name` is folded (and settled). */
  const lastReader = (node: Node, name: string): boolean => {
    let reads = 0;
    for (const i of node.inputs) if (i === name) reads++;
    return holders.get(name) === reads;
  };
  // An input this node reads for the last time, whose data no other live value shares, may be
  // overwritten by its output (evaluateNode: Add/Sub/Mul/Div/Einsum on floats). Not with `hold`.
  const lastRead = (node: Node, name: string): boolean => {
    if (hold) return false;
    return values.has(name) && lastReader(node, name) && !values.shared(name);
  };
  // A folded value whose readers have all been passed, some of them left in the graph, is written
  // as it is: stored as its tensor at once (float32, half the float64 value, whose buffer is reused)
  // instead of held as float64 to the end. `unpassed`: reads by nodes not yet passed.
  const written = new Map<string, Tensor>();
  const unpassed = new Map(holders); // nothing is folded yet: every read still counts
  const pass = (node: Node) => {
    for (const name of [...node.inputs, ...node.subgraphReads()]) {
      if (!name) continue;
      const left = unpassed.get(name)! - 1;
      unpassed.set(name, left);
      const v = left === 0 ? produced.get(name) : undefined;
      if (!v) continue;
      written.set(name, tensorFromValue(name, v));
      produced.delete(name);
      values.drop(name);
    }
  };
  // The rest of the region: every later node whose inputs are now known, in graph order — except
  // that a node is evaluated early, right after the value it was waiting for, when it is the last
  // reader of a value (OREPA: each branch's Add as soon as both branches exist, so a block's five
  // branch kernels are not all alive at once). Early or not, a node sees the same inputs, so the
  // same result; folded nodes and notes are listed in graph order.
  const at = new Map<Node, number>();
  nodes.forEach((n, i) => at.set(n, i));
  const done = new Set<Node>([root]);
  let position = at.get(root)!;
  const ready = (node: Node) => node.inputs.every((name) => !name || values.has(name) || ctx.constant(name) !== undefined);
  const freesAnInput = (node: Node) => node.inputs.some((name) => name && values.has(name) && lastReader(node, name));
  const foldEarly = (node: Node) => {
    const stack = node.outputs.flatMap((o) => (o ? ctx.consumers(o) : [])).reverse();
    while (stack.length > 0) {
      const next = stack.pop()!;
      if (done.has(next) || at.get(next)! <= position || !foldable(ctx, next) || !ready(next) || !freesAnInput(next)) continue;
      done.add(next);
      const r = evaluate(ctx, next, valueOf, declared, lastRead);
      if ("refused" in r) {
        if (!r.quiet) notes.push({ node: next, reason: r.refused });
      } else {
        keep(next, r.outputs, r.inputs);
        for (const o of next.outputs) if (o) stack.push(...[...ctx.consumers(o)].reverse());
      }
      pass(next);
    }
  };
  keep(root, first.outputs, first.inputs);
  pass(root);
  foldEarly(root);
  for (position = at.get(root)! + 1; position < nodes.length; position++) {
    const node = nodes[position]!;
    if (done.has(node)) continue;
    done.add(node);
    if (foldable(ctx, node)) {
      const r = evaluate(ctx, node, valueOf, declared, lastRead);
      if (!("refused" in r)) {
        keep(node, r.outputs, r.inputs);
        pass(node);
        foldEarly(node);
        continue;
      }
      if (!r.quiet) notes.push({ node, reason: r.refused });
    }
    pass(node);
  }
  removed.sort((a, b) => at.get(a)! - at.get(b)!);
  notes.sort((a, b) => at.get(a.node)! - at.get(b.node)!);
  const folded = keepWhatGrows(ctx, removed, sizes, sources, notes);
  const gone = new Set(folded);
  for (const n of removed)
    if (!gone.has(n))
      for (const o of n.outputs) {
        produced.delete(o);
        written.delete(o);
      }
  if (!hold && [...stillRead(ctx, gone, sizes)].some((name) => !produced.has(name) && !written.has(name))) return matchRegion(ctx, root, true);
  if (folded.length === 0) return { ...refuse(notes.find((n) => n.node === root)?.reason ?? "nothing folds"), notes: notes.filter((n) => n.node !== root) };
  return { anchor: folded[folded.length - 1]!, remove: folded, produced, written, notes };
}

export const foldConstants: Rule<ConstantRegion> = {
  name: "fold-constants",
  description: "evaluate initializer-only subgraphs (and shapes static in the model) in float64 into initializers",
  rootOps: [...EVALUATED_OPS],
  benefit: 60,
  match(root, ctx) {
    if (!foldable(ctx, root)) return notCandidate("not foldable");
    // Kernels dropped as their last reader folds are reused by the next evaluations (value.ts).
    return withRecycling(() => matchRegion(ctx, root, false));
  },
  rewrite({ remove, produced, written }, ctx) {
    // Outputs still read by the remaining graph become initializers under their own names (in the
    // order the graph first reads them).
    const stored = new Map<string, Value | Tensor>([...produced, ...written]);
    const tensors: Tensor[] = [...stillRead(ctx, new Set(remove), stored)].map((name) => written.get(name) ?? tensorFromValue(name, produced.get(name)!));
    const histogram = new Map<string, number>();
    for (const n of remove) histogram.set(n.opType, (histogram.get(n.opType) ?? 0) + 1);
    return {
      initializers: tensors,
      summary: `${remove.length} constant node(s) (${[...histogram].map(([op, k]) => `${k} ${op}`).join(", ")}) → ${tensors.length} initializer(s)`,
    };
  },
};
