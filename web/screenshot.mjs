// Regenerates the README's screenshot: the built page (npm run build:web) folding the demo model in
// headless Chromium. Usage: node web/screenshot.mjs [OUT.png]   (REPARAM_CHROMIUM picks the browser)
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "./serve.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const out = path.resolve(process.argv[2] ?? path.join(root, "docs", "web-demo.png"));
const executablePath = [process.env.REPARAM_CHROMIUM, "/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/google-chrome"].find((p) => p && fs.existsSync(p));
if (!executablePath) throw new Error("no Chromium found: set REPARAM_CHROMIUM");
const server = await serve(path.join(root, "dist", "web"));
const browser = await chromium.launch({ executablePath });
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  await page.goto(server.url);
  await page.setInputFiles("#files", path.join(root, "fixtures", "models", "demo_repvgg_net.onnx"));
  await page.click("#run");
  await page.waitForSelector("#result[data-state=done]", { timeout: 60_000 });
  fs.mkdirSync(path.dirname(out), { recursive: true });
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.close();
}
