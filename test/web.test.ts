// The web app in a real browser: headless Chromium (Debian's `chromium`, never a downloaded one)
// drives the built page over a local http server. It uploads fixtures, waits for the
// onnxruntime-web verification, downloads the output and checks it: byte for byte against the
// CLI's output for the same options (but for the metadata entry naming the runtime that proved it),
// and in onnxruntime-node against the authors' deploy model.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, modelToBytes, saveModel } from "../src/ir/io.js";
import { verifyModels } from "../src/verify/verify.js";
// @ts-expect-error -- plain ESM script without types
import { serve } from "../web/serve.mjs";

const ROOT = path.resolve(import.meta.dirname, "..");
const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");
const MODELS = path.join(ROOT, "fixtures", "models");

/** REPARAM_CHROMIUM, else Debian's/Ubuntu's/Google's usual install paths. */
function findChromium(): string | undefined {
  const candidates = [process.env.REPARAM_CHROMIUM, "/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable"];
  return candidates.find((c): c is string => !!c && fs.existsSync(c));
}

const CHROMIUM = findChromium();
if (!CHROMIUM) console.log("web app test skipped: no Chromium found (install Debian's chromium package, or set REPARAM_CHROMIUM to a Chromium/Chrome binary); CI installs it in .ci/run");

describe.skipIf(!CHROMIUM)("web app (headless Chromium, onnxruntime-web)", () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-web-"));
  const at = (p: string) => path.join(work, p);
  let browser: Browser;
  let page: Page;
  let server: { url: string; close: () => Promise<void> };

  beforeAll(async () => {
    const build = spawnSync(process.execPath, [path.join(ROOT, "web", "build.mjs"), "--outdir", at("site")], { cwd: ROOT, encoding: "utf8" });
    expect(build.status, build.stderr).toBe(0);
    if (!fs.existsSync(CLI)) spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT });
    server = await serve(at("site"));
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
    page = await browser.newPage({ acceptDownloads: true });
    page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
    await page.goto(server.url);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  interface Options { shapes?: string; tolerance?: string; maxMacGrowth?: string; verify?: boolean }

  /** Pick `files`, set the options, press Optimize and wait until the page is done either way. */
  async function runPage(files: string[], options: Options = {}): Promise<void> {
    await page.fill("#shapes", options.shapes ?? "");
    await page.fill("#tolerance", options.tolerance ?? "");
    await page.fill("#max-mac-growth", options.maxMacGrowth ?? "");
    await page.setChecked("#verify", options.verify ?? true);
    await page.setInputFiles("#files", files);
    await page.click("#run");
    await page.waitForFunction(() => document.body.dataset.state === "idle", undefined, { timeout: 50_000 });
  }

  async function download(name: string): Promise<Buffer> {
    const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    expect(dl.suggestedFilename()).toBe(name);
    await dl.saveAs(at(name));
    return fs.readFileSync(at(name));
  }

  function cli(...args: string[]): { code: number | null; stderr: string } {
    const r = spawnSync(process.execPath, [CLI, ...args], { cwd: work, encoding: "utf8", timeout: 60_000 });
    return { code: r.status, stderr: r.stderr };
  }

  /**
   * The page's output is the CLI's, byte for byte, but for the one metadata entry that says where
   * it was proven (onnxruntime-web vs onnxruntime-node, and the errors each measured).
   */
  function expectSameAsCli(pageFile: string, cliFile: string): void {
    const [p, c] = [loadModel(pageFile), loadModel(cliFile)];
    const proof = (m: typeof p) => m.original.metadataProps?.find((e) => e.key === "reparam-onnx.verification")?.value;
    expect(proof(p)).toMatch(/^OK: onnxruntime-web 1\.30\.\d+ wasm, /);
    expect(proof(c)).toMatch(/^OK: onnxruntime-node [\d.]+ cpu, /);
    const same = { "reparam-onnx.verification": "(compared)" };
    expect(Buffer.from(modelToBytes(p.withMetadata(same))).equals(Buffer.from(modelToBytes(c.withMetadata(same))))).toBe(true);
  }

  function opCounts(file: string): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const n of loadModel(file).graph.nodes) counts[n.opType] = (counts[n.opType] ?? 0) + 1;
    return counts;
  }

  it("folds the demo model: verified in the page, byte-identical to the CLI, the deploy model's structure and outputs", async () => {
    const input = path.join(MODELS, "demo_repvgg_net.onnx");
    // Every text the status line shows while the worker runs (its progress messages).
    await page.evaluate(() => {
      const stage = document.getElementById("stage")!;
      const seen: string[] = ((window as unknown as { stages: string[] }).stages = []);
      new MutationObserver(() => seen.push(stage.textContent ?? "")).observe(stage, { childList: true, characterData: true, subtree: true });
    });
    await runPage([input]);
    const stages = await page.evaluate(() => (window as unknown as { stages: string[] }).stages);
    expect(stages.some((s) => s.startsWith("rewriting"))).toBe(true);
    expect(stages.some((s) => s.startsWith("verifying in onnxruntime-web"))).toBe(true);
    expect(stages.at(-1)).toMatch(/^Done in /);
    expect(await page.isHidden("#error")).toBe(true);
    expect(await page.getAttribute("#verification", "data-ok")).toBe("true");
    const verification = await page.textContent("#verification");
    expect(verification).toMatch(/OK — onnxruntime-web 1\.30\.\d+ \(wasm, \d threads?\), \d+ input sets at input=1x3x32x32(, [^:]+)?: max abs error \d\.\d\de[-+]\d+, max rel error \S+ \(calibrated/);
    // The op table shows what went: 12 BatchNormalization and 7 Add before, none after.
    const rows = await page.$$eval("#ops tbody tr", (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
    expect(rows).toContainEqual(["BatchNormalization", "12", "0"]);
    expect(rows).toContainEqual(["Add", "7", "0"]);
    expect(await page.$$eval("#rewrites li", (lis) => lis.length)).toBe(5);

    await download("demo_repvgg_net-deploy.onnx");
    expect(cli("optimize", input, at("cli.onnx")).code).toBe(0);
    expectSameAsCli(at("demo_repvgg_net-deploy.onnx"), at("cli.onnx"));

    // Unverified on both sides, the files are the same bytes.
    await runPage([input], { verify: false });
    expect(await page.getAttribute("#verification", "data-ok")).toBe("skipped");
    const unproven = await download("demo_repvgg_net-deploy.onnx");
    expect(cli("optimize", input, at("cli-nv.onnx"), "--no-verify").code).toBe(0);
    expect(unproven.equals(fs.readFileSync(at("cli-nv.onnx")))).toBe(true);

    const deploy = path.join(MODELS, "repvgg_net_deploy_op13.onnx");
    expect(opCounts(at("demo_repvgg_net-deploy.onnx"))).toEqual(opCounts(deploy));
    const v = await verifyModels(loadModel(deploy), loadModel(at("demo_repvgg_net-deploy.onnx")), { shapes: { input: [2, 3, 32, 32] } });
    expect(v.ok, JSON.stringify(v.outputs)).toBe(true);
  });

  it("takes the CLI's options (--shape, --tolerance, --max-mac-growth) and writes what the CLI writes with them", async () => {
    const input = path.join(MODELS, "comp_stem_first_s2_preserve_op13.onnx");
    await runPage([input], { shapes: "input=2x4x17x16", tolerance: "1e-3", maxMacGrowth: "2" });
    expect(await page.isHidden("#error")).toBe(true);
    expect(await page.textContent("#verification")).toMatch(/input sets at input=2x4x17x16\b.*\(tolerance 1\.00e-3\)/);
    await download("comp_stem_first_s2_preserve_op13-deploy.onnx");
    expect(cli("optimize", input, at("cli-growth.onnx"), "--shape", "input=2x4x17x16", "--tolerance", "1e-3", "--max-mac-growth", "2").code).toBe(0);
    expectSameAsCli(at("comp_stem_first_s2_preserve_op13-deploy.onnx"), at("cli-growth.onnx"));
    // MAC growth 2 allows the authors' composed stem: the deploy model's structure and outputs.
    const deploy = path.join(MODELS, "comp_stem_first_s2_deploy_op13.onnx");
    expect(opCounts(at("cli-growth.onnx"))).toEqual(opCounts(deploy));
    const v = await verifyModels(loadModel(deploy), loadModel(at("comp_stem_first_s2_preserve_op13-deploy.onnx")), { shapes: { input: [3, 4, 17, 16] } });
    expect(v.ok, JSON.stringify(v.outputs)).toBe(true);
  });

  it("reads a model with external data from the picked files", async () => {
    saveModel(loadModel(path.join(MODELS, "demo_repvgg_net.onnx")), at("ext.onnx"), { externalData: true });
    expect(fs.existsSync(at("ext.onnx.data"))).toBe(true);
    await runPage([at("ext.onnx"), at("ext.onnx.data")]);
    expect(await page.getAttribute("#verification", "data-ok")).toBe("true");
    await download("ext-deploy.onnx");
    expect(cli("optimize", "ext.onnx", "cli-ext.onnx").code).toBe(0);
    expectSameAsCli(at("ext-deploy.onnx"), at("cli-ext.onnx"));
    // Without its data file: one line naming the file that is missing.
    await runPage([at("ext.onnx")]);
    expect(await page.textContent("#error")).toMatch(/^ext\.onnx: initializer '[^']+': external data file 'ext\.onnx\.data' was not picked with ext\.onnx/);
  });

  it("a garbage file gives the CLI's one-line error and no download", async () => {
    fs.writeFileSync(at("garbage.onnx"), Buffer.from("this is not an ONNX model\n".repeat(40)));
    await runPage([at("garbage.onnx")]);
    const message = (await page.textContent("#error"))!;
    expect(await page.isVisible("#error")).toBe(true);
    expect(message).not.toContain("\n");
    expect(await page.$("#download")).toBeNull();
    const r = cli("optimize", "garbage.onnx", "out.onnx");
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`reparam-onnx: error: ${message}`);
    expect(message).toMatch(/^garbage\.onnx: not a valid ONNX model/);
  });
});
