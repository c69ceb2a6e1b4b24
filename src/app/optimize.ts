// The optimize workflow: the rules run by the driver over a copy of the model, the sharing check,
// and the report. Rules never see the caller's model; verification compares the two afterwards.
import type { Model } from "../ir/graph.js";
import { runRules, type Convergence, type DriverOptions, type RefusalRecord, type RuleReport } from "../pipeline/driver.js";
import type { RewriteRecord, Rule } from "../pipeline/rule.js";
import { defaultRules } from "../rules/index.js";
import { modelStats, type ModelStats } from "./stats.js";

export { defaultRules };

export interface OptimizeOptions extends DriverOptions {
  /** The rules to run (default: defaultRules()). */
  rules?: Rule[];
}

/** Per-rule counts (named `passes` in reports and --json for compatibility). */
export type PassReport = RuleReport;

export interface OptimizeReport {
  passes: PassReport[];
  rewrites: RewriteRecord[];
  refusals: RefusalRecord[];
  /** Whether the rules reached a fixpoint within the bound (if not: which rule kept firing). */
  convergence: Convergence;
  before: ModelStats;
  after: ModelStats;
  timeMs: number;
}

export function optimize(model: Model, options: OptimizeOptions = {}): { model: Model; report: OptimizeReport } {
  try {
    return optimizeWithSharingCheck(model, options);
  } finally {
    // The rules decoded the weights they read; writing and verifying use the stored bytes.
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
  const work = model.clone();
  const result = runRules(work, options.rules ?? defaultRules(), options);
  return {
    model: work,
    readSharedWeights: result.readSharedWeights,
    report: {
      passes: result.rules,
      rewrites: result.rewrites,
      refusals: result.refusals,
      convergence: result.convergence,
      before: modelStats(model, options.shapes),
      after: modelStats(work, options.shapes),
      timeMs: performance.now() - start,
    },
  };
}
