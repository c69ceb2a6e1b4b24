// Issue 11, class 3: an output file may be a file the input model reads (its external data under
// the output's data name, through a symlink, a hard link, or the same path spelled twice). Such a
// write is refused with one line, exit 2, nothing written; the input model and every file it
// reads stay byte-identical. Ordinary writes still go through temp files and renames.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GraphBuilder } from "../src/ir/builder.js";
import { UsageError } from "../src/ir/errors.js";
import { checkOutputAliasing, loadModel, saveModel } from "../src/ir/io.js";
import { optimize } from "../src/app/optimize.js";
import { randomArray, rng } from "./helpers/random.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-alias-"));
const at = (...p: string[]) => path.join(work, ...p);
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** A Conv+BN model whose weights (over the 1 KiB threshold) go to external data. */
function model() {
  const b = new GraphBuilder(13);
  const r = rng(3);
  const x = b.input("x", [1, 8, 6, 6]);
  const w = b.constant("w", [8, 8, 3, 3], randomArray(r, 576));
  const c = b.op("Conv", [x, w], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
  const ch = (f: (v: number) => number) => randomArray(r, 8).map(f);
  const y = b.op("BatchNormalization", [c, b.constant("g", [8], ch((v) => 1 + v / 2)), b.constant("b", [8], ch((v) => v)), b.constant("m", [8], ch((v) => v)), b.constant("v", [8], ch((v) => 1.5 + v / 2))], { epsilon: 1e-5 });
  b.output(y);
  return b.build();
}

/** `name` in folder `dir`, its weights in `dataName` beside it. */
function writeInput(dir: string, name: string, dataName: string): void {
  fs.mkdirSync(at(dir), { recursive: true });
  // saveModel names the data file after the model: write under the data file's stem, then rename.
  const stem = dataName.replace(/\.data$/, "");
  saveModel(model(), at(dir, stem), { externalData: true });
  fs.renameSync(at(dir, stem), at(dir, name));
}

const hash = (f: string) => createHash("sha256").update(fs.readFileSync(f)).digest("hex");
/** Hashes of every file in `dir` (following nothing: links are listed by their own bytes). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(at(dir)).sort()) {
    const p = at(dir, f);
    const st = fs.lstatSync(p);
    out[f] = st.isSymbolicLink() ? `link → ${fs.readlinkSync(p)}` : hash(p);
  }
  return out;
}

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: work, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  const r = spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) console.warn(`tsc exited ${r.status}:\n${(r.stdout + r.stderr).slice(0, 2000)}`);
}, 120_000);

describe("an output that is a file the input reads is refused", () => {
  it("CLI: optimize in.onnx out.onnx --external-data when in.onnx's weights live in out.onnx.data", () => {
    writeInput("a", "in.onnx", "out.onnx.data");
    const before = snapshot("a");
    const r = cli("optimize", "a/in.onnx", "a/out.onnx", "--external-data", "--no-verify");
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual([`reparam-onnx: error: a/out.onnx.data: is external data the input model reads (${at("a", "out.onnx.data")}); write the output elsewhere`]);
    expect(snapshot("a")).toEqual(before);
    expect(fs.existsSync(at("a", "out.onnx"))).toBe(false);
  });

  it("CLI: the output model reached through a symlinked folder and '..' is the input", () => {
    writeInput("b", "in.onnx", "in.onnx.data");
    fs.symlinkSync(at("b"), at("b-link"));
    const before = snapshot("b");
    const r = cli("optimize", "b/in.onnx", "b-link/../b-link/in.onnx", "--no-verify");
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/in\.onnx: .*input .*write the .*elsewhere/);
    expect(snapshot("b")).toEqual(before);
  });

  const cases: [string, (dir: string) => string][] = [
    ["the output's data file is a symlink to the input's data", (d) => (fs.symlinkSync("in.onnx.data", at(d, "out.onnx.data")), "out.onnx")],
    ["the input's data file is a symlink to the output's data file", (d) => {
      fs.renameSync(at(d, "in.onnx.data"), at(d, "out.onnx.data"));
      fs.symlinkSync("out.onnx.data", at(d, "in.onnx.data"));
      return "out.onnx";
    }],
    ["the output's data file is a hard link of the input's data", (d) => (fs.linkSync(at(d, "in.onnx.data"), at(d, "out.onnx.data")), "out.onnx")],
    ["the output model is a hard link of the input model", (d) => (fs.linkSync(at(d, "in.onnx"), at(d, "copy.onnx")), "copy.onnx")],
    ["the output model is a symlink to the input model", (d) => (fs.symlinkSync("in.onnx", at(d, "link.onnx")), "link.onnx")],
    ["the output model is the input's data file", () => "in.onnx.data"],
  ];
  for (const [i, [what, arrange]] of cases.entries())
    it(`saveModel: ${what}`, () => {
      const dir = `c${i}`;
      writeInput(dir, "in.onnx", "in.onnx.data");
      const out = arrange(dir);
      const before = snapshot(dir);
      const loaded = loadModel(at(dir, "in.onnx"));
      const optimized = optimize(loaded).model;
      const options = { externalData: true };
      expect(() => checkOutputAliasing(optimized, at(dir, out), options)).toThrow(UsageError);
      expect(() => saveModel(optimized, at(dir, out), options)).toThrow(/write the output elsewhere$/);
      expect(snapshot(dir)).toEqual(before);
      // Still loadable and the same bytes it had: nothing it reads was replaced.
      expect(loadModel(at(dir, "in.onnx")).graph.nodes.map((n) => n.opType)).toEqual(["Conv", "BatchNormalization"]);
    });

  it("a different output beside the input is written (model and data through temp files), the input untouched", () => {
    writeInput("d", "in.onnx", "in.onnx.data");
    const before = snapshot("d");
    const optimized = optimize(loadModel(at("d", "in.onnx"))).model;
    saveModel(optimized, at("d", "out.onnx"), { externalData: true });
    const after = snapshot("d");
    expect({ "in.onnx": after["in.onnx"], "in.onnx.data": after["in.onnx.data"] }).toEqual(before);
    expect(Object.keys(after).sort()).toEqual(["in.onnx", "in.onnx.data", "out.onnx", "out.onnx.data"]);
    expect(loadModel(at("d", "out.onnx")).graph.nodes.map((n) => n.opType)).toEqual(["Conv"]);
  });
});
