// The npm package as a user gets it: `npm pack` on a copy of the repository's tracked files (its
// prepack builds dist/), the tarball holds what runs and nothing else, and installed into an empty
// folder it brings the compiler without TensorFlow.js: `npx reparam-onnx optimize` works on the
// bundled example, the API imports, and `train` says how to add the trainer.
import { spawnSync, type SpawnSyncOptions } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "..");
const DEMO = "fixtures/models/demo_repvgg_net.onnx";
const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-package-"));
const repo = path.join(work, "repo"), consumer = path.join(work, "consumer");
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

// The npm running this test (npm test) exports npm_* variables describing this repository: a
// user's shell has none of them. The CUDA download of onnxruntime-node is skipped as README says.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
env.ONNXRUNTIME_NODE_INSTALL = "skip";

function run(cmd: string, args: string[], cwd: string, options: SpawnSyncOptions = {}) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8", timeout: 240_000, ...options });
  return { code: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

let tarball = "";
let packed: string[] = [];

beforeAll(() => {
  // A clean checkout: the files git tracks or would track (fixtures only the bundled example), no dist/.
  const tracked = run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT).stdout.split("\0").filter(Boolean);
  for (const f of tracked.filter((f) => !f.startsWith("fixtures/") || f === DEMO)) {
    if (!fs.existsSync(path.join(ROOT, f))) continue; // deleted in the working tree
    fs.mkdirSync(path.dirname(path.join(repo, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(repo, f));
  }
  fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(repo, "node_modules"), "dir");
  expect(fs.existsSync(path.join(repo, "dist"))).toBe(false);
  const r = run("npm", ["pack", "--json", "--pack-destination", work], repo);
  expect(r.code, r.stderr).toBe(0);
  const info = JSON.parse(r.stdout.slice(r.stdout.indexOf("["))) as { filename: string; files: { path: string }[] }[];
  tarball = path.join(work, info[0]!.filename);
  packed = info[0]!.files.map((f) => f.path);
  fs.mkdirSync(consumer);
  fs.writeFileSync(path.join(consumer, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", private: true }));
}, 300_000);

describe("npm pack", () => {
  it("ships dist, README, LICENSE, the JSON schemas and the bundled example; no sources, tests, bench or other fixtures", () => {
    for (const f of ["package.json", "README.md", "LICENSE", "dist/src/cli/main.js", "dist/src/index.js", "dist/src/index.d.ts", DEMO, "docs/schema/optimize-report.1.schema.json"]) expect(packed, f).toContain(f);
    expect(packed.filter((f) => /^(test|bench|src|examples)\//.test(f) || f.startsWith("dist/bench") || f.endsWith(".map") || f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    expect(packed.filter((f) => f.startsWith("fixtures/"))).toEqual([DEMO]);
    expect(fs.statSync(tarball).size).toBeLessThan(2_000_000);
  });

  it("installs into an empty folder without TensorFlow.js; the bin optimizes the bundled example; the API imports", () => {
    const i = run("npm", ["install", "--omit=dev", "--prefer-offline", "--no-audit", "--no-fund", tarball], consumer);
    expect(i.code, i.stderr).toBe(0);
    expect(fs.existsSync(path.join(consumer, "node_modules", "reparam-onnx", "dist", "src", "cli", "main.js"))).toBe(true);
    expect(fs.existsSync(path.join(consumer, "node_modules", "@tensorflow")), "TensorFlow.js installed").toBe(false);
    const example = path.join("node_modules", "reparam-onnx", DEMO);
    const o = run("npx", ["reparam-onnx", "optimize", example, "deploy.onnx"], consumer);
    expect(o.code, o.stderr).toBe(0);
    expect(o.stdout).toMatch(/verify \(cpu, .*\) OK/);
    expect(o.stdout).toMatch(/│ Conv +│ +10 │ +5 │/);
    expect(fs.statSync(path.join(consumer, "deploy.onnx")).size).toBeGreaterThan(100_000);
    const v = run("npx", ["reparam-onnx", "--version"], consumer);
    expect(v.stdout).toMatch(/^reparam-onnx \d+\.\d+\.\d+ \(onnxruntime-node \d+\.\d+\.\d+, Node v/);
    const api = run(process.execPath, ["--input-type=module", "-e", "const m = await import('reparam-onnx'); const { model } = m.optimize(m.loadModel('deploy.onnx')); console.log(typeof m.verifyModels, model.graph.nodes.length)"], consumer);
    expect(api.code, api.stderr).toBe(0);
    expect(api.stdout.trim()).toBe("function 13");
    // train without the trainer: one line saying how to add it.
    const t = run("npx", ["reparam-onnx", "train", "--data", "synthetic:64"], consumer);
    expect(t.code).toBe(2);
    expect(t.stderr.trim()).toBe("reparam-onnx: error: train needs TensorFlow.js, which is not installed (reparam-onnx installs the compiler alone); add the trainer with: npm install @tensorflow/tfjs@^4.22.0 @tensorflow/tfjs-backend-wasm@^4.22.0");
  }, 300_000);
});
