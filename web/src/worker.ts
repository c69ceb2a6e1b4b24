// The compiler in a Web Worker: reads the picked files, optimizes, verifies with onnxruntime-web
// and hands back the report and the output model as a Blob, so the page stays responsive. It is
// the CLI's optimize command (src/cli/main.ts) with Files in place of paths: same core, same
// options, the same bytes out (modelToParts is what saveModel writes).
import { decodeModelBytes, findCulprit, ModelError, modelToParts, optimize, UsageError, verifyModels, type ExternalFiles, type OptimizeOptions, type VerifyOptions } from "../../src/core.js";
import { provenance } from "../../src/app/provenance.js";
import { about } from "../../src/ir/errors.js";
import type { CulpritSummary, PageResult, RunRequest, WorkerMessage } from "./protocol.js";
import { ort, runtimeName, VERIFY_LIMIT_BYTES } from "./runtime-web.js";

declare const FileReaderSync: { new (): { readAsArrayBuffer(blob: Blob): ArrayBuffer } };
/** package.json's version, put in by web/build.mjs. */
declare const __REPARAM_VERSION__: string;
declare function postMessage(message: WorkerMessage): void;

// onnxruntime-web fetches its WebAssembly from beside this script (copied there by web/build.mjs),
// never from a CDN. Threads need a cross-origin-isolated page (COOP/COEP headers); elsewhere one.
const here = new URL("./", self.location.href).href;
ort.env.wasm.wasmPaths = here;
ort.env.wasm.numThreads = (self as unknown as { crossOriginIsolated?: boolean }).crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
ort.env.logLevel = "error";

const progress = (stage: string) => postMessage({ type: "progress", stage });

/** The external data files the user picked with the model, read lazily (FileReaderSync: workers only). */
function pickedFiles(files: File[], modelName: string): ExternalFiles {
  const find = (location: string, tensorName: string): File => {
    const base = location.split("/").pop()!;
    const file = files.find((f) => f.name === location) ?? files.find((f) => f.name === base);
    if (!file) throw new ModelError(`initializer '${tensorName}': external data file '${location}' was not picked with ${modelName} (select it together with the model)`);
    return file;
  };
  return {
    size: (location, tensorName) => find(location, tensorName).size,
    read: (location, offset, length, tensorName) =>
      new Uint8Array(new FileReaderSync().readAsArrayBuffer(find(location, tensorName).slice(offset, offset + length))),
  };
}

function outputName(input: string): string {
  return `${input.replace(/\.onnx$/i, "")}-deploy.onnx`;
}

async function run(request: RunRequest): Promise<PageResult> {
  const { model: file, data, options } = request;
  const input = file.name;
  const t0 = performance.now();
  progress(`reading ${input} (${(file.size / 2 ** 20).toFixed(1)} MiB)`);
  const bytes = new Uint8Array(await file.arrayBuffer());
  const model = decodeModelBytes(bytes, input, pickedFiles(data, input));
  const readMs = performance.now() - t0;
  const weightBytes = [...model.graph.initializers.values()].reduce((n, t) => n + t.byteLength, 0);
  if (options.verify && weightBytes > VERIFY_LIMIT_BYTES)
    throw new UsageError(`${input}: ${(weightBytes / 2 ** 30).toFixed(2)} GiB of weights, over the ${VERIFY_LIMIT_BYTES / 2 ** 30} GiB the page can verify in onnxruntime-web; use the CLI (or turn verification off here: the output is then not proven)`);
  progress("rewriting");
  // Let the progress message out before the synchronous passes run.
  await new Promise((r) => setTimeout(r, 0));
  const passOptions: OptimizeOptions = { shapes: options.shapes, fixShapes: options.fixShapes, maxMacGrowth: options.maxMacGrowth };
  const { model: optimized, report } = about(input, () => optimize(model, passOptions));
  let verification = null;
  let culprit: CulpritSummary | undefined;
  let verifyMs = 0;
  if (options.verify) {
    const t1 = performance.now();
    progress(`verifying in ${runtimeName}: running the original and the optimized model`);
    const verifyOptions: VerifyOptions = { shapes: options.shapes, tolerance: options.tolerance };
    verification = await verifyModels(model, optimized, verifyOptions);
    if (!verification.ok) {
      progress("verification failed: finding the rewrite responsible");
      const c = await findCulprit(model, report.rewrites, passOptions, verifyOptions);
      if (c) culprit = { node: c.rewrite.node, pass: c.rewrite.pass, summary: c.rewrite.summary, maxAbs: c.verification.maxAbs, maxRel: c.verification.maxRel };
    }
    verifyMs = performance.now() - t1;
  }
  const threads = ort.env.wasm.numThreads ?? 1;
  const runtime = `${runtimeName} ${ort.env.versions.web ?? ort.env.versions.common} (wasm, ${threads === 1 ? "1 thread" : `${threads} threads`})`;
  const result: PageResult = { input, report, verification, culprit, runtime, timings: { readMs, passesMs: report.timeMs, verifyMs, writeMs: 0 } };
  if (!verification || verification.ok) {
    const t2 = performance.now();
    progress("writing the output model");
    result.output = outputName(input);
    // The CLI's provenance entries; only the verification one differs (it names onnxruntime-web).
    const stamped = optimized.withMetadata(provenance(report, verification ?? undefined, __REPARAM_VERSION__, `onnxruntime-web ${ort.env.versions.web ?? ort.env.versions.common} wasm`));
    result.model = new Blob(about(input, () => modelToParts(stamped, result.output)) as BlobPart[], { type: "application/octet-stream" });
    result.timings.writeMs = performance.now() - t2;
  }
  return result;
}

/** One line, as the CLI prints it: user errors as they are, anything else flagged as a bug. */
function errorLine(e: unknown): string {
  if (e instanceof ModelError || e instanceof UsageError) return e.message;
  console.error(e);
  const first = (e instanceof Error ? e.message : String(e)).split("\n")[0];
  if (e instanceof RangeError || /out of memory|allocation failed|Array buffer allocation/i.test(first ?? ""))
    return `out of memory in the browser: ${first} (the model is too large for this page; use the CLI)`;
  return `internal error (a bug; please report it with the model): ${first}`;
}

self.onmessage = (event: MessageEvent<RunRequest>) => {
  run(event.data).then(
    (result) => postMessage({ type: "done", result }),
    (e) => postMessage({ type: "error", message: errorLine(e) }),
  );
};
