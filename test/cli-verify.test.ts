// verify as a CI guard, through the real binary: --atol/--rtol, --save-outputs/--load-outputs in
// numpy's .npz, --input FILE.npz, a line per output, the JSON report naming both files.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GraphBuilder } from "../src/ir/builder.js";
import { saveModel } from "../src/ir/io.js";
import { readNpz } from "../src/verify/npz.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");
const NPZ = path.join(ROOT, "fixtures", "npz");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-cli-verify-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** y = a·x + b, x float32 [N, 3] (N dynamic unless `batch` is given). */
function affine(file: string, a: number, b: number, batch: number | string = "N"): void {
  const g = new GraphBuilder(13);
  g.input("x", [batch, 3]);
  const scaled = g.op("Mul", ["x", g.constant("a", [1], [a])]);
  g.output(g.op("Add", [scaled, g.constant("b", [1], [b])], {}, "y"), [batch, 3]);
  const m = g.build();
  // The output is named "y": rename the Add's output.
  const add = m.graph.nodes.at(-1)!;
  add.outputs[0] = "y";
  m.graph.outputs[0]!.name = "y";
  saveModel(m, path.join(work, file));
}

beforeAll(() => {
  const r = spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) console.warn(`tsc exited ${r.status} (files are still emitted):\n${(r.stdout + r.stderr).slice(0, 2000)}`);
  affine("ref.onnx", 2, 1);
  affine("same.onnx", 2, 1);
  affine("near.onnx", 2, 1.001); // every output 1e-3 off
  affine("fixed.onnx", 2, 1, 2);
}, 120_000);

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: work, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("verify as a CI guard", () => {
  it("--atol/--rtol are numpy.isclose's rule; a bad value is refused", () => {
    expect(cli("verify", "ref.onnx", "near.onnx").code).toBe(1); // 1e-3 on outputs ~10: beyond float32's floor
    const loose = cli("verify", "ref.onnx", "near.onnx", "--atol", "2e-3", "--json");
    expect(loose.code).toBe(0);
    const j = JSON.parse(loose.stdout);
    expect(j).toMatchObject({ schema: "reparam-onnx/verify-report/1", criterion: "user", atol: 2e-3, rtol: 0, reference: "ref.onnx", candidate: "near.onnx", ok: true });
    expect(cli("verify", "ref.onnx", "near.onnx", "--atol", "5e-4").code).toBe(1);
    expect(cli("verify", "ref.onnx", "near.onnx", "--rtol", "0.1").code).toBe(0);
    const bad = cli("verify", "ref.onnx", "near.onnx", "--atol", "-1");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--atol '-1': expected a number ≥ 0/);
    // optimize takes them too, and its one-line failure says which output failed and why.
    expect(cli("optimize", "ref.onnx", "opt.onnx", "--atol", "x").code).toBe(2);
    const demo = path.join(ROOT, "fixtures", "models", "demo_repvgg_net.onnx");
    const tight = cli("optimize", demo, "opt.onnx", "--atol", "1e-12");
    expect(tight.code).toBe(1);
    expect(tight.stderr).toMatch(/changes the outputs|beyond tolerance/);
    expect(tight.stderr).toMatch(/output 'output': \d+ element\(s\) outside atol 1e-12 \+ rtol 0·\|ref\|/);
  });

  it("reports each output: name, shapes, max abs, max rel, pass/fail; counts the input sets it ran", () => {
    const r = cli("verify", "ref.onnx", "near.onnx");
    expect(r.stdout).toMatch(/verify \(cpu, 4 input sets at x=1x3, x=3x3\): .* FAILED/);
    expect(r.stdout).toMatch(/output 'y' \[1,3\] \[3,3\]: max abs 1\.\d+e-3, max rel \d\.\d+e-\d+, allowed \d\.\d\de-[67] rel \(float32, noise \d\.\d\de-\d\) FAILED/);
    expect(r.stderr).toMatch(/near\.onnx: outputs differ from ref\.onnx beyond tolerance/);
  });

  it("--save-outputs writes every input set's inputs and A's outputs; --load-outputs checks one model against them", () => {
    const saved = cli("verify", "ref.onnx", "same.onnx", "--save-outputs", "golden.npz", "--json");
    expect(saved.code).toBe(0);
    expect(JSON.parse(saved.stdout)).toMatchObject({ saved: "golden.npz", inputSets: 6 });
    const arrays = readNpz(path.join(work, "golden.npz"));
    expect([...arrays.keys()].sort().slice(0, 4)).toEqual(["inputs/0/x", "inputs/1/x", "inputs/2/x", "inputs/3/x"]);
    expect(arrays.get("inputs/3/x")!.dims).toEqual([3, 3]);
    const x = arrays.get("inputs/0/x")!.data as Float32Array, y = arrays.get("outputs/0/y")!.data as Float32Array;
    expect(y[1]).toBeCloseTo(2 * x[1]! + 1, 5);

    const same = cli("verify", "same.onnx", "--load-outputs", "golden.npz", "--json");
    expect(same.code).toBe(0);
    expect(JSON.parse(same.stdout)).toMatchObject({ reference: "golden.npz", candidate: "same.onnx", criterion: "floor", inputSets: 6, ok: true });
    const near = cli("verify", "near.onnx", "--load-outputs", "golden.npz");
    expect(near.code).toBe(1);
    expect(near.stderr).toMatch(/near\.onnx: outputs differ from those stored in golden\.npz/);
    // One model only with --load-outputs; nothing to compare without a second model or a file.
    expect(cli("verify", "ref.onnx", "same.onnx", "--load-outputs", "golden.npz").code).toBe(2);
    expect(cli("verify", "ref.onnx").code).toBe(2);
    // One model and --save-outputs only records.
    const rec = cli("verify", "ref.onnx", "--save-outputs", "rec.npz", "--json");
    expect(rec.code).toBe(0);
    expect(JSON.parse(rec.stdout)).toMatchObject({ schema: "reparam-onnx/verify-record/1", model: "ref.onnx", saved: "rec.npz", inputSets: 6 });
  });

  it("reads numpy's own .npz files: --input FILE.npz, --input NAME=FILE.npz, a compressed golden file with float64 outputs", () => {
    const byName = cli("verify", "fixed.onnx", "fixed.onnx", "--input", path.join(NPZ, "numpy_inputs.npz"), "--json");
    expect(byName.code).toBe(0);
    expect(JSON.parse(byName.stdout)).toMatchObject({ inputSets: 1, shapeSets: [{ x: [2, 3] }] });
    expect(cli("verify", "fixed.onnx", "fixed.onnx", "--input", `x=${path.join(NPZ, "numpy_inputs.npz")}`).code).toBe(0);
    const golden = cli("verify", "fixed.onnx", "--load-outputs", path.join(NPZ, "numpy_golden.npz"), "--json");
    expect(golden.code, golden.stderr).toBe(0);
    expect(JSON.parse(golden.stdout).outputs[0]).toMatchObject({ name: "y", shapes: [[2, 3]], ok: true });
    affine("off.onnx", 2, 1.5, 2);
    expect(cli("verify", "off.onnx", "--load-outputs", path.join(NPZ, "numpy_golden.npz")).code).toBe(1);
    // A file that is not an .npz: one line naming it.
    fs.writeFileSync(path.join(work, "junk.npz"), "not a zip");
    const junk = cli("verify", "fixed.onnx", "fixed.onnx", "--input", "junk.npz");
    expect(junk.code).toBe(2);
    expect(junk.stderr).toMatch(/^reparam-onnx: error: junk\.npz: not a valid \.npz file/);
  });
});
