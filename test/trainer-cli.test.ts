// `reparam-onnx train` / `eval` as users run them (child processes on the compiled CLI), on the
// synthetic data set: train → optimize → eval gives identical accuracy, --resume, Ctrl-C keeps the
// last checkpoint, data-parallel workers, one-line errors with exit code 2.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "..");
const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-train-cli-"));
const at = (p: string) => path.join(work, p);
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

beforeAll(() => {
  // `npm test` builds first; build here only when the compiled trainer is missing.
  if (!fs.existsSync(path.join(ROOT, "dist", "src", "cli", "train.js")) || !fs.existsSync(path.join(ROOT, "dist", "src", "trainer", "worker.js")))
    spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT, encoding: "utf8" });
  expect(fs.existsSync(CLI)).toBe(true);
}, 120_000);

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: work, encoding: "utf8", timeout: 60_000, env: { ...process.env, REPARAM_DATASETS: at("datasets") } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const accuracyLine = (s: string) => /accuracy ([\d.]+)% \((\d+)\/(\d+)\).*digest ([0-9a-f]+)/.exec(s);

describe("train / eval CLI", () => {
  it("trains with 2 workers, writes the model and checkpoint, prints the optimize command; folding keeps every prediction", () => {
    const r = cli("train", "--data", "synthetic:384", "--arch", "acb-mini", "--epochs", "1", "--batch", "32", "--workers", "2", "--out", "acb.onnx");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/backend wasm .*2 data-parallel workers/);
    expect(r.stdout).toMatch(/epoch 1\/1: loss [\d.]+, train acc [\d.]+%, test acc [\d.]+%/);
    expect(r.stdout).toContain("next: npx reparam-onnx optimize acb.onnx acb.deploy.onnx");
    expect(fs.existsSync(at("acb.onnx"))).toBe(true);
    expect(fs.existsSync(at("acb.onnx.ckpt"))).toBe(true);
    const o = cli("optimize", "acb.onnx", "acb.deploy.onnx");
    expect(o.code, o.stderr).toBe(0);
    expect(o.stdout).toMatch(/│ Conv +│ +12 │ +4 │/);
    const a = cli("eval", "acb.onnx", "--data", "synthetic:384");
    const b = cli("eval", "acb.deploy.onnx", "--data", "synthetic:384");
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    const ma = accuracyLine(a.stdout)!, mb = accuracyLine(b.stdout)!;
    expect(ma).not.toBeNull();
    expect(mb[2]).toBe(ma[2]); // same number correct
    expect(mb[4]).toBe(ma[4]); // and the same prediction for every image
    const e = cli("eval", "acb.deploy.onnx", "--data", "synthetic:384", "--json");
    expect(JSON.parse(e.stdout).correct).toBe(Number(ma[2]));
  });

  it("--resume continues from the checkpoint; --online and --dynamic runs export models that fold", () => {
    expect(cli("train", "--data", "synthetic:256", "--epochs", "1", "--out", "r.onnx", "--workers", "1").code).toBe(0);
    const r = cli("train", "--data", "synthetic:256", "--epochs", "2", "--out", "r.onnx", "--workers", "1", "--resume");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("resumed from r.onnx.ckpt after epoch 1: --batch 64, --optimizer sgd, --lr 0.1, --weight-decay 0.0001, --seed 1 as in the checkpoint");
    // A changed --epochs applies, and the run says how the schedule changes.
    expect(r.stdout).toMatch(/--epochs 2 \(checkpoint: 1\): training continues to epoch 2; the cosine learning-rate schedule now spans 2 epochs \(\d+ steps\), so the next step \(\d+\) runs at lr [\d.]+ where the 1-epoch schedule had ended \(lr 0\)/);
    expect(r.stdout).toMatch(/epoch 2\/2/);
    expect(r.stdout).not.toMatch(/epoch 1\/2/);
    const on = cli("train", "--data", "synthetic:256", "--epochs", "1", "--online", "--arch", "dbb-mini", "--out", "on.onnx", "--workers", "1", "--json");
    expect(on.code, on.stderr).toBe(0);
    expect(JSON.parse(on.stdout).form).toBe("online");
    expect(cli("optimize", "on.onnx", "on.deploy.onnx").stdout).toMatch(/│ Conv +│ +20 │ +4 │/);
    const dyn = cli("train", "--data", "synthetic:256", "--epochs", "2", "--dynamic", "--arch", "repvgg-mini", "--out", "dyn.onnx", "--workers", "1");
    expect(dyn.code, dyn.stderr).toBe(0);
    expect(dyn.stdout).toMatch(/dynamic: .* grew /);
    expect(cli("optimize", "dyn.onnx", "dyn.deploy.onnx").code).toBe(0);
  });

  it("Ctrl-C stops between steps and leaves the last checkpoint intact", async () => {
    const child = spawn(process.execPath, [CLI, "train", "--data", "synthetic:1024", "--epochs", "50", "--batch", "16", "--out", "int.onnx", "--workers", "1"], { cwd: work });
    let stdout = "", stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const exit = new Promise<number | null>((resolve) => child.on("close", resolve));
    const t0 = Date.now();
    while (!/epoch 1\/50/.test(stdout) && Date.now() - t0 < 40_000) await new Promise((r) => setTimeout(r, 100));
    expect(stdout).toMatch(/epoch 1\/50/);
    const ckpt = fs.readFileSync(at("int.onnx.ckpt"));
    await new Promise((r) => setTimeout(r, 300)); // mid-epoch 2
    child.kill("SIGINT");
    const code = await exit;
    expect(code).toBe(130);
    expect(stderr).toMatch(/interrupted; the last checkpoint \(int\.onnx\.ckpt, epoch \d+\) is intact: continue with --resume/);
    expect(fs.existsSync(at("int.onnx"))).toBe(false);
    if (!/epoch 2\/50/.test(stdout)) expect(fs.readFileSync(at("int.onnx.ckpt")).equals(ckpt)).toBe(true);
    expect(fs.readdirSync(work).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    const r = cli("train", "--data", "synthetic:1024", "--epochs", "2", "--batch", "16", "--out", "int.onnx", "--workers", "1", "--resume");
    expect(r.code, r.stderr).toBe(0);
  }, 60_000);

  it("bad input: one line, exit 2", () => {
    const cases: [string[], RegExp][] = [
      [["train", "--data", "fashion-mnist", "--out", "x.onnx"], /--data fashion-mnist: .* not found; install it with 'sudo apt-get install dataset-fashion-mnist'/],
      [["train", "--data", "synthetic", "--arch", "nope"], /--arch 'nope': expected one of repvgg-mini/],
      [["train", "--data", "synthetic", "--epochs", "0"], /--epochs '0': expected an integer ≥ 1/],
      [["train", "--data", "synthetic", "--out", "missing/x.onnx"], /--out missing\/x.onnx: cannot write/],
      [["train", "--data", "synthetic", "--online", "--dynamic"], /--dynamic .* cannot be combined with --online/],
      [["train", "--data", "synthetic", "--resume", "--out", "none.onnx"], /none\.onnx\.ckpt: no checkpoint to resume from/],
      [["train", "--data", "synthetic:256", "--arch", "acb-mini", "--out", "r.onnx", "--resume", "--workers", "1"], /r\.onnx\.ckpt: checkpoint is for a different network \(repvgg-mini\)/],
      // Hyper-parameters that differ from the checkpoint's are refused, each named.
      [["train", "--data", "synthetic:256", "--out", "r.onnx", "--resume", "--lr", "0.05", "--batch", "32", "--workers", "1"], /r\.onnx\.ckpt: resuming with --batch 32 \(checkpoint: 64\), --lr 0\.05 \(checkpoint: 0\.1\) would change the run mid-way; drop those flags \(the checkpoint's values are used\) or train anew without --resume/],
      [["train", "--data", "synthetic:256", "--out", "r.onnx", "--resume", "--epochs", "1", "--workers", "1"], /r\.onnx\.ckpt: checkpoint has already trained 2 epochs; --epochs 1 is fewer/],
      [["train", "--data", "synthetic:128", "--out", "r.onnx", "--resume", "--workers", "1"], /r\.onnx\.ckpt: checkpoint was trained on 256 training images, not 128/],
      [["train", "--data", "synthetic", "--checkpoint-every", "0"], /--checkpoint-every '0': expected an integer ≥ 1/],
      [["train", "--data", "synthetic", "--backend", "tfjs-node"], /--backend tfjs-node: @tensorflow\/tfjs-node cannot be used|--backend/],
      [["eval", "acb.onnx", "--data", "synthetic:64", "--split", "val"], /--split 'val': expected test or train/],
      [["eval", "nope.onnx", "--data", "synthetic:64"], /nope\.onnx: no such file/],
    ];
    for (const [args, re] of cases) {
      const r = cli(...args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(re);
    }
  });
});
