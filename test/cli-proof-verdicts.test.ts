// Verdicts of the proof through the real binary: a model that cannot be proven on these inputs is
// not blamed on a rewrite; a candidate onnxruntime cannot run is a failed rewrite; bad values and
// broken pipes end in one line.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GraphBuilder } from "../src/ir/builder.js";
import { saveModel } from "../src/ir/io.js";
import { writeNpy } from "../src/verify/npy.js";
import { writeNpz } from "../src/verify/npz.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-cli-verdicts-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: work, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  if (!fs.existsSync(CLI)) spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT, encoding: "utf8" });
  // Conv + BN (a fold to do), then (· + 1e8) − 1e8: the reference's float32 rounding is most of the output.
  const b = new GraphBuilder(13);
  b.input("x", ["N", 2, "H", "W"]);
  const conv = b.op("Conv", ["x", b.constant("w", [2, 2, 3, 3], Array.from({ length: 36 }, (_, i) => Math.sin(i)))], { pads: [1, 1, 1, 1] });
  const bn = b.op("BatchNormalization", [conv, b.constant("g", [2], [1.5, 0.5]), b.constant("be", [2], [0.1, -0.2]), b.constant("m", [2], [0.3, 0.1]), b.constant("v", [2], [2, 0.5])]);
  const big = b.op("Add", [bn, b.constant("c", [1], [1e8])]);
  b.output(b.op("Sub", [big, b.constant("d", [1], [1e8])], {}, "y"));
  saveModel(b.build(), path.join(work, "noisy.onnx"));
  // y = x / 0: ±Inf or NaN everywhere, and nothing to rewrite.
  const inf = new GraphBuilder(13);
  inf.input("x", [1, 2, 3, 3]);
  inf.output(inf.op("Div", ["x", inf.constant("z", [1], [0])], {}, "y"));
  saveModel(inf.build(), path.join(work, "all_inf.onnx"));
  // Two models with different input names; data files of the wrong type and with an extra name.
  for (const [file, input] of [["a.onnx", "x"], ["b.onnx", "z"]] as const) {
    const m = new GraphBuilder(13);
    m.input(input, [1, 3]);
    m.output(m.op("Relu", [input], {}, "y"));
    saveModel(m.build(), path.join(work, file));
  }
  writeNpy(path.join(work, "x64.npy"), [1, 3], Float64Array.from([1, 2, 3]));
  writeNpz(path.join(work, "extra.npz"), new Map([["x", { dims: [1, 3], dtype: "float32", data: Float32Array.from([1, 2, 3]) }], ["extra", { dims: [1], dtype: "float32", data: Float32Array.from([1]) }]]));
}, 120_000);

describe("proof verdicts", () => {
  it("a model whose reference noise hides everything is not proven, and no rewrite is blamed", () => {
    const r = cli("optimize", "noisy.onnx", "out.onnx");
    expect(r.code).toBe(1);
    const err = r.stderr.trim().split("\n").filter((l) => l.startsWith("reparam-onnx: error"));
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(/noisy\.onnx: the model cannot be proven on these inputs, output '[^']+': the reference's own float32 rounding noise is .*% of this output on every input set/);
    expect(err[0]).toMatch(/--input NAME=FILE\.npy.*--atol\/--rtol/);
    expect(r.stderr + r.stdout).not.toMatch(/changes the outputs|skip-failing|finding the rewrite/);
    expect(fs.existsSync(path.join(work, "out.onnx"))).toBe(false);
    const v = cli("verify", "noisy.onnx", "noisy.onnx", "--json");
    expect(v.code).toBe(1);
    expect(JSON.parse(v.stdout)).toMatchObject({ ok: false, inconclusive: true });
    expect(v.stderr).toMatch(/cannot be proven on these inputs/);
  });

  it("a model whose outputs are NaN/Inf everywhere: one line, exit 1, no crash (also with --json)", () => {
    for (const json of [[], ["--json"]]) {
      const r = cli("optimize", "all_inf.onnx", "out.onnx", ...json);
      expect(r.code).toBe(1);
      expect(r.stderr).not.toMatch(/TypeError|    at /);
      expect(r.stderr).toMatch(/^reparam-onnx: error: all_inf\.onnx: the model cannot be proven on these inputs, output '[^']+': the reference output is NaN\/Inf everywhere/m);
      if (json.length) expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, culprit: null });
    }
  });

  it("errors about given data or a candidate name the file", () => {
    const npy = cli("verify", "a.onnx", "a.onnx", "--input", "x=x64.npy");
    expect(npy.code).toBe(2);
    expect(npy.stderr).toMatch(/^reparam-onnx: error: x64\.npy: input 'x': the given data is float64, the model expects float32$/m);
    const npz = cli("verify", "a.onnx", "a.onnx", "--input", "extra.npz");
    expect(npz.code).toBe(2);
    expect(npz.stderr).toMatch(/^reparam-onnx: error: extra\.npz: data for 'extra', which is not an input of the model/m);
    const cand = cli("verify", "a.onnx", "b.onnx");
    expect(cand.stderr).toMatch(/^reparam-onnx: error: b\.onnx: its inputs differ from the reference's \(a\.onnx\): missing 'x'; extra 'z'$/m);
  });

  it("--shape with no elements or too many is a one-line usage error", () => {
    for (const shape of ["x=0x2x8x8", "x=1x2x99999999x99999999"]) {
      const r = cli("optimize", "noisy.onnx", "out.onnx", "--shape", shape);
      expect(r.code).toBe(2);
      expect(r.stderr).not.toMatch(/RangeError|    at /);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/has no elements: a proof needs every dim ≥ 1|elements: verify generates at most/);
    }
  });
});

describe("rewrite records of unnamed nodes", () => {
  it("show opType(first output), not ''", async () => {
    const { optimize } = await import("../src/app/optimize.js");
    const b = new GraphBuilder(13);
    b.input("x", [1, 2, 4, 4]);
    const conv = b.op("Conv", ["x", b.constant("w", [2, 2, 3, 3], Array.from({ length: 36 }, (_, i) => Math.cos(i)))], { pads: [1, 1, 1, 1] });
    b.output(b.op("BatchNormalization", [conv, b.constant("g", [2], [1.5, 0.5]), b.constant("be", [2], [0.1, -0.2]), b.constant("m", [2], [0.3, 0.1]), b.constant("v", [2], [2, 0.5])]));
    const m = b.build();
    for (const n of m.graph.nodes) n.name = "";
    const { report } = optimize(m);
    expect(report.rewrites.length).toBeGreaterThan(0);
    for (const r of report.rewrites) {
      expect(r.node).not.toBe("");
      for (const x of r.removed) expect(x.name).toMatch(/^\w+\(.+\)$/);
    }
  });
});

describe("a candidate onnxruntime cannot run is a failed rewrite, not bad input", () => {
  it("bisection names the rewrite and --skip-failing leaves it out", async () => {
    const { optimize } = await import("../src/app/optimize.js");
    const { findCulprit, skipFailing } = await import("../src/app/bisect.js");
    const { verifyModels } = await import("../src/verify/verify.js");
    const { Node } = await import("../src/ir/graph.js");
    const { Tensor } = await import("../src/ir/tensor.js");
    const { DataType } = await import("../src/ir/dtype.js");
    const b = new GraphBuilder(13);
    b.input("x", [1, 6]);
    b.output(b.op("Abs", [b.op("Relu", ["x"], {}, "r")], {}, "a"));
    const model = b.build();
    // A broken rule: Relu → Reshape to [4, 4] (6 values: onnxruntime fails at run time); an exact one: Abs → Abs.
    const rewriteTo = (op: string, broken: boolean) => ({
      name: broken ? "broken-reshape" : "same-abs", description: "test", rootOps: [op], benefit: broken ? 2 : 1,
      match: (root: InstanceType<typeof Node>) => (["r", "a"].includes(root.name) ? { anchor: root, remove: [root] } : { refused: "made by a rewrite", quiet: true }),
      rewrite: (m: { anchor: InstanceType<typeof Node> }, ctx: { uniqueName(base: string): string }) => {
        if (!broken) return { add: [new Node(ctx.uniqueName("abs2"), "Abs", [...m.anchor.inputs], [...m.anchor.outputs], [])], summary: "Abs again" };
        const shape = ctx.uniqueName("shape");
        return {
          add: [new Node(ctx.uniqueName("reshape"), "Reshape", [m.anchor.inputs[0]!, shape], [...m.anchor.outputs], [])],
          initializers: [Tensor.fromData(shape, DataType.INT64, [2], BigInt64Array.of(4n, 4n))], summary: "Relu as an impossible Reshape",
        };
      },
    });
    const options = { rules: [rewriteTo("Relu", true), rewriteTo("Abs", false)] } as never;
    const { model: out, report } = optimize(model, options);
    expect(report.rewrites.map((r) => r.pass).sort()).toEqual(["broken-reshape", "same-abs"]);
    const v = await verifyModels(model, out, { runs: 1 });
    expect(v.ok).toBe(false);
    expect(v.candidateError).toMatch(/onnxruntime failed to run it/);
    const culprit = await findCulprit(model, report.rewrites, options, { runs: 1 });
    expect(culprit?.rewrite.pass).toBe("broken-reshape");
    const skipped = await skipFailing(model, report, options, { runs: 1 });
    expect(skipped?.verification.ok).toBe(true);
    expect(skipped?.report.rewrites.map((r) => r.pass)).toEqual(["same-abs"]);
  });
});

describe("a reader that closes the pipe early", () => {
  const piped = (cmd: string) => spawnSync("bash", ["-c", `${cmd}; echo "exit=\${PIPESTATUS[0]}" >&2`], { cwd: work, encoding: "utf8", timeout: 60_000 });
  it("--help | head -1: quiet, exit 0", () => {
    const r = piped(`"${process.execPath}" "${CLI}" optimize --help | head -1`);
    expect(r.stdout).toMatch(/^Usage: reparam-onnx optimize/);
    expect(r.stderr).not.toMatch(/EPIPE|    at /);
    expect(r.stderr).toMatch(/exit=0/);
  });
  it("optimize M.onnx - | head -c 10: one line, exit 2", () => {
    const demo = path.join(ROOT, "fixtures", "models", "demo_repvgg_net.onnx");
    const r = piped(`"${process.execPath}" "${CLI}" optimize "${demo}" - | head -c 10 > /dev/null`);
    expect(r.stderr).not.toMatch(/    at /);
    expect(r.stderr).toMatch(/^reparam-onnx: error: .*demo_repvgg_net\.onnx: stdout was closed before the whole model was written \(EPIPE\)/m);
    expect(r.stderr).toMatch(/exit=2/);
  });
});
