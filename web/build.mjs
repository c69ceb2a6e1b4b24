// npm run build:web — the static web app in dist/web/ (open dist/web/index.html through any static
// server; nothing is fetched from elsewhere). Usage: node web/build.mjs [--outdir DIR] [--dev]
//
// The page and its worker are bundled by esbuild from web/src/. The compiler core comes from
// src/core.ts unchanged, with two substitutions (SUBSTITUTES below): onnxruntime-node's seam
// becomes onnxruntime-web's, and the worker-thread GEMM runs on the page worker's own thread. Any
// other Node import in the bundle fails the build, so the browser never gets code that needs Node.
import * as esbuild from "esbuild";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { outdir: { type: "string" }, dev: { type: "boolean" } } });
const outdir = path.resolve(values.outdir ?? path.join(root, "dist", "web"));

/** onnxruntime-web's WebAssembly binary, served beside the worker. */
const ORT_WASM = "ort-wasm-simd-threaded.wasm";

/** Core files that need Node, and the browser files bundled in their place (same exports, type-checked). */
const SUBSTITUTES = {
  "src/verify/runtime.ts": "web/src/runtime-web.ts", // onnxruntime-node → onnxruntime-web
  "src/algebra/gemm-parallel.ts": "web/src/gemm-single.ts", // worker_threads → the worker's one thread
};

const browserOnly = {
  name: "browser-only",
  setup(build) {
    const swap = new Map(Object.entries(SUBSTITUTES).map(([from, to]) => [path.join(root, from), path.join(root, to)]));
    build.onResolve({ filter: /^\.\.?\/.*\.js$/ }, (args) => {
      const target = path.resolve(args.resolveDir, args.path.replace(/\.js$/, ".ts"));
      const substitute = swap.get(target);
      // The substitutes import the originals' types only; never swap an import made by a substitute.
      return substitute && !Object.values(SUBSTITUTES).some((to) => path.join(root, to) === args.importer) ? { path: substitute } : undefined;
    });
    build.onResolve({ filter: /^(node:|onnxruntime-node$|fs$|path$|os$|module$|worker_threads$)/ }, (args) => ({
      errors: [{ text: `'${args.path}' is Node-only: the browser bundle cannot import it (from ${path.relative(root, args.importer)})` }],
    }));
  },
};

// src/ir/proto.ts reads onnx-proto's generated codec from its source text (Function.toString:
// field numbers and packing are in its comments), which a bundler reformats or strips. So the
// codec's file goes into the bundle verbatim, as a string, and runs from there: its functions'
// source is then exactly the published file, as in Node.
const verbatimCodec = {
  name: "verbatim-onnx-proto",
  setup(build) {
    build.onLoad({ filter: /[\\/]onnx-proto[\\/]dist[\\/]onnx\.js$/ }, (args) => {
      const source = fs.readFileSync(args.path, "utf8");
      return {
        loader: "js",
        resolveDir: path.dirname(args.path),
        contents: [
          `const protobuf = require("protobufjs/minimal");`,
          `const load = new Function("exports", "require", "module", ${JSON.stringify(source)});`,
          `const codec = { exports: {} };`,
          `load(codec.exports, (id) => { if (id === "protobufjs/minimal") return protobuf; throw new Error("onnx-proto requires " + id); }, codec);`,
          `module.exports = codec.exports;`,
        ].join("\n"),
      };
    });
  },
};

fs.rmSync(outdir, { recursive: true, force: true });
fs.mkdirSync(outdir, { recursive: true });
const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: { app: "web/src/main.ts", worker: "web/src/worker.ts" },
  outdir,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: !values.dev,
  sourcemap: "linked",
  // The CommonJS packages (onnx-proto, protobufjs) are fine with one shared copy.
  mainFields: ["browser", "module", "main"],
  conditions: ["onnxruntime-web-use-extern-wasm"],
  plugins: [browserOnly, verbatimCodec],
  logLevel: "warning",
  metafile: true,
  // The version stamped into written models (reparam-onnx.version), as the CLI does.
  define: { __REPARAM_VERSION__: JSON.stringify(JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).version) },
});
for (const file of ["index.html", "style.css"]) fs.copyFileSync(path.join(root, "web", file), path.join(outdir, file));
const ortDist = path.join(root, "node_modules", "onnxruntime-web", "dist");
for (const file of [ORT_WASM, "ort-wasm-simd-threaded.mjs"]) fs.copyFileSync(path.join(ortDist, file), path.join(outdir, file));
const size = (f) => fs.statSync(path.join(outdir, f)).size;
const listing = fs.readdirSync(outdir).filter((f) => !f.endsWith(".map")).map((f) => `${f} ${(size(f) / 1024).toFixed(0)} KiB`);
console.log(`web app built in ${path.relative(process.cwd(), outdir) || "."}: ${listing.join(", ")}`);
if (result.warnings.length) process.exitCode = 0;
