// The compiled CLI as the CLI tests run it: where it is, the bundled example, a scratch folder
// removed after the file's tests, and a build when dist/ is missing (npm test builds first).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, expect } from "vitest";

export const ROOT = path.resolve(import.meta.dirname, "..", "..");
export const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");
export const DEMO = path.join(ROOT, "fixtures", "models", "demo_repvgg_net.onnx");

/** A scratch folder for this test file (removed afterwards), with `at(p)` for paths inside it; dist/ is built if missing. */
export function cliScratch(prefix: string): { work: string; at: (p: string) => string } {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `reparam-${prefix}-`));
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
  beforeAll(() => {
    if (!fs.existsSync(CLI)) spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT, encoding: "utf8" });
    expect(fs.existsSync(CLI)).toBe(true);
  }, 120_000);
  return { work, at: (p: string) => path.join(work, p) };
}
