#!/usr/bin/env node
// reparam-onnx: thin CLI over the library. The grammar (commands, flags, help) is in program.ts;
// this file calls the API, prints a report (text or --json), and maps errors to one line and an exit code:
//   0 ok · 1 verification failed (nothing written) · 2 bad input or usage · 3 internal error (a bug)
import * as fs from "node:fs";
import * as path from "node:path";
import { CommanderError } from "commander";
import { about, ModelError, UsageError } from "../ir/errors.js";
import { checkOutputAliasing, loadModel, modelToBytes, saveModel } from "../ir/io.js";
import { findCulprit, skipFailing, type Culprit } from "../app/bisect.js";
import { optimize, type OptimizeReport } from "../app/optimize.js";
import type { ProgressEvent } from "../app/optimize.js";
import { modelStats } from "../app/stats.js";
import { provenance } from "../app/provenance.js";
import { readNpy, type NpyArray } from "../verify/npy.js";
import { arraysToSets, readNpz, setsToArrays, writeNpz, type StoredSet } from "../verify/npz.js";
import { RECORD_SCHEMA, runInputSets, verifyAgainstOutputs, verifyModels, type Feed, type Provider, type RecordedSet, type VerifyReport } from "../verify/verify.js";
import { formatOptimize, formatVerify, ms } from "./format.js";
import { Progress } from "./progress.js";
import { checkShapeNames, parseShapeSpecs } from "./shape-spec.js";
import { onnxruntimeVersion, toolVersion } from "./version.js";
import { buildProgram, usageMessage, type Flags } from "./program.js";
import { findAttentionBlocks, replaceGates } from "../app/approximate-attention.js";
import { approximationError, attentionStats, readCalibration, type ApproximationError, type AttentionStat } from "../verify/calibration.js";
import type { Model } from "../ir/graph.js";

export const EXIT = { ok: 0, verifyFailed: 1, usage: 2, internal: 3 } as const;

function nonNegative(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0) throw new UsageError(`--${flag} '${value}': expected a number ≥ 0`);
  return n;
}

/**
 * The `schema` field of each --json report (verify's, VERIFY_SCHEMA, is set by src/verify): the
 * JSON Schema of "reparam-onnx/NAME/1" is docs/schema/NAME.1.schema.json (README "JSON reports").
 */
export const OPTIMIZE_SCHEMA = "reparam-onnx/optimize-report/1";
export const OPTIMIZE_BATCH_SCHEMA = "reparam-onnx/optimize-batch-report/1";
export const INSPECT_SCHEMA = "reparam-onnx/inspect-report/1";

function number(flag: string, value: string | undefined, fallback: number | undefined, integer = false): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new UsageError(`--${flag} '${value}': expected a positive ${integer ? "integer" : "number"}`);
  return n;
}

function provider(value: string | undefined): Provider {
  if (value === undefined || value === "cpu") return "cpu";
  if (value === "cuda") return "cuda";
  throw new UsageError(`--provider '${value}': expected cpu or cuda`);
}

function positionals(cmd: string, got: string[], want: number): string[] {
  if (got.length !== want) throw new UsageError(`${cmd} takes ${want} file argument${want === 1 ? "" : "s"}, got ${got.length}; reparam-onnx ${cmd} --help explains`);
  return got;
}

function sameFile(a: string, b: string): boolean {
  if (path.resolve(a) === path.resolve(b)) return true;
  try {
    const sa = fs.statSync(a), sb = fs.statSync(b);
    return sa.ino === sb.ino && sa.dev === sb.dev;
  } catch {
    return false;
  }
}

function print(json: boolean | undefined, obj: unknown, lines: string[], stream: NodeJS.WriteStream = process.stdout): void {
  if (json) stream.write(JSON.stringify(obj, null, 2) + "\n");
  else stream.write(lines.join("\n") + "\n");
}

/** The flags of optimize, checked once before any model is read. */
interface OptimizeSettings {
  tolerance?: number;
  atol?: number;
  rtol?: number;
  runs?: number;
  seed?: number;
  shapes?: Record<string, number[]>;
  provider: Provider;
}

function optimizeSettings(f: Flags): OptimizeSettings {
  if (f["approx-attention"] === undefined)
    for (const flag of ["calib", "labels", "approx-threshold"] as const)
      if (f[flag] !== undefined) throw new UsageError(`--${flag} ${f[flag]}: used only with --approx-attention (an ignored option is refused)`);
  // Every flag is checked before any work, whether or not it ends up used (--no-verify).
  return {
    tolerance: number("tolerance", f.tolerance, undefined),
    atol: nonNegative("atol", f.atol),
    rtol: nonNegative("rtol", f.rtol),
    runs: number("runs", f.runs, undefined, true),
    seed: number("seed", f.seed, undefined, true),
    shapes: parseShapeSpecs(f.shape),
    provider: provider(f.provider),
  };
}

/** `output` can be written (its folder exists, is writable, it is not a folder, not the input); "-" is stdout. */
function checkOutput(input: string, output: string, f: Flags): void {
  if (output === "-") {
    if (f["external-data"]) throw new UsageError("--external-data cannot write to stdout ('-'): give an output file");
    if (process.stdout.isTTY) throw new UsageError("-: refusing to write a binary model to a terminal; redirect stdout (… - > out.onnx) or give an output file");
    return;
  }
  if (sameFile(input, output)) throw new UsageError(`${output}: output is the input file; write the optimized model elsewhere`);
  const dir = path.dirname(path.resolve(output));
  if (!fs.existsSync(dir)) throw new UsageError(`${output}: cannot write (folder ${dir} does not exist)`);
  if (!fs.statSync(dir).isDirectory()) throw new UsageError(`${output}: cannot write (${dir} is a file, not a folder)`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new UsageError(`${output}: cannot write (folder ${dir} is not writable)`);
  }
  if (fs.existsSync(output) && fs.statSync(output).isDirectory()) throw new UsageError(`${output}: is a directory`);
}

async function cmdOptimize(args: string[], f: Flags): Promise<number> {
  const settings = optimizeSettings(f);
  const outDir = f["out-dir"];
  if (outDir === undefined) {
    if (args.length !== 2) throw new UsageError(`optimize takes IN.onnx OUT.onnx, or one or more models or folders with --out-dir DIR (got ${args.length} file argument${args.length === 1 ? "" : "s"}); reparam-onnx optimize --help explains`);
    const [input, output] = args as [string, string];
    checkOutput(input, output, f);
    const r = await optimizeOne(input, output, f, settings, new Progress(f.json));
    // With the model on stdout, the report goes to stderr.
    print(f.json, r.json, r.lines, output === "-" ? process.stderr : process.stdout);
    if (r.error) process.stderr.write(`reparam-onnx: error: ${r.error}\n`);
    return r.code;
  }
  return optimizeBatch(args, outDir, f, settings);
}

/**
 * Several models in one process: every input file, and every .onnx file of every input folder, is
 * written to OUT-DIR under its own name. All outputs are checked before the first model is read;
 * a model with bad input or a failed verification is reported and skipped, the others go on. The
 * exit code is the worst one (2 bad input, 1 verification failed, 0 all written).
 */
async function optimizeBatch(args: string[], outDir: string, f: Flags, settings: OptimizeSettings): Promise<number> {
  if (args.length === 0) throw new UsageError("optimize --out-dir needs one or more models or folders of models");
  if (fs.existsSync(outDir) && !fs.statSync(outDir).isDirectory()) throw new UsageError(`--out-dir ${outDir}: is a file, not a folder`);
  const inputs: string[] = [];
  for (const arg of args) {
    if (!fs.existsSync(arg)) throw new UsageError(`${arg}: no such file or folder`);
    if (fs.statSync(arg).isDirectory()) {
      const models = fs.readdirSync(arg).filter((n) => n.endsWith(".onnx")).sort().map((n) => path.join(arg, n));
      if (models.length === 0) throw new UsageError(`${arg}: folder holds no .onnx file`);
      inputs.push(...models);
    } else inputs.push(arg);
  }
  const outputs = new Map<string, string>();
  for (const input of inputs) {
    const output = path.join(outDir, path.basename(input));
    const other = outputs.get(output);
    if (other !== undefined) throw new UsageError(`${input}: would be written to ${output} as ${other} is: give them different names or out-dirs`);
    outputs.set(output, input);
  }
  fs.mkdirSync(outDir, { recursive: true });
  for (const [output, input] of outputs) checkOutput(input, output, f);
  const results: OptimizeResult[] = [];
  let k = 0;
  for (const [output, input] of outputs) {
    k++;
    const progress = new Progress(f.json, `[${k}/${outputs.size}] `);
    let r: OptimizeResult;
    try {
      r = await optimizeOne(input, output, f, settings, progress);
    } catch (e) {
      progress.done();
      if (!(e instanceof ModelError || e instanceof UsageError)) throw e;
      r = { code: EXIT.usage, error: e.message, lines: [`reparam-onnx optimize ${input}: bad input`], json: { schema: OPTIMIZE_SCHEMA, input, output: null, ok: false, error: e.message } };
    }
    results.push(r);
    if (!f.json) process.stdout.write(r.lines.join("\n") + "\n");
    if (r.error) process.stderr.write(`reparam-onnx: error: ${r.error}\n`);
  }
  const count = (code: number) => results.filter((r) => r.code === code).length;
  const summary = `reparam-onnx optimize: ${results.length} model${results.length === 1 ? "" : "s"} → ${outDir}: ${count(EXIT.ok)} written, ${count(EXIT.verifyFailed)} failed verification, ${count(EXIT.usage)} bad input`;
  const code = Math.max(...results.map((r) => r.code));
  if (f.json) process.stdout.write(JSON.stringify({ schema: OPTIMIZE_BATCH_SCHEMA, outDir, ok: code === EXIT.ok, results: results.map((r) => r.json) }, null, 2) + "\n");
  else process.stdout.write(summary + "\n");
  return code;
}

interface OptimizeResult {
  code: number;
  /** The one error line (without the prefix), when the model was not written. */
  error?: string;
  lines: string[];
  json: Record<string, unknown>;
}

/** Optimize, prove and write one model; bad input throws (ModelError/UsageError). */
async function optimizeOne(input: string, output: string, f: Flags, s: OptimizeSettings, progress: Progress): Promise<OptimizeResult> {
  const { shapes, provider: prov, tolerance, atol, rtol, runs, seed } = s;
  progress.stage(`loading ${input}`);
  const t0 = performance.now();
  const loaded = loadModel(input);
  checkShapeNames(shapes, loaded, input);
  if (output !== "-") checkOutputAliasing(loaded, output, { externalData: f["external-data"] }); // before any work: nothing written
  const tLoad = performance.now() - t0;
  // --approx-attention=mean: replace nearly constant attention by its mean (an approximation, off by
  // default). The exact check below then proves the folding against that approximated model, and
  // the approximation's own end-to-end error on the calibration set is reported separately.
  let model = loaded;
  let approximation: Awaited<ReturnType<typeof approximate>> | undefined;
  if (f["approx-attention"] !== undefined) {
    progress.stage("measuring attention on the calibration set");
    approximation = await approximate(loaded, f);
    model = approximation.model;
  }
  progress.stage("rewriting");
  // --unsafe-ignore-border-rule exists for tests and demonstrations only: it makes wrong folds on purpose.
  if (f["fix-shapes"] && !shapes) throw new UsageError("--fix-shapes needs --shape NAME=DIMS (the shape to write into the output)");
  const passOptions = { shapes, fixShapes: f["fix-shapes"], noCostlier: f["no-costlier"], maxMacGrowth: number("max-mac-growth", f["max-mac-growth"], undefined), duplicateShared: f["duplicate-shared"], unsafeIgnoreBorderRule: f["unsafe-ignore-border-rule"] };
  let lastPass = "";
  const onProgress = (e: ProgressEvent) => {
    progress.update(`rewriting (round ${e.round}): ${e.pass}${e.total ? ` ${e.done}/${e.total} nodes` : ""}`, e.pass !== lastPass || (e.done === 0 && e.total > 0));
    lastPass = e.pass;
  };
  let { model: optimized, report } = about(input, () => optimize(model, { ...passOptions, onProgress }));
  let verification;
  let tVerify = 0;
  let culprit: Culprit | undefined;
  let skipped: Culprit[] = [];
  if (!f["no-verify"]) {
    const t1 = performance.now();
    // When the reference is the model as loaded from `input` (passes work on a copy), the report
    // names that file; an approximated reference (--approx-attention) exists only in memory.
    const verifyOptions = { shapes, provider: prov, tolerance, atol, rtol, runs, seed, referenceFile: model === loaded ? input : undefined };
    progress.stage(`verifying in onnxruntime (${prov})`);
    verification = await verifyModels(model, optimized, verifyOptions);
    // Inconclusive (the reference's own noise hides any error): no rewrite is to blame, no bisection.
    const blame = !verification.ok && !verification.inconclusive;
    if (blame) progress.stage("verification failed: finding the rewrite responsible");
    if (blame && f["skip-failing"]) {
      const r = await skipFailing(model, report, passOptions, verifyOptions);
      if (r) [optimized, report, verification, skipped] = [r.model, r.report, r.verification, r.culprits];
    }
    // Name the rewrite responsible (binary search over the rewrite sequence, verifying each prefix).
    if (!verification.ok && !verification.inconclusive) culprit = await findCulprit(model, report.rewrites, passOptions, verifyOptions);
    tVerify = performance.now() - t1;
  }
  const ok = !verification || verification.ok;
  let written: { bytes: number; dataBytes: number } | undefined;
  const t2 = performance.now();
  if (ok) progress.stage(`writing ${output === "-" ? "to stdout" : output}`);
  let approxError: ApproximationError | undefined;
  if (approximation && approximation.replaced.length > 0) approxError = await approximationError(loaded, optimized, approximation.calib, approximation.labels);
  try {
    if (ok) {
      // The output says it was rewritten, by what, and whether it was proven (Netron shows these).
      const stamped = optimized.withMetadata(provenance(report, verification, toolVersion(), `onnxruntime-node ${onnxruntimeVersion()} ${verification?.provider ?? prov}`, approximation && { replaced: approximation.replaced, error: approxError }));
      if (output === "-") {
        const bytes = modelToBytes(stamped);
        writingModelToStdout = true;
        try {
          await new Promise<void>((resolve, reject) => process.stdout.write(bytes, (e) => (e ? reject(e) : resolve())));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "EPIPE") throw new UsageError(`${input}: stdout was closed before the whole model was written (EPIPE): the reader got a partial model`);
          throw e;
        } finally {
          writingModelToStdout = false;
        }
        written = { bytes: bytes.length, dataBytes: 0 };
      } else written = about(input, () => saveModel(stamped, output, { externalData: f["external-data"] }));
    }
  } finally {
    progress.done();
  }
  const tWrite = performance.now() - t2;
  const timings = { loadMs: tLoad, passesMs: report.timeMs, verifyMs: tVerify, writeMs: tWrite };
  const lines = [`reparam-onnx optimize ${input} → ${output}`, ...formatOptimize(report, !!f.explain)];
  if (approximation) {
    for (const st of approximation.stats)
      lines.push(`  attention ${st.block}: spread (max std) ${st.spreadMaxStd.toExponential(2)}, max range ${st.spreadMaxRange.toExponential(2)} → ${approximation.replaced.includes(st.block) ? "replaced by its mean (APPROXIMATION)" : `kept (above --approx-threshold ${approximation.threshold})`}`);
    if (approxError)
      lines.push(`  approximation on ${approxError.samples} calibration inputs: max abs ${approxError.maxAbs.toExponential(2)}, max rel ${approxError.maxRel.toExponential(2)}, top-1 agreement ${(approxError.top1Agreement * 100).toFixed(1)}%${approxError.accuracy ? `, accuracy ${(approxError.accuracy.original * 100).toFixed(1)}% → ${(approxError.accuracy.approximated * 100).toFixed(1)}%` : ""}`);
  }
  for (const c of skipped) lines.push(`  skipped rewrite ${describe(c)} (--skip-failing); the rest verified again`);
  if (verification) lines.push(...formatVerify(verification));
  else lines.push("  verification skipped (--no-verify): the output is NOT proven equal to the input");
  lines.push(`  time: load ${ms(tLoad)}, passes ${ms(report.timeMs)}, verify ${ms(tVerify)}, write ${ms(tWrite)}`);
  lines.push(ok ? `  wrote ${output === "-" ? "the model to stdout" : output} (${written!.bytes.toLocaleString("en-US")} bytes${written!.dataBytes ? ` + ${written!.dataBytes.toLocaleString("en-US")} bytes external data` : ""})` : `  verification FAILED: nothing written`);
  const asJson = (c: Culprit) => ({ key: c.rewrite.key, node: c.rewrite.node, summary: c.rewrite.summary, replaced: c.rewrite.removed.map((r) => r.name), maxRel: c.verification.maxRel, maxAbs: c.verification.maxAbs });
  const approx = approximation ? { threshold: approximation.threshold, stats: approximation.stats, replaced: approximation.replaced, error: approxError ?? null } : null;
  const json = { schema: OPTIMIZE_SCHEMA, input, output: ok ? output : null, ok, report, verification: verification ?? null, verified: !!verification, skipped: skipped.map(asJson), culprit: culprit ? asJson(culprit) : null, approximation: approx, timings, bytes: written?.bytes ?? null };
  let error: string | undefined;
  if (!ok) {
    if (verification!.inconclusive) error = `${input}: ${unprovable(verification!)}; nothing written`;
    else {
      const who = culprit ? `rewrite ${describe(culprit)} ${culprit.verification.candidateError ? "makes a model onnxruntime cannot run" : "changes the outputs"}` : `optimized model differs from the original beyond tolerance (${failure(verification!)})`;
      error = `${input}: ${who}; nothing written${culprit && !f["skip-failing"] ? " (--skip-failing writes the model without it)" : ""}`;
    }
  }
  return { code: ok ? EXIT.ok : EXIT.verifyFailed, error, lines, json };
}

async function approximate(model: Model, f: Flags) {
  if (f["approx-attention"] !== "mean") throw new UsageError(`--approx-attention '${f["approx-attention"]}': the only mode is 'mean'`);
  if (!f.calib) throw new UsageError("--approx-attention needs --calib DATA (.npy inputs or a folder of them)");
  const threshold = number("approx-threshold", f["approx-threshold"], 0.01)!;
  const calib = readCalibration(f.calib, model);
  const labels = f.labels ? Array.from(readNpy(f.labels).data as ArrayLike<number | bigint>, Number) : undefined;
  const blocks = findAttentionBlocks(model);
  const stats = await attentionStats(model, blocks, calib);
  const chosen = blocks.filter((_, k) => stats[k]!.spreadMaxStd < threshold);
  const approximated = replaceGates(model, chosen.map((block) => ({ block, mean: Float64Array.from(stats[blocks.indexOf(block)]!.mean) })));
  return { model: approximated, stats, replaced: chosen.map((b) => b.mul.name), threshold, calib, labels };
}

function describe(c: Culprit): string {
  const r = c.rewrite;
  return `'${r.node}' [${r.pass}: ${r.summary}; replaced ${listed(r.removed.map((x) => x.name)) || "nothing"}] (${failure(c.verification)})`;
}

/** The one-line verdict when the reference's own rounding noise makes the proof impossible (README "Guarantees"). */
function unprovable(v: VerifyReport): string {
  const o = v.outputs.find((x) => x.inconclusive);
  const nonFinite = !!o?.reason?.startsWith("the reference output is NaN/Inf");
  return `the model cannot be proven on these inputs, output '${o?.name}': ${o?.reason?.replace(/^cannot be proven on these inputs: /, "")}; no rewrite is blamed. Give inputs of your own (--input NAME=FILE.npy)${nonFinite ? " on which the original's outputs are finite" : " or a looser criterion (--atol/--rtol)"}`;
}

/** What failed, for one-line errors: the first failing output's reason (a NaN/Inf mismatch or a shape says more than max rel). */
/** The first names of a long list, then how many more (a rewrite of a 100,000-node chain lists them all otherwise). */
function listed(names: string[], shown = 8): string {
  return names.length <= shown ? names.join(", ") : `${names.slice(0, shown).join(", ")} and ${names.length - shown} more`;
}

function failure(v: VerifyReport): string {
  const o = v.outputs.find((x) => !x.ok);
  return `max rel ${v.maxRel.toExponential(2)}, max abs ${v.maxAbs.toExponential(2)}${o?.reason ? `; output '${o.name}': ${o.reason}` : ""}`;
}

/** --input values: NAME=FILE.npy, NAME=FILE.npz (one array, or one named NAME) or FILE.npz (an array per input). */
function readFeeds(specs: string[] | undefined): Record<string, Feed> {
  const feeds: Record<string, Feed> = {};
  const put = (name: string, a: NpyArray, from: string) => {
    if (feeds[name]) throw new UsageError(`--input ${from}: input '${name}' is given twice`);
    feeds[name] = { dims: a.dims, data: a.data, dtype: a.dtype, source: from.replace(/^[^=]*=/, "") };
  };
  for (const spec of specs ?? []) {
    const m = /^([^=]+)=(.+)$/.exec(spec);
    if (!m) {
      if (!spec.endsWith(".npz")) throw new UsageError(`--input '${spec}': expected NAME=FILE.npy, NAME=FILE.npz or FILE.npz`);
      const sets = arraysToSets(readNpz(spec), spec, "inputs");
      if (sets.length !== 1) throw new UsageError(`${spec}: holds ${sets.length} input sets; --input takes one (use --load-outputs for a file --save-outputs wrote)`);
      for (const [name, a] of sets[0]!.inputs) put(name, a, spec);
      continue;
    }
    const [, name, file] = m as unknown as [string, string, string];
    if (file.endsWith(".npz")) {
      const arrays = readNpz(file);
      const a = arrays.get(name) ?? (arrays.size === 1 ? [...arrays.values()][0] : undefined);
      if (!a) throw new UsageError(`${file}: holds ${arrays.size} arrays (${[...arrays.keys()].slice(0, 5).join(", ")}) and none named '${name}'`);
      put(name, a, spec);
    } else put(name, readNpy(file), spec);
  }
  return feeds;
}

const toNpy = (t: { dims: readonly number[]; type: string; data: unknown }): NpyArray => ({ dims: t.dims.map(Number), dtype: t.type as NpyArray["dtype"], data: t.data as NpyArray["data"] });

function recordedToSets(sets: RecordedSet[]): StoredSet[] {
  return sets.map((s) => ({
    inputs: new Map(Object.entries(s.inputs).map(([k, t]) => [k, toNpy(t)])),
    outputs: new Map(Object.entries(s.outputs).map(([k, t]) => [k, toNpy(t)])),
  }));
}

async function cmdVerify(args: string[], f: Flags): Promise<number> {
  const [a, b] = args as [string, string | undefined];
  const shapes = parseShapeSpecs(f.shape);
  const prov = provider(f.provider);
  const tolerance = number("tolerance", f.tolerance, undefined);
  const atol = nonNegative("atol", f.atol), rtol = nonNegative("rtol", f.rtol);
  const runs = number("runs", f.runs, undefined, true);
  const seed = number("seed", f.seed, undefined, true);
  const save = f["save-outputs"], load = f["load-outputs"];
  if (save && !save.endsWith(".npz")) throw new UsageError(`--save-outputs '${save}': the file must end in .npz`);
  if (load && save) throw new UsageError("--load-outputs and --save-outputs together: check against stored outputs, or record new ones");
  if (load && b) throw new UsageError(`--load-outputs compares one model with stored outputs: give one model, not ${a} and ${b}`);
  if (!load && !b && !save) throw new UsageError("verify needs two models (A.onnx B.onnx), or one with --load-outputs FILE.npz or --save-outputs FILE.npz");
  const feeds = readFeeds(f.input);

  if (load) {
    // One model against stored outputs, each set on its stored inputs (or on --input with bare output names).
    const sets = arraysToSets(readNpz(load), load, "outputs");
    const stored = sets.map((s, k) => {
      const inputs: Record<string, Feed> = Object.fromEntries([...s.inputs].map(([n, x]) => [n, { dims: x.dims, data: x.data, dtype: x.dtype }]));
      for (const [n, feed] of Object.entries(feeds)) {
        if (inputs[n]) throw new UsageError(`--input ${n}: ${load} already holds input set ${k}'s '${n}'`);
        inputs[n] = feed;
      }
      return { inputs, outputs: Object.fromEntries([...s.outputs].map(([n, x]) => [n, { dims: x.dims, data: x.data, dtype: x.dtype }])) };
    });
    if (shapes) throw new UsageError("--shape has no effect with --load-outputs (the stored inputs fix the shapes)");
    const cand = loadModel(a);
    const v = await verifyAgainstOutputs(cand, stored, { tolerance, atol, rtol, provider: prov, referenceFile: load, candidateFile: a });
    print(f.json, v, [`reparam-onnx verify ${a} vs stored outputs ${load}`, ...formatVerify(v), `  time ${ms(v.timeMs)}`]);
    if (!v.ok) process.stderr.write(`reparam-onnx: error: ${a}: outputs differ from those stored in ${load} beyond tolerance\n`);
    return v.ok ? EXIT.ok : EXIT.verifyFailed;
  }

  const ref = loadModel(a);
  checkShapeNames(shapes, ref, a);
  if (!b) {
    // Record only: run A on the input sets a proof would use and write them with A's outputs.
    const t0 = performance.now();
    const r = await runInputSets(ref, { feeds, shapes, provider: prov, runs, seed, referenceFile: a });
    writeNpz(save!, setsToArrays(recordedToSets(r.sets)));
    const shapesText = r.shapeSets.map((s) => Object.entries(s).map(([k, d]) => `${k}=${d.join("x")}`).join(" ")).join(", ");
    print(f.json, { schema: RECORD_SCHEMA, model: a, saved: save, inputSets: r.sets.length, shapeSets: r.shapeSets, notes: r.notes, outputs: Object.keys(r.sets[0]?.outputs ?? {}), timeMs: performance.now() - t0 },
      [`reparam-onnx verify ${a}: recorded ${r.sets.length} input set${r.sets.length === 1 ? "" : "s"} at ${shapesText} → ${save}`, ...r.notes.map((n) => `    note: ${n}`)]);
    return EXIT.ok;
  }
  const cand = loadModel(b);
  const recorded: RecordedSet[] | undefined = save ? [] : undefined;
  // Both as loaded from their files (the report names them).
  const v = await verifyModels(ref, cand, {
    feeds, shapes, provider: prov, tolerance, atol, rtol, runs, seed, referenceFile: a, candidateFile: b, record: recorded,
  });
  if (save) writeNpz(save, setsToArrays(recordedToSets(recorded!)));
  print(f.json, save ? { ...v, saved: save } : v, [`reparam-onnx verify ${a} vs ${b}`, ...formatVerify(v), ...(save ? [`  saved ${v.inputSets} input sets and ${a}'s outputs to ${save}`] : []), `  time ${ms(v.timeMs)}`]);
  if (!v.ok) process.stderr.write(`reparam-onnx: error: ${v.inconclusive ? `${a}: ${unprovable(v)}` : v.candidateError ? `${b}: onnxruntime cannot load or run it where ${a} runs: ${v.candidateError.replace(/^candidate model( \S+)?: /, "")}` : `${b}: outputs differ from ${a} beyond tolerance`}\n`);
  return v.ok ? EXIT.ok : EXIT.verifyFailed;
}

async function cmdInspect(args: string[], f: Flags): Promise<number> {
  const [file] = positionals("inspect", args, 1) as [string];
  const shapes = parseShapeSpecs(f.shape);
  if (f.calib !== undefined && !f["attention-stats"]) throw new UsageError(`--calib ${f.calib}: read only with --attention-stats (an ignored option is refused)`);
  const model = loadModel(file);
  checkShapeNames(shapes, model, file);
  const stats = about(file, () => modelStats(model, shapes));
  const { report } = about(file, () => optimize(model, { shapes, noCostlier: f["no-costlier"], duplicateShared: f["duplicate-shared"] }));
  const g = model.graph;
  const io = (vs: typeof g.inputs) => vs.map((v) => `${v.name}: ${(v.type?.tensorType?.shape?.dim ?? []).map((d) => d.dimParam || String(d.dimValue)).join("x")}`).join(", ");
  const opsets = (model.original.opsetImport ?? []).map((o) => `${o.domain || "ai.onnx"} ${o.version}`).join(", ");
  const lines = [
    `reparam-onnx inspect ${file}`,
    `  opset ${opsets}; ir_version ${model.original.irVersion}; producer ${model.original.producerName ?? "?"} ${model.original.producerVersion ?? ""}`.trimEnd(),
    `  inputs ${io(g.realInputs())}`,
    `  outputs ${io(g.outputs)}`,
    `  ${stats.nodes} nodes: ${Object.entries(stats.ops).map(([k, v]) => `${k} ${v}`).join(", ")}`,
    `  ${g.initializers.size} initializers, ${stats.weightBytes.toLocaleString("en-US")} bytes, dtype ${stats.dtype}; conv weights ${stats.convWeights.toLocaleString("en-US")}; MACs ${stats.macs.toLocaleString("en-US")}`,
    `  optimize would: ${report.rewrites.length} rewrite${report.rewrites.length === 1 ? "" : "s"}, nodes ${report.before.nodes} → ${report.after.nodes}, MACs ${report.before.macs.toLocaleString("en-US")} → ${report.after.macs.toLocaleString("en-US")}`,
  ];
  for (const r of report.rewrites) {
    const costlier = r.macsBefore !== undefined && r.macsAfter !== undefined && r.macsBefore > 0 && r.macsAfter > r.macsBefore;
    const macs = r.macsBefore ? ` (MACs ${r.macsBefore.toLocaleString("en-US")} → ${(r.macsAfter ?? 0).toLocaleString("en-US")}${costlier ? ", costlier: done by default as the authors' deploy form; --no-costlier skips it" : ""})` : "";
    lines.push(`  opportunity ${r.node}: ${r.summary}${macs}`);
  }
  let attention: AttentionStat[] | undefined;
  if (f["attention-stats"]) {
    if (!f.calib) throw new UsageError("--attention-stats needs --calib DATA (.npy inputs or a folder of them)");
    const blocks = findAttentionBlocks(model);
    attention = await attentionStats(model, blocks, readCalibration(f.calib, model));
    if (blocks.length === 0) lines.push("  no input-dependent channel attention found");
    for (const st of attention)
      lines.push(`  attention ${st.block} (${st.channels} channels): spread max std ${st.spreadMaxStd.toExponential(2)}, max range ${st.spreadMaxRange.toExponential(2)}; mean [${st.mean.slice(0, 8).map((v) => v.toFixed(4)).join(", ")}${st.channels > 8 ? ", …" : ""}]`);
  }
  if (f.explain) for (const r of report.refusals) lines.push(`  left alone ${r.node} (${r.op}): ${r.reason}`);
  else if (report.refusals.length) lines.push(`  ${report.refusals.length} candidate(s) left alone (--explain says why)`);
  print(f.json, { schema: INSPECT_SCHEMA, file, stats, opportunities: report.rewrites, refusals: report.refusals, after: report.after, attention: attention ?? null }, lines);
  return EXIT.ok;
}

/** True while `-` output is being written: an EPIPE then is that write's failure, reported by it. */
let writingModelToStdout = false;

export async function main(argv: string[]): Promise<number> {
  const { program, result } = buildProgram(async (name, args, f) => {
    switch (name) {
      case "optimize": return await cmdOptimize(args, f);
      case "verify": return await cmdVerify(args, f);
      case "inspect": return await cmdInspect(args, f);
      case "train": return await (await import("./train.js")).cmdTrain(args, f);
      case "eval": return await (await import("./train.js")).cmdEval(args, f);
    }
  });
  try {
    await program.parseAsync(argv, { from: "user" });
    return result() ?? EXIT.ok;
  } catch (e) {
    Progress.current?.done();
    if (e instanceof CommanderError) {
      // --help and --version end here with exit code 0; so does a bare `reparam-onnx`, whose
      // help (on stderr) is a usage error.
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return EXIT.ok;
      if (e.code === "commander.help" || e.code === "commander.executeSubCommandAsync") return EXIT.usage;
      process.stderr.write(`reparam-onnx: error: ${usageMessage(program, argv, e)}\n`);
      return EXIT.usage;
    }
    if (e instanceof ModelError || e instanceof UsageError) {
      process.stderr.write(`reparam-onnx: error: ${e.message}\n`);
      return EXIT.usage;
    }
    process.stderr.write(`reparam-onnx: internal error (a bug; please report it with the model):\n${(e as Error).stack ?? String(e)}\n`);
    return EXIT.internal;
  }
}

const invokedDirectly = process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(new URL(import.meta.url).pathname);
if (invokedDirectly) {
  // A reader that closes the pipe early (`reparam-onnx optimize --help | head -1`) ends the output
  // quietly, not with a stack trace; a model being written to stdout says so (one line, exit 2).
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
    if (!writingModelToStdout) process.exit(typeof process.exitCode === "number" ? process.exitCode : EXIT.ok);
  });
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
