// The driver: runs passes to a fixpoint over a copy of the model and reports what happened.
// Passes never see the caller's model; verification compares the two afterwards.
import type { Model } from "../ir/graph.js";
import { collapseLinearRegions } from "../../passes/collapse-linear-regions.js";
import { pruneZeroChannels } from "../../passes/prune-zero-channels.js";
import { foldConstants } from "../../passes/fold-constants.js";
import { foldIntoFc } from "../../passes/fold-into-fc.js";
import { affineBeforeTranspose } from "../../passes/affine-before-transpose.js";
import { dedupeInitializers } from "../../passes/dedupe-initializers.js";
import { PassContext, type PassOptions, type RefusalRecord } from "./context.js";
import type { Pass } from "./pass.js";
import type { RewriteFilter, RewriteRecord } from "./rewriter.js";
import { modelStats, type ModelStats } from "./stats.js";

export interface OptimizeOptions extends PassOptions {
  passes?: Pass[];
  /** Which rewrites (by RewriteRecord.key) may be applied; used by bisection and --skip-failing. */
  filter?: RewriteFilter;
  /** Upper bound on whole-pipeline rounds (a guard; real pipelines settle in 2–3). */
  maxRounds?: number;
}

export interface PassReport {
  name: string;
  rewrites: number;
  refusals: number;
  timeMs: number;
}

export interface OptimizeReport {
  passes: PassReport[];
  rewrites: RewriteRecord[];
  refusals: RefusalRecord[];
  before: ModelStats;
  after: ModelStats;
  timeMs: number;
}

export function defaultPasses(): Pass[] {
  return [foldConstants, dedupeInitializers, affineBeforeTranspose, collapseLinearRegions, foldIntoFc, pruneZeroChannels];
}

export function optimize(model: Model, options: OptimizeOptions = {}): { model: Model; report: OptimizeReport } {
  try {
    return optimizeWithSharingCheck(model, options);
  } finally {
    // The passes decoded the weights they read; writing and verifying use the stored bytes.
    for (const t of model.graph.initializers.values()) t.dropDecoded();
  }
}

function optimizeWithSharingCheck(model: Model, options: OptimizeOptions): { model: Model; report: OptimizeReport } {
  const result = optimizeOnce(model, options);
  const { before, after } = result.report;
  // Folding layers that share weights is allowed when it keeps them shared; if the model grew
  // instead, redo the run refusing every fold of a shared weight, and say so.
  if (!options.duplicateShared && !options.strictSharing && result.readSharedWeights && after.weightBytes > before.weightBytes) {
    const strict = optimizeOnce(model, { ...options, strictSharing: true });
    if (strict.report.after.weightBytes < after.weightBytes) {
      strict.report.refusals.push({
        pass: "driver", node: "(model)", op: "-",
        reason: `folding layers that share weights would grow the weights from ${before.weightBytes} to ${after.weightBytes} bytes: those folds are left alone (--duplicate-shared allows them)`,
      });
      strict.report.timeMs += result.report.timeMs;
      return { model: strict.model, report: strict.report };
    }
  }
  return { model: result.model, report: result.report };
}

function optimizeOnce(model: Model, options: OptimizeOptions): { model: Model; report: OptimizeReport; readSharedWeights: boolean } {
  const start = performance.now();
  const passes = options.passes ?? defaultPasses();
  const work = model.clone();
  const ctx = new PassContext(work, options);
  ctx.rewriter.filter = options.filter;
  const perPass = new Map<string, PassReport>(passes.map((p) => [p.name, { name: p.name, rewrites: 0, refusals: 0, timeMs: 0 }]));
  const maxRounds = options.maxRounds ?? 20;
  for (let round = 0; round < maxRounds; round++) {
    let changed = false;
    for (const pass of passes) {
      const t0 = performance.now();
      ctx.currentPass = pass.name;
      const before = ctx.rewriter.records.length;
      // Each pass runs to its own fixpoint before the next one starts.
      for (let i = 0; i < maxRounds && pass.run(ctx); i++) changed = true;
      const r = perPass.get(pass.name)!;
      r.rewrites += ctx.rewriter.records.length - before;
      r.timeMs += performance.now() - t0;
    }
    if (!changed) break;
  }
  // Refusals of regions that a later rewrite did fold are stale: keep those whose node survived.
  const alive = new Set(work.graph.nodes.map((n) => n.name));
  const refusals = ctx.refusals.filter((r) => alive.has(r.node));
  for (const r of refusals) perPass.get(r.pass) && perPass.get(r.pass)!.refusals++;
  return {
    model: work,
    readSharedWeights: ctx.readSharedWeights,
    report: {
      passes: [...perPass.values()],
      rewrites: ctx.rewriter.records,
      refusals,
      before: modelStats(model, options.shapes),
      after: modelStats(work, options.shapes),
      timeMs: performance.now() - start,
    },
  };
}
