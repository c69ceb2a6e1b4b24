// Whole-graph differential testing of the CLI, as users run it (bench/random-graphs.ts makes the
// graphs). For each case: write the model (inline or with external data), run
// `reparam-onnx optimize IN OUT [flags]`, then check the promise the tool makes:
//   - exit 0 ⇒ the written model computes the same outputs as the input model, in onnxruntime with
//     its graph optimizations off, on inputs the tool never saw, at ≥ 2 values of every dynamic dim
//     the written model still declares (a dim it fixed must be one the user fixed with --shape);
//   - the input model and every file it reads are byte-identical afterwards, whatever the exit;
//   - exit 1 writes nothing and names the input; a refusal of a broken input (exit 2) names the
//     file that is broken; exit 3 (internal error) never happens.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as ort from "onnxruntime-node";
import { loadModel, saveModel } from "../src/ir/io.js";
import type { Model } from "../src/ir/graph.js";
import { inferShapes, knownProduct } from "../src/ir/shapes.js";
import { toNumber } from "../src/ir/proto.js";
import { ALL_FEATURES, prng, randomGraph, type GraphCase, type GraphFeatures } from "./random-graphs.js";

export type Verdict =
  | "equal" // exit 0 and equal outputs everywhere
  | "caught" // exit 1: verification refused a rewrite that is wrong (the same run with --no-verify writes a model that differs)
  | "false-refusal" // exit 1, yet the same run with --no-verify writes a model equal to the input by this harness's check
  | "refused-fault" // an injected fault refused with a one-line error naming the right file
  | "mismatch" // exit 0 and different outputs (or a written model that does not run where it says it does)
  | "modified-input" // an input file changed
  | "wrong-file" // a refusal that names another file, or an exit 1 that still wrote something
  | "crash" // exit 3, a signal, or a stack trace
  | "rejected" // a valid model refused as bad input (exit 2)
  | "missed-fault" // an injected fault that exited 0
  | "costlier" // exit 0 and more multiply-accumulates than the growth bound allows at some shape
  | "generator"; // the original model does not run: a bug in the generator, not the tool

export const FAILURES: Verdict[] = ["mismatch", "modified-input", "wrong-file", "crash", "rejected", "false-refusal", "missed-fault", "costlier", "generator"];
/** The failures that break the promise "never silently wrong" (a rejection or a costlier output is loud, or a policy question). */
export const SILENT: Verdict[] = ["mismatch", "modified-input", "wrong-file", "crash", "missed-fault", "generator"];

export interface CaseResult {
  seed: number;
  /** The case's features in short: dyn (dynamic H/W), fp16, ext (external data), if, fault name. */
  tags: string[];
  verdict: Verdict;
  detail: string;
  args: string[];
  ops: string[];
  ms: number;
}

export interface RunOptions {
  features?: GraphFeatures;
  /** Spawn `node dist/src/cli/main.js` per case (slower, the exact user path) instead of calling its main() in this process. */
  spawn?: boolean;
  /** Keep the case's folder (for a failure to replay by hand). */
  keep?: boolean;
  /** The module whose main(argv) runs in this process (default: the built CLI; a test runner passes the source). */
  cliModule?: string;
}

interface CliRun { code: number | null; stdout: string; stderr: string }

function repoRoot(): string {
  let dir = path.dirname(new URL(import.meta.url).pathname);
  while (!fs.existsSync(path.join(dir, "package.json"))) dir = path.dirname(dir);
  return dir;
}
const CLI = path.join(repoRoot(), "dist", "src", "cli", "main.js");

function spawnCli(args: string[], cwd: string): CliRun {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: "utf8", timeout: 300_000 });
  return { code: r.status, stdout: r.stdout ?? "", stderr: (r.stderr ?? "") + (r.signal ? `\n(killed by ${r.signal})` : "") };
}

const cliMains = new Map<string, (argv: string[]) => Promise<number>>();

/** The CLI's own main(argv), in this process, with its stdout/stderr captured. */
async function inProcessCli(args: string[], module = CLI): Promise<CliRun> {
  let cliMain = cliMains.get(module);
  if (!cliMain) {
    const mod = (await import(module)) as { main?: (argv: string[]) => Promise<number> };
    if (typeof mod.main !== "function") throw new Error(`${module} exports no main(argv): run with --spawn`);
    cliMains.set(module, (cliMain = mod.main));
  }
  let stdout = "", stderr = "";
  const capture = (sink: (s: string) => void) =>
    ((chunk: unknown, ...rest: unknown[]) => {
      sink(typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString("utf8"));
      const cb = rest.find((f) => typeof f === "function") as (() => void) | undefined;
      cb?.();
      return true;
    }) as typeof process.stdout.write;
  const [out, err] = [process.stdout.write, process.stderr.write];
  process.stdout.write = capture((s) => (stdout += s));
  process.stderr.write = capture((s) => (stderr += s));
  try {
    const code = await cliMain(args);
    return { code, stdout, stderr };
  } catch (e) {
    return { code: null, stdout, stderr: stderr + `\nthrown: ${(e as Error).stack}` };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    process.exitCode = 0;
  }
}

function hashes(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of fs.readdirSync(dir, { recursive: true }).map(String).sort()) {
    const p = path.join(dir, f);
    if (fs.statSync(p).isFile()) m.set(f, createHash("sha256").update(fs.readFileSync(p)).digest("hex"));
  }
  return m;
}

function changed(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [f, h] of before) if (after.get(f) !== h) out.push(after.has(f) ? `${f} changed` : `${f} removed`);
  for (const f of after.keys()) if (!before.has(f)) out.push(`${f} appeared`);
  return out;
}

/** Declared dims of a graph input: numbers, symbol names, or "?" when unknown. */
function declaredInput(file: string, name: string): (number | string)[] | undefined {
  const v = loadModel(file).graph.inputs.find((i) => i.name === name);
  const dims = v?.type?.tensorType?.shape?.dim;
  if (!dims) return undefined;
  return dims.map((d) => (d.dimParam ? d.dimParam : d.dimValue !== undefined && d.dimValue !== null && toNumber(d.dimValue) > 0 ? toNumber(d.dimValue) : "?"));
}

function declaredOutputs(file: string): Map<string, (number | string)[] | undefined> {
  const m = new Map<string, (number | string)[] | undefined>();
  for (const o of loadModel(file).graph.outputs) {
    const dims = o.type?.tensorType?.shape?.dim;
    m.set(o.name ?? "", dims?.map((d) => (d.dimParam ? d.dimParam : d.dimValue !== undefined && d.dimValue !== null && toNumber(d.dimValue) > 0 ? toNumber(d.dimValue) : "?")));
  }
  return m;
}

ort.env.logLevel = "error";
const SESSION: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: "disabled", intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential" };

/**
 * The shapes to run: for each of x's dims, the values the written model still accepts. A dim the
 * original declares symbolic and the output declares fixed is accepted only when the user fixed it
 * with --shape (then that value is the only one run); otherwise the output narrowed the model.
 */
function testPoints(c: GraphCase, outDims: (number | string)[] | undefined): { points: number[][]; problem?: string } {
  const origSyms = ["N", undefined, c.dynamicSpatial ? "H" : undefined, c.dynamicSpatial ? "W" : undefined] as const;
  const fixed = [undefined, c.channels, c.dynamicSpatial ? undefined : c.dimValues.H[0], c.dynamicSpatial ? undefined : c.dimValues.W[0]];
  const per: number[][] = [];
  for (let i = 0; i < 4; i++) {
    const sym = origSyms[i];
    const o = outDims?.[i];
    if (!sym) {
      per.push([fixed[i]!]);
      if (typeof o === "number" && o !== fixed[i]) return { points: [], problem: `output declares x dim ${i} = ${o}, the input model ${fixed[i]}` };
      continue;
    }
    const values = c.dimValues[sym];
    if (typeof o === "number") {
      if (c.shapeOverride?.[i] !== o) return { points: [], problem: `output fixes x dim ${i} (${sym}) to ${o}, which --shape did not ask for` };
      per.push([o]);
    } else per.push(values);
  }
  // Three points cover ≥ 2 values of each dim with choices; the --shape point (what the tool saw) is added.
  const points: number[][] = [];
  for (let j = 0; j < 3; j++) points.push(per.map((vs, i) => vs[(j * (i + 1) + (i === 3 ? 2 : 0)) % vs.length]!));
  if (c.shapeOverride && per.every((vs, i) => vs.includes(c.shapeOverride![i]!))) points.push([...c.shapeOverride]);
  const seen = new Set<string>();
  return { points: points.filter((p) => !seen.has(p.join("x")) && seen.add(p.join("x"))) };
}

function toF64(t: ort.Tensor): Float64Array {
  const d = t.data as ArrayLike<number>;
  return Float64Array.from(d);
}

/**
 * Multiply-adds of a model at one input shape: Conv/Gemm/MatMul by their weights, and one per
 * output element for the elementwise affine ops (BN, Mul/Add/Sub/Div, Sum, PRelu) and k·k per
 * AveragePool output (so a per-channel affine becoming a grouped 1x1 conv does not count as growth).
 */
function work(model: Model, x: number[]): number {
  const g = model.graph;
  const shapes = inferShapes(g, { overrides: { x }, constant: (n) => { const t = g.initializers.get(n); return t ? Array.from(t.toFloat64()) : undefined; } });
  let total = 0;
  for (const n of g.nodes) {
    const d = shapes.get(n.outputs[0] ?? "")?.dims;
    const out = d && knownProduct(d);
    if (!out) continue;
    const w = g.initializers.get(n.inputs[1] ?? "");
    switch (n.opType) {
      case "Conv": if (w) total += out * (w.size / w.dims[0]!); break;
      case "Gemm": case "MatMul": if (w) total += (out / d[d.length - 1]!) * w.size; break;
      case "BatchNormalization": case "Mul": case "Add": case "Sub": case "Div": case "Sum": case "PRelu": total += out; break;
      case "AveragePool": total += out * n.ints("kernel_shape", [1]).reduce((a, b) => a * b, 1); break;
    }
  }
  return total;
}

/** Run both models at every test point and compare; undefined when equal everywhere. */
async function compare(c: GraphCase, inFile: string, outFile: string): Promise<{ verdict: Verdict; detail: string } | undefined> {
  let outDims: (number | string)[] | undefined;
  try {
    outDims = declaredInput(outFile, "x");
  } catch (e) {
    return { verdict: "mismatch", detail: `written model does not load: ${(e as Error).message.split("\n")[0]}` };
  }
  const { points, problem } = testPoints(c, outDims);
  if (problem) return { verdict: "mismatch", detail: problem };
  const ref = await ort.InferenceSession.create(inFile, SESSION);
  let cand: ort.InferenceSession;
  try {
    cand = await ort.InferenceSession.create(outFile, SESSION);
  } catch (e) {
    await ref.release();
    return { verdict: "mismatch", detail: `written model does not load in onnxruntime: ${(e as Error).message.split("\n")[0]}` };
  }
  const declared = declaredOutputs(outFile);
  const inModel = loadModel(inFile), outModel = loadModel(outFile);
  const growthFlag = c.flags.indexOf("--max-mac-growth");
  const growth = growthFlag >= 0 ? Number(c.flags[growthFlag + 1]) : 2;
  const tol = c.float16 ? 2e-2 : 1e-4;
  try {
    for (const [j, dims] of points.entries()) {
      const r = prng((c.seed * 31 + j * 977) ^ 0x2545f491);
      const n = dims.reduce((a, b) => a * b, 1);
      const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor("float32", Float32Array.from({ length: n }, () => r() * 4 - 2), dims) };
      if (c.hasCond) feeds.cond = new ort.Tensor("bool", Uint8Array.of(j % 2 === 0 ? 1 : 0), []);
      const where = `x=${dims.join("x")}${c.hasCond ? ` cond=${j % 2 === 0}` : ""}`;
      let a: ort.InferenceSession.OnnxValueMapType;
      try {
        a = await ref.run(feeds);
      } catch (e) {
        return { verdict: "generator", detail: `the original does not run at ${where}: ${(e as Error).message.split("\n")[0]}` };
      }
      let b: ort.InferenceSession.OnnxValueMapType;
      try {
        b = await cand.run(feeds);
      } catch (e) {
        return { verdict: "mismatch", detail: `the written model fails at ${where}, a shape it declares: ${(e as Error).message.split("\n")[0]}` };
      }
      for (const name of ref.outputNames) {
        const ta = a[name] as ort.Tensor, tb = b[name] as ort.Tensor | undefined;
        if (!tb) return { verdict: "mismatch", detail: `output ${name} missing from the written model` };
        if (ta.dims.join("x") !== tb.dims.join("x")) return { verdict: "mismatch", detail: `output ${name} at ${where}: shape ${tb.dims.join("x")}, original ${ta.dims.join("x")}` };
        const d = declared.get(name);
        if (d && d.length === tb.dims.length && d.some((v, i) => typeof v === "number" && v !== tb.dims[i]))
          return { verdict: "mismatch", detail: `output ${name} at ${where}: declared ${d.join("x")}, computed ${tb.dims.join("x")}` };
        const va = toF64(ta), vb = toF64(tb);
        let maxAbs = 0, scale = 0, nan = false;
        for (let i = 0; i < va.length; i++) {
          if (Number.isNaN(va[i]!) !== Number.isNaN(vb[i]!)) nan = true;
          scale = Math.max(scale, Math.abs(va[i]!));
          maxAbs = Math.max(maxAbs, Math.abs(va[i]! - vb[i]!));
        }
        if (nan || maxAbs > tol * scale + 1e-6)
          return { verdict: "mismatch", detail: `output ${name} at ${where}: max |Δ| ${maxAbs.toExponential(2)} vs max |ref| ${scale.toExponential(2)}${nan ? " (NaN differs)" : ""}` };
      }
    }
    // The cost bound: at the shape the output declares; a dim it leaves dynamic is taken large
    // (64), where the per-position cost dominates (at tiny sizes padded borders weigh more).
    const costDims = [1, c.channels, ...[2, 3].map((i) => (typeof outDims?.[i] === "number" ? (outDims[i] as number) : c.dynamicSpatial ? 64 : i === 2 ? c.dimValues.H[0]! : c.dimValues.W[0]!))];
    const workIn = work(inModel, costDims), workOut = work(outModel, costDims);
    if (workIn > 0 && workOut > growth * workIn * (1 + 1e-9))
      return { verdict: "costlier", detail: `at x=${costDims.join("x")}: multiply-adds ${workIn} → ${workOut} (${(workOut / workIn).toFixed(2)}x, bound ${growth}x)` };
  } finally {
    await ref.release();
    await cand.release();
  }
  return undefined;
}

/** One case, end to end. Never throws for a tool failure: the verdict says what happened. */
export async function runGraphCase(seed: number, options: RunOptions = {}): Promise<CaseResult> {
  const t0 = performance.now();
  const c = randomGraph(seed, options.features ?? ALL_FEATURES);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `reparam-graph-${seed}-`));
  const inDir = path.join(dir, "in"), outDir = path.join(dir, "out");
  fs.mkdirSync(inDir);
  fs.mkdirSync(outDir);
  const inFile = path.join(inDir, "model.onnx");
  let outFile = path.join(outDir, "optimized.onnx");
  const args: string[] = [];
  const finish = (verdict: Verdict, detail: string): CaseResult => {
    if (!options.keep && !FAILURES.includes(verdict)) fs.rmSync(dir, { recursive: true, force: true });
    const tags = [c.dynamicSpatial && "dyn", c.float16 && "fp16", c.externalData && "ext", c.hasCond && "if", c.fault].filter((t): t is string => !!t);
    return { seed, tags, verdict, detail: FAILURES.includes(verdict) ? `${detail} [files: ${dir}]` : detail, args, ops: c.ops, ms: performance.now() - t0 };
  };
  try {
    if (c.externalData) {
      // Weights in "weights.data" (not "model.onnx.data"), so that an output named "weights" would overwrite them.
      saveModel(c.model, path.join(inDir, "weights"), { externalData: true, externalThreshold: 100 });
      fs.renameSync(path.join(inDir, "weights"), inFile);
    } else saveModel(c.model, inFile);
    if (c.fault === "truncated-data") {
      const data = path.join(inDir, "weights.data");
      const size = fs.statSync(data).size;
      if (size > 0) fs.truncateSync(data, Math.floor(size / 2));
      else c.fault = undefined; // every tensor is inline: nothing to truncate
    }
    if (c.fault === "alias-data") outFile = path.join(inDir, "weights");
    if (c.fault === "missing-out-dir") outFile = path.join(dir, "no-such-folder", "optimized.onnx");
    args.push("optimize", inFile, outFile, ...c.flags);
    if (c.shapeOverride) args.push("--shape", `x=${c.shapeOverride.join("x")}`);
    if (c.noVerify) args.push("--no-verify");
    if (c.outputExternalData || c.fault === "alias-data") args.push("--external-data");
    const before = hashes(inDir);
    const run = options.spawn ? spawnCli(args, dir) : await inProcessCli(args, options.cliModule);
    // The output itself may be in the input's folder (alias-data puts it there on purpose).
    const own = new Set([path.relative(inDir, outFile), path.relative(inDir, outFile) + ".data"]);
    const diff = changed(before, hashes(inDir)).filter((d) => !(d.endsWith(" appeared") && own.has(d.slice(0, -" appeared".length))));
    const errLines = run.stderr.split("\n").filter((l) => l.trim() && !/^\s*\[|^\r/.test(l));
    if (diff.length) return finish("modified-input", `exit ${run.code}; ${diff.join(", ")}; stderr: ${run.stderr.trim().split("\n")[0]}`);
    if (run.code !== 0 && run.code !== 1 && run.code !== 2) return finish("crash", `exit ${run.code}: ${run.stderr.trim().slice(0, 600)}`);
    if (/^\s+at .*:\d+/m.test(run.stderr)) return finish("crash", `stack trace on stderr: ${run.stderr.trim().slice(0, 400)}`);
    const error = errLines.find((l) => l.startsWith("reparam-onnx: error:")) ?? "";
    if (c.fault) {
      const right = c.fault === "truncated-data" ? "weights.data" : c.fault === "missing-out-dir" ? "no-such-folder" : "weights";
      if (run.code === 0) {
        if (c.fault !== "alias-data") return finish("missed-fault", `${c.fault}: exit 0`);
      } else if (run.code === 2) {
        return error.includes(right) ? finish("refused-fault", `${c.fault}: ${error}`) : finish("wrong-file", `${c.fault}: the error should name ${right}: ${error || run.stderr.trim()}`);
      } else return finish("wrong-file", `${c.fault}: exit ${run.code}, expected a refusal (2): ${error || run.stderr.trim()}`);
    }
    if (run.code === 2) return finish("rejected", error || run.stderr.trim());
    if (run.code === 1) {
      if (fs.existsSync(outFile)) return finish("wrong-file", `exit 1 but ${outFile} was written`);
      if (!error.includes(inFile)) return finish("wrong-file", `exit 1: the error should name ${inFile}: ${error}`);
      // Was the refused model really wrong? The same run without the proof, checked here.
      const unverified = path.join(outDir, "unverified.onnx");
      const again = [...args.slice(0, 2), unverified, ...args.slice(3), "--no-verify"];
      const run2 = options.spawn ? spawnCli(again, dir) : await inProcessCli(again, options.cliModule);
      const why = error.replace(/^reparam-onnx: error: \S+: /, "");
      if (run2.code !== 0) return finish("caught", `${why} (with --no-verify: exit ${run2.code})`);
      const bad = await compare(c, inFile, unverified);
      return bad && bad.verdict !== "costlier" ? finish("caught", `${why}; unverified: ${bad.detail}`) : finish("false-refusal", `${why}; the unverified output is equal at every shape checked here`);
    }
    if (!fs.existsSync(outFile)) return finish("mismatch", "exit 0 but nothing written");
    const leftovers = fs.readdirSync(path.dirname(outFile)).filter((f) => /\.tmp|~$/.test(f));
    if (leftovers.length) return finish("wrong-file", `temporary files left: ${leftovers.join(", ")}`);
    const bad = await compare(c, inFile, outFile);
    if (bad) return finish(bad.verdict, bad.detail);
    return finish("equal", run.stdout.split("\n").find((l) => /rewrite|nodes/.test(l))?.trim() ?? "");
  } catch (e) {
    return finish("crash", `harness: ${(e as Error).stack?.split("\n").slice(0, 3).join(" | ")}`);
  }
}

/** Run seeds first..first+count-1; prints each failure as it happens; returns the tally. */
export async function runGraphFuzz(first: number, count: number, options: RunOptions & { log?: (s: string) => void; progressEvery?: number } = {}): Promise<{ tally: Record<Verdict, number>; failures: CaseResult[]; seconds: number }> {
  const log = options.log ?? ((s: string) => console.log(s));
  const tally = Object.fromEntries(["equal", "caught", "refused-fault", ...FAILURES].map((v) => [v, 0])) as Record<Verdict, number>;
  const failures: CaseResult[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const r = await runGraphCase(first + i, options);
    tally[r.verdict]++;
    if (FAILURES.includes(r.verdict)) {
      failures.push(r);
      log(`${r.verdict.toUpperCase()} seed ${r.seed} [${r.tags.join(" ")}]: ${r.detail}\n  args: ${r.args.slice(3).join(" ") || "(none)"}\n  ops: ${r.ops.join(" · ")}`);
    } else if (r.verdict === "caught") log(`caught seed ${r.seed} [${r.tags.join(" ")}]: ${r.detail}`);
    if (options.progressEvery && (i + 1) % options.progressEvery === 0)
      process.stderr.write(`${i + 1}/${count} (${((performance.now() - t0) / 1000).toFixed(0)} s) ${JSON.stringify(tally)}\n`);
  }
  return { tally, failures, seconds: (performance.now() - t0) / 1000 };
}
