// The command line's grammar through the real binary: per-command --help, unknown flags and flags
// of another command refused with exit 2 and a suggestion, --version, the three --shape spellings.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { CLI, cliScratch, DEMO, ROOT } from "./helpers/cli.js";
import { parseShapeSpecs } from "../src/cli/shape-spec.js";

const { work } = cliScratch("cli-args");

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: work, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit 2, exactly one line on stderr with the CLI's prefix, nothing on stdout. */
function usageError(r: ReturnType<typeof cli>): string {
  expect(r.code, r.stderr).toBe(2);
  const lines = r.stderr.split("\n");
  expect(lines.slice(0, -1), r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^reparam-onnx: error: /);
  expect(r.stdout).toBe("");
  return lines[0]!;
}

describe("--shape spellings", () => {
  it("NAME=AxB, onnxsim's NAME:A,B and trtexec's NAME:AxB (also comma-joined) give the same dims", () => {
    expect(parseShapeSpecs(["x=1x3x224x224"])).toEqual({ x: [1, 3, 224, 224] });
    expect(parseShapeSpecs(["x:1,3,224,224"])).toEqual({ x: [1, 3, 224, 224] });
    expect(parseShapeSpecs(["x:1x3x224x224"])).toEqual({ x: [1, 3, 224, 224] });
    expect(parseShapeSpecs(["a:1x3x8x8,b:2x4"])).toEqual({ a: [1, 3, 8, 8], b: [2, 4] });
    expect(parseShapeSpecs(["a:1,3,8,8,b:2,4"])).toEqual({ a: [1, 3, 8, 8], b: [2, 4] });
    expect(parseShapeSpecs(["a=1x2", "b:3,4"])).toEqual({ a: [1, 2], b: [3, 4] });
    expect(parseShapeSpecs(["x=7"])).toEqual({ x: [7] });
    // TensorFlow-style names hold a colon: the name is everything before the last separator.
    expect(parseShapeSpecs(["input_1:0:1,3,8,8"])).toEqual({ "input_1:0": [1, 3, 8, 8] });
    expect(parseShapeSpecs(undefined)).toBeUndefined();
  });

  it("malformed values are refused, naming the value", () => {
    for (const bad of ["x=1xfoo", "x", "=1x2", "x:1,3x4", "x=", "x:1x2,x:1x3"]) expect(() => parseShapeSpecs([bad]), bad).toThrow(`--shape '${bad}'`);
  });

  it("through the binary: the three spellings fix the verified shape", () => {
    for (const spec of ["input=2x3x32x32", "input:2,3,32,32", "input:2x3x32x32"]) {
      const r = cli("verify", DEMO, DEMO, "--shape", spec, "--runs", "1", "--json");
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).inputShapes.input, spec).toEqual([2, 3, 32, 32]);
    }
  });
});

describe("help", () => {
  it("each command has its own --help naming every flag with its meaning and default", () => {
    const expected: Record<string, string[]> = {
      optimize: ["--shape", "--no-verify", "--tolerance", "--atol", "--rtol", "--runs", "--seed", "--provider", "--external-data", "--no-costlier", "--max-mac-growth", "--duplicate-shared", "--skip-failing", "--explain", "--json", "--approx-attention", "--approx-threshold", "--calib", "--labels"],
      verify: ["--input", "--save-outputs", "--load-outputs", "--shape", "--runs", "--seed", "--tolerance", "--atol", "--rtol", "--provider", "--json"],
      inspect: ["--shape", "--explain", "--attention-stats", "--calib", "--json"],
      train: ["--arch", "--data", "--epochs", "--batch", "--lr", "--optimizer", "--resume", "--checkpoint", "--workers", "--backend"],
      eval: ["--data", "--split", "--limit", "--batch", "--provider", "--json"],
    };
    for (const [cmd, flags] of Object.entries(expected)) {
      const r = cli(cmd, "--help");
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`Usage: reparam-onnx ${cmd}`);
      for (const flag of flags) expect(r.stdout, `${cmd} ${flag}`).toMatch(new RegExp(`${flag}\\b.*\\S`));
      // Flags of other commands are not listed.
      if (cmd !== "optimize") expect(r.stdout).not.toContain("--no-verify");
    }
    const o = cli("optimize", "--help").stdout;
    expect(o).toMatch(/--runs <N>\s+input patterns per shape set[\s\S]*\(default: 3: /);
    expect(o).toMatch(/--atol <A>\s+absolute tolerance/);
    expect(o).toMatch(/--max-mac-growth <F>[\s\S]*\(default: 1, /);
    expect(o).not.toContain("unsafe");
    expect(cli("help", "verify").stdout).toContain("Usage: reparam-onnx verify");
  });

  it("the top-level help lists the commands and exit codes; no command is a usage error", () => {
    const r = cli("--help");
    expect(r.code).toBe(0);
    for (const c of ["optimize", "verify", "inspect", "train", "eval"]) expect(r.stdout).toContain(c);
    expect(r.stdout).toContain("exit codes: 0 ok, 1 verification failed");
    const none = cli();
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("Usage: reparam-onnx");
  });

  it("--version names reparam-onnx's and onnxruntime's versions", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
    const ort = JSON.parse(fs.readFileSync(path.join(ROOT, "node_modules", "onnxruntime-node", "package.json"), "utf8"));
    const r = cli("--version");
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`reparam-onnx ${pkg.version} (onnxruntime-node ${ort.version}, Node ${process.version})`);
  });
});

describe("unknown flags: exit 2, one line, a suggestion", () => {
  it("a misspelt flag suggests the right one", () => {
    const line = usageError(cli("optimize", DEMO, "out.onnx", "--tolerence", "1e-3"));
    expect(line).toContain("optimize: unknown option '--tolerence' (did you mean --tolerance?)");
    expect(fs.existsSync(path.join(work, "out.onnx"))).toBe(false);
  });

  it("a flag of another command names the command it belongs to", () => {
    const line = usageError(cli("verify", DEMO, DEMO, "--no-verify"));
    expect(line).toMatch(/verify: unknown option '--no-verify': it belongs to optimize \(did you mean 'reparam-onnx optimize … --no-verify'/);
    const t = usageError(cli("inspect", DEMO, "--epochs", "3"));
    expect(t).toMatch(/inspect: unknown option '--epochs': it belongs to train/);
  });

  it("the command's own flag given a value, or given before the command, says so (not that another command has it)", () => {
    expect(usageError(cli("optimize", DEMO, "out.onnx", "--json=true"))).toBe("reparam-onnx: error: optimize: option '--json' takes no value (write '--json', not '--json=true'); reparam-onnx optimize --help lists optimize options");
    expect(usageError(cli("--json", "optimize", DEMO, "out.onnx"))).toBe("reparam-onnx: error: option '--json' comes before the command: write it after (reparam-onnx optimize … --json)");
    expect(fs.existsSync(path.join(work, "out.onnx"))).toBe(false);
  });

  it("an option that would be ignored is refused: calibration flags without their mode, a --shape for no input", () => {
    for (const flag of ["--calib", "--labels", "--approx-threshold"])
      expect(usageError(cli("optimize", DEMO, "out.onnx", "--no-verify", flag, "/nonexistent"))).toContain(`${flag} /nonexistent: used only with --approx-attention`);
    expect(usageError(cli("inspect", DEMO, "--calib", "/nonexistent"))).toContain("--calib /nonexistent: read only with --attention-stats");
    const noInput = /demo_repvgg_net\.onnx: --shape gives input 'y', which the model does not have \(its inputs: input\)/;
    expect(usageError(cli("optimize", DEMO, "out.onnx", "--no-verify", "--shape", "y=1x3x8x8"))).toMatch(noInput);
    expect(usageError(cli("inspect", DEMO, "--shape", "y=1x3x8x8"))).toMatch(noInput);
    expect(usageError(cli("verify", DEMO, DEMO, "--shape", "y=1x3x8x8"))).toMatch(noInput);
    expect(fs.existsSync(path.join(work, "out.onnx"))).toBe(false);
  });

  it("a flag nobody has points to the command's help", () => {
    expect(usageError(cli("verify", DEMO, DEMO, "--bogus"))).toBe("reparam-onnx: error: verify: unknown option '--bogus'; reparam-onnx verify --help lists the options");
  });

  it("an unknown command suggests the closest one; a missing value or argument is one line", () => {
    expect(usageError(cli("optimise", DEMO, "o.onnx"))).toMatch(/unknown command 'optimise' \(did you mean optimize\?\)/);
    expect(usageError(cli("verify", DEMO, DEMO, "--runs"))).toMatch(/verify: option '--runs <N>' argument missing/);
    expect(usageError(cli("inspect"))).toMatch(/inspect: missing required argument/);
    expect(usageError(cli("inspect", DEMO, DEMO))).toMatch(/inspect: too many arguments/);
  });
});
