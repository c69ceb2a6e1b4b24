// A rule's `match` only looks (docs/rules.md §1): the Rewriter is the only code that changes a
// graph. A rule that is not one of the built-in ones is held to that: the graph's structure is
// fingerprinted before and after each of its match calls, and a difference is an error naming the
// rule — otherwise the change would go unrecorded, unproven by the rewrite filter and blamed on
// whichever rule ran next. The fingerprint is O(nodes) per call, so the built-in rules (whose own
// tests run them checked) are not fingerprinted in the optimize pipeline.
import type { Graph } from "../ir/graph.js";

/** Everything of the graph's structure a match could change, as references and primitives. */
export function graphFingerprint(g: Graph): unknown[] {
  const out: unknown[] = [g.nodes, g.nodes.length, g.initializers, g.initializers.size, g.inputs, g.inputs.length, g.outputs, g.outputs.length, g.valueInfo, g.valueInfo.length];
  for (const n of g.nodes) {
    out.push(n, n.name, n.opType, n.domain, n.inputs, n.inputs.length, ...n.inputs, n.outputs, n.outputs.length, ...n.outputs, n.attributes, n.attributes.length);
    for (const a of n.attributes) out.push(a, a.name, a.type, a.i, a.f, a.s, a.t, a.g, a.ints, a.ints?.length, a.floats, a.floats?.length, a.strings?.length);
  }
  for (const [name, t] of g.initializers) out.push(name, t, t.name, t.dims, ...t.dims);
  for (const v of [...g.inputs, ...g.outputs]) out.push(v, v.name, v.type);
  return out;
}

/** Whether two fingerprints differ anywhere. */
export function fingerprintDiffers(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return true;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return true;
  return false;
}
