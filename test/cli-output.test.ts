// What optimize writes and prints, through the real binary: the before → after op table, the model
// on stdout with '-', batch runs with --out-dir, live progress, and metadata_props in the output.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { CLI, cliScratch, DEMO, ROOT } from "./helpers/cli.js";
import { loadModel, modelFromBytes } from "../src/ir/io.js";

const SMALL = path.join(ROOT, "fixtures", "models", "neg_relu_in_branch_preserve_op13.onnx");
const { work, at } = cliScratch("cli-output");

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: work, timeout: 60_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString("utf8") };
}

const metadata = (file: string) => Object.fromEntries((loadModel(file).original.metadataProps ?? []).map((e) => [e.key, e.value]));

describe("optimize's report and output", () => {
  it("prints an op table: one row per op with its count before and after, then the totals", () => {
    const r = cli(["optimize", DEMO, "table.onnx"]);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.toString();
    expect(out).toMatch(/│ op +│ +before │ +after │/);
    expect(out).toMatch(/│ BatchNormalization +│ +12 │ +0 │/);
    expect(out).toMatch(/│ Conv +│ +10 │ +5 │/);
    expect(out).toMatch(/│ Relu +│ +5 │ +5 │/);
    expect(out).toMatch(/│ nodes +│ +37 │ +13 │/);
    expect(out).toMatch(/│ MACs per input +│ +2,089,600 │ +1,880,704 │/);
  });

  it("records what it did in metadata_props: tool version, passes, the verification result", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
    expect(cli(["optimize", DEMO, "meta.onnx"]).code).toBe(0);
    const m = metadata(at("meta.onnx"));
    expect(m["reparam-onnx.version"]).toBe(pkg.version);
    expect(m["reparam-onnx.passes"]).toMatch(/collapse-linear-regions 5/);
    expect(m["reparam-onnx.rewrites"]).toBe("5");
    expect(m["reparam-onnx.verification"]).toMatch(/^OK: onnxruntime-node [\d.]+ cpu, \d+ input sets at input=1x3x32x32, .*max abs .*, max rel .*, calibrated tolerance$/);
    expect(cli(["optimize", DEMO, "meta_nv.onnx", "--no-verify"]).code).toBe(0);
    expect(metadata(at("meta_nv.onnx"))["reparam-onnx.verification"]).toBe("NOT verified (--no-verify)");
    // The input's own entries are kept; the input file is untouched.
    expect(metadata(DEMO)["reparam-onnx.version"]).toBeUndefined();
  });

  it("'-' writes the model to stdout and the report to stderr", () => {
    const r = cli(["optimize", DEMO, "-"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("wrote the model to stdout");
    const m = modelFromBytes(new Uint8Array(r.stdout));
    expect(m.graph.nodes.filter((n) => n.opType === "Conv")).toHaveLength(5);
    expect(fs.existsSync(at("-"))).toBe(false);
    const j = cli(["optimize", DEMO, "-", "--json"]);
    expect(JSON.parse(j.stderr).output).toBe("-");
    // A failed verification writes nothing to stdout.
    const bad = cli(["optimize", DEMO, "-", "--tolerance", "1e-30"]);
    expect(bad.code).toBe(1);
    expect(bad.stdout.length).toBe(0);
    expect(cli(["optimize", DEMO, "-", "--external-data"]).code).toBe(2);
  });

  it("batch: several models and folders with --out-dir, one process, worst exit code", () => {
    fs.mkdirSync(at("models"));
    fs.copyFileSync(DEMO, at("models/demo.onnx"));
    fs.copyFileSync(SMALL, at("models/small.onnx"));
    fs.writeFileSync(at("models/notes.txt"), "not a model");
    fs.copyFileSync(SMALL, at("lone.onnx"));
    const r = cli(["optimize", "models", "lone.onnx", "--out-dir", "deploy"]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readdirSync(at("deploy")).sort()).toEqual(["demo.onnx", "lone.onnx", "small.onnx"]);
    expect(r.stdout.toString()).toContain("3 models → deploy: 3 written, 0 failed verification, 0 bad input");
    const j = JSON.parse(cli(["optimize", "models", "--out-dir", "deploy_json", "--json"]).stdout.toString());
    expect(j.schema).toBe("reparam-onnx/optimize-batch-report/1");
    expect(j.results.map((x: { output: string }) => x.output)).toEqual([path.join("deploy_json", "demo.onnx"), path.join("deploy_json", "small.onnx")]);
    // A broken model is reported and skipped; the others are written; exit 2.
    fs.writeFileSync(at("models/broken.onnx"), "junk");
    const b = cli(["optimize", "models", "--out-dir", "deploy2"]);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/^reparam-onnx: error: models\/broken\.onnx: not a valid ONNX model/m);
    expect(fs.readdirSync(at("deploy2")).sort()).toEqual(["demo.onnx", "small.onnx"]);
    // Two inputs with one name would overwrite each other: refused before any work.
    const clash = cli(["optimize", "models/small.onnx", "deploy/small.onnx", "--out-dir", "deploy3"]);
    expect(clash.code).toBe(2);
    expect(clash.stderr).toMatch(/would be written to deploy3\/small\.onnx/);
    expect(fs.existsSync(at("deploy3/small.onnx"))).toBe(false);
    // Without --out-dir, three files are a usage error.
    expect(cli(["optimize", "a.onnx", "b.onnx", "c.onnx"]).stderr).toMatch(/optimize takes IN\.onnx OUT\.onnx, or one or more models or folders with --out-dir DIR/);
  });

  it("shows the passes' progress (nodes done / total) on stderr when asked", () => {
    const r = cli(["optimize", DEMO, "progress.onnx"], { REPARAM_ONNX_PROGRESS: "1" });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/rewriting \(round 1\): collapse-linear-regions 0\/37 nodes/);
    expect(r.stderr).toMatch(/verifying in onnxruntime \(cpu\)/);
    // Without a terminal (and without the variable) stderr stays clean.
    expect(cli(["optimize", DEMO, "quiet.onnx"]).stderr).toBe("");
  });
});
