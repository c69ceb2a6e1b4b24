// npm run serve:web — serves the built page (dist/web) on http://127.0.0.1:8080/ (--port N).
// Any static server works; this one also sends the two headers that make the page
// cross-origin isolated, which lets onnxruntime-web verify with several threads.
// The browser test (test/web.test.ts) serves the page with it too.
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".wasm": "application/wasm", ".map": "application/json", ".png": "image/png" };

/** Serve `dir` on 127.0.0.1 (port 0: any free port); resolves to its URL and a close function. */
export function serve(dir, port = 0) {
  const root = path.resolve(dir);
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? "/", "http://localhost").pathname);
    const file = path.join(root, rel.endsWith("/") ? `${rel}index.html` : rel);
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, {
      "content-type": TYPES[path.extname(file)] ?? "application/octet-stream",
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-embedder-policy": "require-corp",
    });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const { port: actual } = server.address();
      resolve({ url: `http://127.0.0.1:${actual}/`, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { port: { type: "string" }, dir: { type: "string" } } });
  const dir = values.dir ?? path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "dist", "web");
  if (!fs.existsSync(path.join(dir, "index.html"))) {
    console.error(`reparam-onnx: error: ${dir}/index.html not found: run npm run build:web first`);
    process.exit(2);
  }
  const { url } = await serve(dir, Number(values.port ?? 8080));
  console.log(`reparam-onnx web app: ${url} (Ctrl-C stops)`);
}
