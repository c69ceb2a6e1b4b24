// npm run web:size — how large a model the web app handles: generates RepVGG training-form models
// of growing size (bench/models.ts), optimizes and verifies each in the built page in headless
// Chromium, and prints one line per size (stops at the first failure). Not part of npm test.
// Usage: node web/size-probe.mjs [--sizes a0,b1,772,1162,1279,1403] [--timeout-s 600]
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { repvgg, SPECS } from "../dist/bench/models.js";
import { saveModel } from "../dist/src/ir/io.js";
import { serve } from "./serve.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { sizes: { type: "string" }, "timeout-s": { type: "string" } } });
const deep = [1, 4, 6, 16, 1];
const MODELS = {
  a0: SPECS["repvgg-a0"],
  b1: SPECS["repvgg-b1"],
  772: { widths: [64, 256, 512, 1024, 2048], depths: deep, resolution: 64 },
  1162: { widths: [64, 256, 512, 1280, 2560], depths: deep, resolution: 64 },
  1279: { widths: [64, 256, 512, 1344, 2816], depths: deep, resolution: 64 },
  1403: { widths: [64, 256, 512, 1408, 3072], depths: deep, resolution: 64 },
  1700: { widths: [64, 256, 512, 1536, 4096], depths: deep, resolution: 64 },
};
const sizes = (values.sizes ?? "a0,b1,772,1162,1279,1403").split(",");
const timeout = Number(values["timeout-s"] ?? 600) * 1000;
const executablePath = [process.env.REPARAM_CHROMIUM, "/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/google-chrome"].find((p) => p && fs.existsSync(p));
if (!executablePath) throw new Error("no Chromium found: set REPARAM_CHROMIUM");
if (!fs.existsSync(path.join(root, "dist", "web", "index.html"))) throw new Error("run npm run build:web first");

const work = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-web-size-"));
const server = await serve(path.join(root, "dist", "web"));
const browser = await chromium.launch({ executablePath });
console.log(`web app size probe: ${executablePath}, ${os.cpus().length} CPUs, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`);
try {
  for (const key of sizes) {
    const spec = MODELS[key];
    if (!spec) throw new Error(`unknown size '${key}' (sizes: ${Object.keys(MODELS).join(", ")})`);
    const file = path.join(work, `repvgg-${key}.onnx`);
    saveModel(repvgg(spec), file);
    const mib = fs.statSync(file).size / 2 ** 20;
    const page = await browser.newPage();
    const start = Date.now();
    let line;
    try {
      await page.goto(server.url);
      await page.setInputFiles("#files", file);
      await page.click("#run");
      await page.waitForFunction(() => document.body.dataset.state === "idle", undefined, { timeout });
      const error = (await page.isVisible("#error")) ? await page.textContent("#error") : undefined;
      const verified = await page.getAttribute("#verification", "data-ok").catch(() => null);
      const out = await page.textContent("#download").catch(() => null);
      line = error ? `FAILED: ${error}` : `verification ${verified === "true" ? "OK" : verified}; ${out}; ${await page.textContent("#timings")}`;
    } catch (e) {
      line = `FAILED: ${e.message.split("\n")[0]}`;
    }
    await page.close();
    fs.rmSync(file, { force: true });
    console.log(`${mib.toFixed(0)} MiB (${key}): ${((Date.now() - start) / 1000).toFixed(1)} s, ${line}`);
    if (line.startsWith("FAILED")) break;
  }
} finally {
  await browser.close();
  await server.close();
  fs.rmSync(work, { recursive: true, force: true });
}
