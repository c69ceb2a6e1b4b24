// The optimize workflow: the rules run by the driver over a copy of the model, the sharing check,
// and the report. Rules never see the caller's model; verification compares the two afterwards.
import type { Model } from "../ir/graph.js";
import { validateGraph } from "../ir/bytes.js";
import { ModelError, UsageError } from "../ir/errors.js";
import { onnx, toNumber, type ValueInfoProto } from "../ir/proto.js";
import { runRules, type Convergence, type DriverOptions, type RefusalRecord, type RuleReport } from "../pipeline/driver.js";
import type { RewriteRecord, Rule } from "../pipeline/rule.js";
import { defaultRules } from "../rules/index.js";
import { modelStats, type ModelStats } from "./stats.js";

export { defaultRules };

/** The built-in rules: their match calls are not fingerprinted here (their own tests check them). */
const BUILT_IN: ReadonlySet<Rule> = new Set(defaultRules());
export type { ProgressEvent } from "../pipeline/driver.js";

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
  /**
   * Each --shape that fixes a dim the model declares dynamic: `fixed` when --fix-shapes wrote it
   * into the output's declared shape (the output then accepts that shape only); otherwise the
   * rules did not rely on it (it served verification and statistics).
   */
  shapeOverrides: ShapeOverride[];
}

export interface ShapeOverride {
  input: string;
  dims: number[];
  /** The input's shape as the model declares it (a symbol or "?" for a dynamic dim). */
  declared: (number | string)[];
  fixed: boolean;
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

function declaredDims(v: ValueInfoProto): (number | string)[] | undefined {
  const shape = v.type?.tensorType?.shape;
  if (!shape) return undefined;
  return (shape.dim ?? []).map((d) => {
    if (d.dimParam) return d.dimParam;
    const n = d.dimValue === undefined || d.dimValue === null ? 0 : toNumber(d.dimValue);
    return n > 0 ? n : "?";
  });
}

/** The --shape values that fix dims the model leaves dynamic (or whose shape it does not declare). */
function specializing(model: Model, shapes: Record<string, number[]> | undefined, fixed: boolean): ShapeOverride[] {
  const out: ShapeOverride[] = [];
  for (const v of model.graph.realInputs()) {
    const dims = shapes?.[v.name ?? ""];
    if (!dims) continue;
    const declared = declaredDims(v);
    // A shape that contradicts the model is verification's to report; it must never be written into it.
    if (fixed && declared && declared.length !== dims.length)
      throw new UsageError(`--shape ${v.name}=${dims.join("x")}: the model declares rank ${declared.length} (${declared.join("x")}); --fix-shapes cannot write it`);
    const clash = declared?.findIndex((d, i) => typeof d === "number" && d !== dims[i]) ?? -1;
    if (fixed && clash >= 0) throw new UsageError(`--shape ${v.name}=${dims.join("x")}: dim ${clash} is ${dims[clash]}, the model declares ${declared![clash]}; --fix-shapes cannot write it`);
    if (!declared || declared.some((d) => typeof d !== "number")) out.push({ input: v.name ?? "", dims: [...dims], declared: declared ?? dims.map(() => "?"), fixed });
  }
  return out;
}

/** Declare the fixed shapes on the output's inputs (the rules relied on them: --fix-shapes). */
function declareShapes(model: Model, overrides: ShapeOverride[]): void {
  model.graph.inputs = model.graph.inputs.map((v) => {
    const o = overrides.find((x) => x.input === v.name);
    if (!o) return v;
    const copy = onnx.ValueInfoProto.create({ ...v });
    const elemType = v.type?.tensorType?.elemType ?? undefined;
    copy.type = onnx.TypeProto.create({ tensorType: { elemType, shape: { dim: o.dims.map((d) => ({ dimValue: d })) } } });
    return copy;
  });
}

/**
 * The rewritten graph must be as well-formed as the input was (validated at load). If it is not,
 * a rewrite is wrong: that is this tool's bug, never the input file's, so it is not a ModelError
 * (which the CLI reports as a problem with the input) and nothing gets written.
 */
function checkRewritten(model: Model, rewrites: readonly RewriteRecord[]): void {
  try {
    validateGraph(model.graph);
  } catch (e) {
    if (!(e instanceof ModelError)) throw e;
    const last = rewrites.at(-1);
    throw new Error(`the rewritten model is invalid (${e.message})${last ? `; last rewrite: ${last.pass} at '${last.node}'` : ""}`);
  }
}

function optimizeOnce(model: Model, options: OptimizeOptions): { model: Model; report: OptimizeReport; readSharedWeights: boolean } {
  const start = performance.now();
  const work = model.clone();
  const shapeOverrides = specializing(model, options.shapes, !!options.fixShapes);
  const result = runRules(work, options.rules ?? defaultRules(), { ...options, trusted: BUILT_IN });
  checkRewritten(work, result.rewrites);
  if (options.fixShapes) declareShapes(work, shapeOverrides);
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
      shapeOverrides,
    },
  };
}
