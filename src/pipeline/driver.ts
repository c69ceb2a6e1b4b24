// The driver (docs/rules.md §2): owns traversal, the order of rules, the filter, and convergence.
// Rules run in decreasing benefit; each runs to its own fixpoint (a sweep over its root ops in the
// rule's order, repeated while a sweep changes the graph) before the next starts, and the whole
// sequence repeats until a round changes nothing. Every match is offered to the filter BEFORE
// anything changes, then applied by the Rewriter. What the rules refused, and whether the run
// converged (and if not, which rule kept firing), is reported.
import { withScratch } from "../algebra/scratch.js";
import type { Model, Node } from "../ir/graph.js";
import { RuleContext, type RuleOptions } from "./context.js";
import { fingerprintDiffers, graphFingerprint } from "./match-guard.js";
import { Rewriter } from "./rewriter.js";
import { rewriteKey, type Match, type Note, type RewriteFilter, type RewriteRecord, type Rule } from "./rule.js";

export interface RefusalRecord {
  /** The rule that left the node alone. */
  pass: string;
  node: string;
  op: string;
  reason: string;
}

export interface RuleReport {
  name: string;
  rewrites: number;
  refusals: number;
  timeMs: number;
}

/** Where the driver is: `done` of `total` roots of `pass`'s current sweep, in round `round` (1-based). */
export interface ProgressEvent {
  pass: string;
  round: number;
  done: number;
  total: number;
}

export interface DriverOptions extends RuleOptions {
  /** Called as the driver goes, before each root (cheap: a caller that draws should throttle itself). */
  onProgress?: (event: ProgressEvent) => void;
  /** Which rewrites (by RewriteRecord.key) may be applied; used by bisection and --skip-failing. */
  filter?: RewriteFilter;
  /** Upper bound on rounds over all rules, and on sweeps of one rule (a guard; real pipelines settle in 2–3). */
  maxRounds?: number;
  /**
   * Rules whose match is trusted to only look (the built-in ones, in the optimize pipeline). Every
   * other rule's match calls are checked to leave the graph unchanged (an O(nodes) fingerprint).
   */
  trusted?: ReadonlySet<Rule>;
}

/** A rule's match changed the graph it should only look at. */
export class MatchMutatedGraphError extends Error {
  constructor(rule: string, root: string) {
    super(`rule '${rule}' changed the graph in its match at '${root}': match must only look (return a match, and declare every change in rewrite's Replacement)`);
    this.name = "MatchMutatedGraphError";
  }
}

export interface Convergence {
  converged: boolean;
  /** Rounds over all rules that were run. */
  rounds: number;
  /** When the run did not converge: the rule that was still rewriting when the bound was reached. */
  stillFiring?: string;
}

export interface DriverResult {
  rewrites: RewriteRecord[];
  refusals: RefusalRecord[];
  rules: RuleReport[];
  convergence: Convergence;
  /** A rule folded a layer whose weights other nodes share (the sharing check's trigger). */
  readSharedWeights: boolean;
}

export const DECLINED = "rewrite skipped: the rewrite filter declined it (--skip-failing: it failed verification)";

const nodeName = (n: Node) => n.name || `${n.opType}(${n.outputs[0]})`;

/** Rules in the order they run: decreasing benefit, ties in the order given. */
export function ruleOrder(rules: readonly Rule[]): Rule[] {
  return rules.map((rule, i) => ({ rule, i })).sort((a, b) => b.rule.benefit - a.rule.benefit || a.i - b.i).map((x) => x.rule);
}

/** Run `rules` on `model` in place (callers pass a copy) until nothing changes. */
export function runRules(model: Model, rules: readonly Rule[], options: DriverOptions = {}): DriverResult {
  const rewriter = new Rewriter(model.graph);
  const ctx = new RuleContext(model, options, rewriter);
  const ordered = ruleOrder(rules);
  const reports = new Map<string, RuleReport>(ordered.map((r) => [r.name, { name: r.name, rewrites: 0, refusals: 0, timeMs: 0 }]));
  const maxRounds = options.maxRounds ?? 20;
  // The latest findings of each (rule, root) attempt: a new attempt replaces the old ones, so
  // nothing stale is reported; a root that was rewritten keeps only the notes about its neighbours.
  const findings = new Map<string, { rule: string; notes: Note[] }>();
  // Anchors whose rewrite the filter declined, per rule: not offered again.
  const declined = new Map<string, Set<Node>>();
  let alive = new Set(model.graph.nodes);
  rewriter.listen(() => (alive = new Set(model.graph.nodes)));

  let currentRound = 0;
  const sweep = (rule: Rule, recycle: () => void): boolean => {
    let changed = false;
    const roots = rule.order === "reverse" ? [...model.graph.nodes].reverse() : [...model.graph.nodes];
    const removedHere = new Set<Node>();
    const checked = !options.trusted?.has(rule);
    const refused = (declined.get(rule.name) ?? declined.set(rule.name, new Set()).get(rule.name))!;
    for (const [done, root] of roots.entries()) {
      options.onProgress?.({ pass: rule.name, round: currentRound, done, total: roots.length });
      if (removedHere.has(root) || !alive.has(root)) continue;
      if (rule.rootOps && !(root.isDefaultDomain && rule.rootOps.includes(root.opType))) continue;
      recycle();
      ctx.recycled();
      const key = `${rule.name}\u0000${nodeName(root)}`;
      let found: ReturnType<Rule["match"]>;
      if (checked) {
        const before = graphFingerprint(model.graph);
        found = rule.match(root, ctx);
        if (fingerprintDiffers(before, graphFingerprint(model.graph))) throw new MatchMutatedGraphError(rule.name, nodeName(root));
      } else found = rule.match(root, ctx);
      const notes = [...(found.notes ?? [])];
      if ("refused" in found) {
        if (!found.quiet) notes.push({ node: root, reason: found.refused });
        findings.set(key, { rule: rule.name, notes });
        continue;
      }
      const match = found as Match;
      if (refused.has(match.anchor)) {
        findings.set(key, { rule: rule.name, notes: [...notes, { node: match.anchor, reason: DECLINED }] });
        continue;
      }
      if (options.filter && !options.filter(rewriteKey(rule.name, match.anchor, match.remove))) {
        refused.add(match.anchor);
        findings.set(key, { rule: rule.name, notes: [...notes, { node: match.anchor, reason: DECLINED }] });
        continue;
      }
      findings.set(key, { rule: rule.name, notes });
      rewriter.apply(rule.name, match, rule.rewrite(match, ctx));
      for (const n of match.remove) removedHere.add(n);
      changed = true;
    }
    return changed;
  };

  const runRule = (rule: Rule): { changed: boolean; converged: boolean } => {
    const run = (recycle: () => void) => {
      let changed = false;
      for (let i = 0; i < maxRounds; i++) {
        if (!sweep(rule, recycle)) return { changed, converged: true };
        changed = true;
      }
      return { changed, converged: false };
    };
    return rule.scratch ? withScratch(run) : run(() => {});
  };

  const convergence: Convergence = { converged: false, rounds: 0 };
  for (let round = 0; round < maxRounds && !convergence.converged; round++) {
    convergence.rounds = currentRound = round + 1;
    let lastChanged: string | undefined;
    for (const rule of ordered) {
      const t0 = performance.now();
      const before = rewriter.records.length;
      const result = runRule(rule);
      const r = reports.get(rule.name)!;
      r.rewrites += rewriter.records.length - before;
      r.timeMs += performance.now() - t0;
      if (result.changed) lastChanged = rule.name;
      // A rule still rewriting after maxRounds sweeps of its own names itself.
      if (!result.converged) convergence.stillFiring ??= rule.name;
    }
    if (lastChanged === undefined) convergence.converged = true;
    else if (round === maxRounds - 1) convergence.stillFiring ??= lastChanged;
  }

  // Findings about nodes that are still in the graph, each (node, reason) once.
  const refusals: RefusalRecord[] = [];
  const seen = new Set<string>();
  const names = new Set(model.graph.nodes.map((n) => n.name));
  const present = new Set(model.graph.nodes);
  for (const { rule, notes } of findings.values())
    for (const { node, reason } of notes) {
      const name = nodeName(node);
      const id = `${name}\u0000${reason}`;
      if (!(present.has(node) || (node.name && names.has(node.name))) || seen.has(id)) continue;
      seen.add(id);
      refusals.push({ pass: rule, node: name, op: node.opType, reason });
      reports.get(rule)!.refusals++;
    }
  return { rewrites: rewriter.records, refusals, rules: [...reports.values()], convergence, readSharedWeights: ctx.readSharedWeights };
}
