// --data with a folder of PNG images (ImageFolder layout): loading, splits, channels, errors, and a
// train → optimize → eval round on it.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PNG } from "pngjs";
import { afterAll, describe, expect, it } from "vitest";
import { UsageError } from "../src/ir/errors.js";
import { loadData } from "../src/trainer/data.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-images-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function writePng(file: string, w: number, h: number, pixel: (x: number, y: number) => [number, number, number]): void {
  const png = new PNG({ width: w, height: h });
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const [r, g, b] = pixel(x, y);
      const i = (y * w + x) * 4;
      png.data[i] = r; png.data[i + 1] = g; png.data[i + 2] = b; png.data[i + 3] = 255;
    }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, PNG.sync.write(png));
}

/** Two learnable classes: horizontal vs vertical stripes (colour or gray), random phase. */
function makeFolder(root: string, perClass: number, color: boolean): void {
  for (let k = 0; k < perClass; k++)
    for (const [cls, horizontal] of [["horizontal", true], ["vertical", false]] as const) {
      const phase = k % 4;
      writePng(path.join(root, cls, `${k}.png`), 12, 12, (x, y) => {
        const v = ((horizontal ? y : x) + phase) % 4 < 2 ? 220 : 30;
        return color ? [v, 255 - v, 128] : [v, v, v];
      });
    }
}

describe("a folder of PNG images as --data", () => {
  it("loads classes from folder names, splits every fifth image to test, detects gray vs RGB", () => {
    makeFolder(path.join(work, "gray"), 10, false);
    makeFolder(path.join(work, "rgb"), 10, true);
    const g = loadData(path.join(work, "gray"));
    expect(g.classNames).toEqual(["horizontal", "vertical"]);
    expect(g.train.shape).toEqual([1, 12, 12]);
    expect([g.train.n, g.test.n]).toEqual([16, 4]);
    const c = loadData(path.join(work, "rgb"));
    expect(c.train.shape).toEqual([3, 12, 12]);
    // NCHW: the green channel of the first pixel is 255 − red.
    expect(c.train.images[144]).toBe(255 - c.train.images[0]!);
  });

  it("refuses images of different sizes and unreadable files, naming the file", () => {
    const bad = path.join(work, "bad");
    makeFolder(bad, 5, false);
    writePng(path.join(bad, "vertical", "big.png"), 13, 12, () => [0, 0, 0]);
    expect(() => loadData(bad)).toThrow(/big\.png: 13x12, but the first image is 12x12/);
    const broken = path.join(work, "broken");
    makeFolder(broken, 5, false);
    fs.writeFileSync(path.join(broken, "horizontal", "z.png"), "not a png");
    expect(() => loadData(broken)).toThrow(UsageError);
  });

  it("train → optimize → eval on an image folder gives the same prediction for every image", () => {
    makeFolder(path.join(work, "stripes", "train"), 24, true);
    makeFolder(path.join(work, "stripes", "test"), 6, true);
    const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { cwd: work, encoding: "utf8", timeout: 120_000 });
    const t = run("train", "--data", "stripes", "--arch", "repvgg-mini", "--epochs", "2", "--batch", "16", "--workers", "1", "--out", "stripes.onnx", "--no-progress");
    expect(t.status, t.stderr).toBe(0);
    expect(run("optimize", "stripes.onnx", "stripes.deploy.onnx").status).toBe(0);
    const digest = (f: string) => {
      const r = run("eval", f, "--data", "stripes", "--json");
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { correct: number; digest: string };
    };
    const a = digest("stripes.onnx"), b = digest("stripes.deploy.onnx");
    expect(b.correct).toBe(a.correct);
    expect(b.digest).toBe(a.digest);
  });
});
