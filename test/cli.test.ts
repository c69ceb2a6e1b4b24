// The CLI as users run it: a child process, exit codes, one-line errors, files left on disk.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GraphBuilder } from "../src/ir/builder.js";
import { DataType } from "../src/ir/dtype.js";
import { loadModel, modelToBytes, saveModel } from "../src/ir/io.js";
import { decodeModel, encodeModel, type ModelProto } from "../src/ir/proto.js";
import { Tensor } from "../src/ir/tensor.js";
import { writeNpy } from "../src/verify/npy.js";
import { cudaAvailable } from "../src/verify/verify.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");
const DEMO = path.join(ROOT, "fixtures", "models", "demo_repvgg_net.onnx");
const NEG_RELU = path.join(ROOT, "fixtures", "models", "neg_relu_in_branch_preserve_op13.onnx");

// All relative paths in the cases below are relative to this folder, the CLI's working directory.
const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-cli-"));
const at = (p: string) => path.join(work, p);
const cuda = await cudaAvailable();
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

beforeAll(() => {
  // `npm test` builds first; build anyway so the CLI under test is the current source.
  const r = spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) console.warn(`tsc exited ${r.status} (files are still emitted):\n${(r.stdout + r.stderr).slice(0, 2000)}`);
  expect(fs.existsSync(CLI)).toBe(true);
  makeModels();
}, 120_000);

interface Run { code: number | null; stdout: string; stderr: string }

function cli(...args: string[]): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: work, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The same, without blocking: the bad-input table runs its cases concurrently. */
function cliAsync(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: work, timeout: 60_000 });
    let stdout = "", stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const hash = (file: string) => (fs.existsSync(file) ? createHash("sha256").update(fs.readFileSync(file)).digest("hex") : "absent");
const tempFiles = () => fs.readdirSync(work, { recursive: true }).map(String).filter((f) => f.endsWith(".tmp"));
const noStack = (r: Run) => expect(`${r.stdout}\n${r.stderr}`).not.toMatch(/^\s+at /m);

/** Exactly one line on stderr, the CLI's error prefix, no stack trace. */
function oneLineError(r: Run): string {
  const lines = r.stderr.split("\n");
  expect(lines.at(-1), "stderr ends with a newline").toBe("");
  expect(lines.slice(0, -1), r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^reparam-onnx: error: /);
  noStack(r);
  return lines[0]!;
}

// --- models ---------------------------------------------------------------------------------------

function base(): ModelProto {
  const b = new GraphBuilder(13);
  const x = b.input("x", [1, 2, 4, 4]);
  const w = b.constant("w", [2, 2, 3, 3], Array.from({ length: 36 }, (_, i) => Math.sin(i)));
  const y = b.op("Conv", [x, w], { pads: [1, 1, 1, 1] }, "conv");
  b.output(b.op("Relu", [y], {}, "relu"), [1, 2, 4, 4]);
  return decodeModel(modelToBytes(b.build()));
}

function variant(file: string, edit: (p: ModelProto) => void): void {
  const p = base();
  edit(p);
  fs.writeFileSync(at(file), encodeModel(p));
}

function makeModels(): void {
  fs.writeFileSync(at("good.onnx"), encodeModel(base()));
  fs.writeFileSync(at("text.onnx"), "this is a text file, not an ONNX model\n");
  const demo = fs.readFileSync(DEMO);
  fs.writeFileSync(at("truncated.onnx"), demo.subarray(0, Math.floor(demo.length * 0.6)));
  variant("dangling.onnx", (p) => { p.graph!.node![1]!.input![0] = "ghost"; });
  variant("missing_init.onnx", (p) => { p.graph!.node![0]!.input![1] = "w_missing"; });
  variant("dtype999.onnx", (p) => { p.graph!.initializer![0]!.dataType = 999; });
  variant("complex.onnx", (p) => {
    const t = p.graph!.initializer![0]!;
    t.dataType = DataType.COMPLEX64;
    t.rawData = new Uint8Array(36 * 8);
  });
  variant("size_mismatch.onnx", (p) => { const t = p.graph!.initializer![0]!; t.rawData = t.rawData!.subarray(0, 100); });
  variant("cycle.onnx", (p) => { p.graph!.node![0]!.input![0] = "relu_out"; });
  fs.mkdirSync(at("x"));
  fs.copyFileSync(at("good.onnx"), at("x/in.onnx"));
  fs.writeFileSync(at("a_file"), "not a folder");
  fs.mkdirSync(at("a_dir"));
  fs.copyFileSync(DEMO, at("demo.onnx"));
}

// --- bad input: exit 2, one line naming the file, nothing written, input untouched ---------------

interface BadCase {
  name: string;
  args: string[];
  /** Text the one error line must contain (the file or flag it is about). */
  names: (string | RegExp)[];
  /** Files that must be byte-identical afterwards. */
  inputs?: string[];
  /** Paths that must not exist afterwards. */
  outputs?: string[];
}

const BAD_MODELS: [string, string, RegExp][] = [
  ["missing input file", "missing.onnx", /no such file/],
  ["a text file", "text.onnx", /not a valid ONNX model/],
  ["a truncated protobuf (60% of a fixture)", "truncated.onnx", /not a valid ONNX model/],
  ["a dangling input", "dangling.onnx", /'ghost'/],
  ["a missing initializer", "missing_init.onnx", /'w_missing'/],
  ["an unknown dtype (999)", "dtype999.onnx", /unknown dtype 999/],
  ["a complex64 Conv weight", "complex.onnx", /complex64/],
  ["data size not matching dims", "size_mismatch.onnx", /holds 25 values but its shape \[2,2,3,3\] needs 36/],
  ["a cycle", "cycle.onnx", /cycle/],
];

const CASES: BadCase[] = [
  ...BAD_MODELS.map(([name, file, why]): BadCase => ({ name: `optimize: ${name}`, args: ["optimize", file, "out.onnx"], names: [file, why], inputs: [file], outputs: ["out.onnx"] })),
  ...BAD_MODELS.filter(([, , why]) => !/complex64/.test(why.source)).map(([name, file, why]): BadCase => ({ name: `inspect: ${name}`, args: ["inspect", file], names: [file, why], inputs: [file] })),
  ...BAD_MODELS.slice(0, 4).map(([name, file, why]): BadCase => ({ name: `verify: ${name}`, args: ["verify", "good.onnx", file], names: [file, why], inputs: ["good.onnx", file] })),
  { name: "output folder does not exist", args: ["optimize", "good.onnx", "no_such_dir/out.onnx"], names: ["no_such_dir/out.onnx", /does not exist/], inputs: ["good.onnx"], outputs: ["no_such_dir"] },
  { name: "output's parent is a regular file", args: ["optimize", "good.onnx", "a_file/out.onnx"], names: ["a_file/out.onnx", /not a folder/], inputs: ["good.onnx", "a_file"] },
  { name: "output is a folder", args: ["optimize", "good.onnx", "a_dir"], names: ["a_dir", /is a directory/], inputs: ["good.onnx"], outputs: ["a_dir/good.onnx"] },
  { name: "output equals input", args: ["optimize", "x/in.onnx", "x/in.onnx"], names: ["x/in.onnx", /output is the input/], inputs: ["x/in.onnx"] },
  { name: "output equals input, spelled differently", args: ["optimize", "x/in.onnx", "./x/../x/in.onnx"], names: ["./x/../x/in.onnx", /output is the input/], inputs: ["x/in.onnx"] },
  { name: "output equals input, absolute vs relative", args: ["optimize", "x/in.onnx", at("x/in.onnx")], names: [/output is the input/], inputs: ["x/in.onnx"] },
  { name: "--runs abc", args: ["optimize", "good.onnx", "out.onnx", "--runs", "abc"], names: ["--runs 'abc'"], inputs: ["good.onnx"], outputs: ["out.onnx"] },
  { name: "--runs abc with --no-verify (checked even when unused)", args: ["optimize", "good.onnx", "out.onnx", "--no-verify", "--runs", "abc"], names: ["--runs 'abc'"], inputs: ["good.onnx"], outputs: ["out.onnx"] },
  { name: "--tolerance=-1", args: ["optimize", "good.onnx", "out.onnx", "--tolerance=-1"], names: ["--tolerance '-1'", /positive number/], inputs: ["good.onnx"], outputs: ["out.onnx"] },
  // The word after a flag that takes a value is its value, even when it starts with '-'.
  { name: "--tolerance -1", args: ["optimize", "good.onnx", "out.onnx", "--tolerance", "-1"], names: ["--tolerance '-1'", /positive number/], inputs: ["good.onnx"], outputs: ["out.onnx"] },
  { name: "verify --runs 0", args: ["verify", "good.onnx", "good.onnx", "--runs", "0"], names: ["--runs '0'"], inputs: ["good.onnx"] },
  { name: "unknown flag", args: ["optimize", "good.onnx", "out.onnx", "--bogus"], names: ["--bogus"], inputs: ["good.onnx"], outputs: ["out.onnx"] },
  { name: "--provider tpu", args: ["optimize", "good.onnx", "out.onnx", "--provider", "tpu"], names: ["--provider 'tpu'"], inputs: ["good.onnx"], outputs: ["out.onnx"] },
  { name: "malformed --shape", args: ["optimize", "good.onnx", "out.onnx", "--shape", "x=1xfoo"], names: ["--shape 'x=1xfoo'"], inputs: ["good.onnx"], outputs: ["out.onnx"] },
  { name: "verify --input with a missing .npy", args: ["verify", "good.onnx", "good.onnx", "--input", "x=nope.npy"], names: ["nope.npy"], inputs: ["good.onnx"] },
  { name: "verify --input with a non-.npy file", args: ["verify", "good.onnx", "good.onnx", "--input", "x=text.onnx"], names: ["text.onnx", /\.npy/], inputs: ["good.onnx", "text.onnx"] },
];

describe.concurrent("bad input: exit 2, one line, nothing written", () => {
  it("the table is not empty and its inputs exist", () => {
    expect(CASES.length).toBeGreaterThan(30);
    for (const c of CASES) for (const f of c.inputs ?? []) if (f !== "missing.onnx") expect(fs.existsSync(at(f)), f).toBe(true);
  });

  CASES.forEach((shared, i) => {
    // Cases run at once: each gets its own output name.
    const own = (s: string) => s.replace(/^out\.onnx$/, `out_${i}.onnx`);
    const c = { ...shared, args: shared.args.map(own), outputs: shared.outputs?.map(own) };
    it(c.name, async () => {
      const before = (c.inputs ?? []).map((f) => hash(at(f)));
      for (const o of c.outputs ?? []) expect(fs.existsSync(at(o)), `${o} before`).toBe(false);
      try {
        const r = await cliAsync(...c.args);
        expect(r.code, r.stderr).toBe(2);
        const line = oneLineError(r);
        for (const n of c.names) typeof n === "string" ? expect(line).toContain(n) : expect(line).toMatch(n);
        for (const o of c.outputs ?? []) expect(fs.existsSync(at(o)), `${o} after`).toBe(false);
        expect((c.inputs ?? []).map((f) => hash(at(f)))).toEqual(before);
        expect(tempFiles()).toEqual([]);
      } finally {
        // A failing case must not leave files that make the next cases fail too.
        for (const o of c.outputs ?? []) fs.rmSync(at(o), { recursive: true, force: true });
      }
    });
  });

  if (cuda.ok) console.log(`skipping '--provider cuda where the CUDA provider is missing': the CUDA provider is available here (${cuda.reason})`);
  it.skipIf(cuda.ok)("--provider cuda where the CUDA provider is missing", async () => {
    const before = hash(at("good.onnx"));
    const r = await cliAsync("optimize", "good.onnx", "out_cuda.onnx", "--provider", "cuda");
    expect(r.code).toBe(2);
    expect(oneLineError(r)).toContain("--onnxruntime-node-install=cuda12");
    expect(fs.existsSync(at("out_cuda.onnx"))).toBe(false);
    expect(hash(at("good.onnx"))).toBe(before);
  });
});

// --- the happy paths -----------------------------------------------------------------------------

describe("optimize", () => {
  it("writes a folded model (exit 0) and says what it did", () => {
    const r = cli("optimize", "demo.onnx", "demo_out.onnx");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/verify \(cpu, .*\) OK/);
    expect(r.stdout).toContain("wrote demo_out.onnx");
    const before = loadModel(at("demo.onnx")), after = loadModel(at("demo_out.onnx"));
    expect(after.graph.nodes.length).toBeLessThan(before.graph.nodes.length);
    expect(after.graph.nodes.some((n) => n.opType === "BatchNormalization")).toBe(false);
    expect(before.graph.nodes.some((n) => n.opType === "BatchNormalization")).toBe(true);
    expect(tempFiles()).toEqual([]);
  });

  it("--json: report before/after ops, verification maxRel and timings", () => {
    const r = cli("optimize", "demo.onnx", "demo_json.onnx", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.ok).toBe(true);
    expect(j.output).toBe("demo_json.onnx");
    expect(j.report.before.ops.BatchNormalization).toBeGreaterThan(0);
    expect(j.report.after.ops.BatchNormalization ?? 0).toBe(0);
    expect(j.report.after.ops.Conv).toBeLessThan(j.report.before.ops.Conv);
    expect(j.verified).toBe(true);
    expect(j.verification.ok).toBe(true);
    expect(typeof j.verification.maxRel).toBe("number");
    expect(j.verification.maxRel).toBeLessThan(j.verification.tolerance);
    for (const k of ["loadMs", "passesMs", "verifyMs", "writeMs"]) expect(j.timings[k], k).toBeGreaterThanOrEqual(0);
    expect(j.timings.verifyMs).toBeGreaterThan(0);
    expect(fs.existsSync(at("demo_json.onnx"))).toBe(true);
  });

  it("--no-verify says so", () => {
    const r = cli("optimize", "demo.onnx", "demo_nv.onnx", "--no-verify");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("verification skipped (--no-verify)");
    expect(r.stdout).toContain("NOT proven");
    const j = JSON.parse(cli("optimize", "demo.onnx", "demo_nv2.onnx", "--no-verify", "--json").stdout);
    expect(j.verified).toBe(false);
    expect(j.verification).toBeNull();
    expect(fs.existsSync(at("demo_nv2.onnx"))).toBe(true);
  });

  it("--external-data writes <out>.data beside the model", () => {
    const r = cli("optimize", "demo.onnx", "demo_ext.onnx", "--external-data");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/bytes external data/);
    expect(fs.statSync(at("demo_ext.onnx.data")).size).toBeGreaterThan(100_000);
    expect(cli("verify", "demo.onnx", "demo_ext.onnx").code).toBe(0);
  });
});

describe("atomicity", () => {
  it("when verification fails, the output path does not exist afterwards", () => {
    // No fold is exact in float32: a tolerance of 1e-30 fails verification.
    const r = cli("optimize", "demo.onnx", "failed.onnx", "--tolerance", "1e-30");
    expect(r.code).toBe(1);
    // The error names the rewrite responsible (found by bisection) and says nothing was written.
    expect(oneLineError(r)).toMatch(/demo\.onnx: rewrite '.+' \[collapse-linear-regions: .+\] \(max rel .+\) changes the outputs; nothing written/);
    expect(r.stdout).toContain("verification FAILED: nothing written");
    expect(fs.existsSync(at("failed.onnx"))).toBe(false);
    expect(tempFiles()).toEqual([]);
  });

  it("an existing output file is intact after a failed verification and after bad input", () => {
    fs.writeFileSync(at("existing.onnx"), "the old output");
    const r1 = cli("optimize", "demo.onnx", "existing.onnx", "--tolerance", "1e-30");
    expect(r1.code).toBe(1);
    expect(fs.readFileSync(at("existing.onnx"), "utf8")).toBe("the old output");
    const r2 = cli("optimize", "truncated.onnx", "existing.onnx");
    expect(r2.code).toBe(2);
    expect(oneLineError(r2)).toContain("truncated.onnx");
    expect(fs.readFileSync(at("existing.onnx"), "utf8")).toBe("the old output");
    expect(tempFiles()).toEqual([]);
  });

  it("a successful run replaces an existing output", () => {
    fs.writeFileSync(at("replaced.onnx"), "the old output");
    expect(cli("optimize", "demo.onnx", "replaced.onnx", "--no-verify").code).toBe(0);
    expect(loadModel(at("replaced.onnx")).graph.nodes.length).toBeGreaterThan(0);
  });
});

describe("verify", () => {
  let optimized = "";
  beforeAll(() => {
    optimized = "demo_for_verify.onnx";
    expect(cli("optimize", "demo.onnx", optimized, "--no-verify").code).toBe(0);
    // A perturbed copy: one weight of the first Conv changed by 0.5, through the IR.
    const m = loadModel(at("demo.onnx"));
    const conv = m.graph.nodes.find((n) => n.opType === "Conv")!;
    const w = m.graph.initializers.get(conv.inputs[1]!)!;
    const values = w.toFloat64();
    values[0]! += 0.5;
    m.graph.initializers.set(w.name, Tensor.fromFloat64(w.name, w.dtype, w.dims, values));
    saveModel(m, at("perturbed.onnx"));
  });

  it("a model vs its optimized output: exit 0", () => {
    const r = cli("verify", "demo.onnx", optimized);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/OK/);
    expect(r.stderr).toBe("");
  });

  it("a perturbed model: exit 1 with one line naming it", () => {
    const r = cli("verify", "demo.onnx", "perturbed.onnx");
    expect(r.code).toBe(1);
    expect(oneLineError(r)).toContain("perturbed.onnx");
    expect(r.stdout).toMatch(/FAILED/);
  });

  it("--input NAME=FILE.npy feeds that array", () => {
    const data = Float32Array.from({ length: 2 * 3 * 32 * 32 }, (_, i) => Math.sin(i * 0.37));
    writeNpy(at("input.npy"), [2, 3, 32, 32], data);
    const r = cli("verify", "demo.onnx", optimized, "--input", "input=input.npy", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.ok).toBe(true);
    // Batch 2 comes from the file: without it every symbolic dim is 1.
    expect(j.inputShapes.input).toEqual([2, 3, 32, 32]);
    // The same feed exposes the perturbed model.
    expect(cli("verify", "demo.onnx", "perturbed.onnx", "--input", "input=input.npy").code).toBe(1);
  });
});

describe("inspect", () => {
  it("--explain says why a region is left alone (a Relu inside a branch)", () => {
    const r = cli("inspect", NEG_RELU, "--explain");
    expect(r.code, r.stderr).toBe(0);
    const reasons = r.stdout.split("\n").filter((l) => l.includes("left alone"));
    expect(reasons.length).toBeGreaterThan(0);
    expect(reasons.join("\n")).toMatch(/Relu/);
    // Without --explain, only a count and a pointer to the flag.
    const plain = cli("inspect", NEG_RELU);
    expect(plain.stdout).toContain("--explain says why");
    expect(plain.stdout).not.toMatch(/left alone .*Relu/);
  });
});

describe("a wrong rewrite is named, and --skip-failing keeps the others", () => {
  const NEG = new URL("../fixtures/models/comp_neg_zero_pad_bn_preserve_op13.onnx", import.meta.url).pathname;
  it("names the culprit (exit 1, nothing written), then writes a verified model without it", () => {
    fs.copyFileSync(NEG, at("neg.onnx"));
    // The unsafe switch makes the naive border fold on purpose.
    const r = cli("optimize", "neg.onnx", "neg_out.onnx", "--unsafe-ignore-border-rule");
    expect(r.code).toBe(1);
    expect(oneLineError(r)).toMatch(/neg\.onnx: rewrite '.+' .+ changes the outputs; nothing written \(--skip-failing writes the model without it\)/);
    expect(fs.existsSync(at("neg_out.onnx"))).toBe(false);
    const s = cli("optimize", "neg.onnx", "neg_out.onnx", "--unsafe-ignore-border-rule", "--skip-failing", "--json");
    expect(s.code).toBe(0);
    const out = JSON.parse(s.stdout) as { ok: boolean; skipped: { node: string; maxRel: number }[]; verification: { ok: boolean } };
    expect(out.ok).toBe(true);
    expect(out.verification.ok).toBe(true);
    expect(out.skipped.length).toBeGreaterThan(0);
    expect(out.skipped[0]!.maxRel).toBeGreaterThan(1e-4);
    expect(fs.existsSync(at("neg_out.onnx"))).toBe(true);
  });
});

describe("atomic output under a kill", () => {
  it("killing the process mid-write leaves the previous output file intact (never a partial model)", async () => {
    const { spawn } = await import("node:child_process");
    fs.copyFileSync(DEMO, at("kill_in.onnx"));
    fs.writeFileSync(at("kill_out.onnx"), "previous output");
    const child = spawn(process.execPath, [CLI, "optimize", "kill_in.onnx", "kill_out.onnx", "--no-verify"], {
      cwd: at("."), env: { ...process.env, REPARAM_ONNX_TEST_WRITE_DELAY_MS: "5000" }, stdio: "ignore",
    });
    // Wait until the temporary file exists (the write has started), then kill.
    const tmpStarted = () => fs.readdirSync(at(".")).some((f) => f.startsWith(".kill_out.onnx.") && f.endsWith(".tmp"));
    const t0 = Date.now();
    while (!tmpStarted() && Date.now() - t0 < 20000) await new Promise((r) => setTimeout(r, 20));
    expect(tmpStarted()).toBe(true);
    const exited = new Promise((r) => child.on("exit", r));
    child.kill("SIGKILL");
    await exited;
    expect(fs.readFileSync(at("kill_out.onnx"), "utf8")).toBe("previous output");
    // And without a previous file, a killed write leaves no output at all.
    fs.rmSync(at("kill_out.onnx"));
    const again = spawn(process.execPath, [CLI, "optimize", "kill_in.onnx", "kill_out.onnx", "--no-verify"], {
      cwd: at("."), env: { ...process.env, REPARAM_ONNX_TEST_WRITE_DELAY_MS: "5000" }, stdio: "ignore",
    });
    const t1 = Date.now();
    while (!tmpStarted() && Date.now() - t1 < 20000) await new Promise((r) => setTimeout(r, 20));
    const exited2 = new Promise((r) => again.on("exit", r));
    again.kill("SIGKILL");
    await exited2;
    expect(fs.existsSync(at("kill_out.onnx"))).toBe(false);
    for (const f of fs.readdirSync(at("."))) if (f.startsWith(".kill_out.onnx.")) fs.rmSync(at(f));
  });
});
