// The onnxruntime that verify runs models in, and the two things around it that need Node: the
// CUDA provider's libraries on disk, and loading a model too large to pass as bytes from a file.
// This is the Node runtime (onnxruntime-node). The web app's build (web/build.mjs) puts
// web/src/runtime-web.ts in this file's place: onnxruntime-web (WebAssembly) with the same exports,
// so verify.ts, which imports only this seam, is one file for the CLI and the browser.
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import type { Model } from "../ir/graph.js";
import { loadModel, saveModel } from "../ir/io.js";

export * as ort from "onnxruntime-node";

/** Names the runtime in reports. */
export const runtimeName: string = "onnxruntime-node";

/**
 * Whether the CUDA execution provider's libraries are installed beside onnxruntime-node's binding
 * (without them onnxruntime 1.30 throws "Failed to load shared library" and also prints a
 * multi-line error log to stderr); `dir` is where they are.
 */
export function cudaLibraries(): { ok: true; dir: string } | { ok: false; reason: string } {
  const libs =
    process.platform === "linux" ? ["libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"]
    : process.platform === "win32" ? ["onnxruntime_providers_shared.dll", "onnxruntime_providers_cuda.dll"]
    : undefined;
  if (!libs) return { ok: false, reason: `onnxruntime-node has no CUDA provider for ${process.platform}/${process.arch}` };
  let dir: string;
  try {
    const entry = createRequire(import.meta.url).resolve("onnxruntime-node"); // .../onnxruntime-node/dist/index.js
    dir = path.join(path.dirname(entry), "..", "bin", "napi-v6", process.platform, process.arch);
  } catch (e) {
    return { ok: false, reason: `cannot locate onnxruntime-node (${(e as Error).message.split("\n")[0]})` };
  }
  for (const lib of libs)
    if (!fs.existsSync(path.join(dir, lib))) return { ok: false, reason: `${lib} is not installed in ${dir}` };
  return { ok: true, dir };
}

/**
 * Run `use` on a file holding `model`, for models over protobuf's 2 GiB that cannot be handed to
 * onnxruntime as bytes: written with external data to a temporary folder, removed afterwards.
 */
export async function withModelFile<T>(model: Model, use: (file: string) => Promise<T>): Promise<T> {
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-onnx-verify-"));
  try {
    const file = path.join(tmpDir, "model.onnx");
    saveModel(model, file, { externalData: true });
    return await use(file);
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}

/**
 * The reference model read again from the file it was loaded from: the proof then compares the
 * candidate with what the file says, not with objects in memory the candidate shares tensors with
 * (a pass that changed a shared weight in place would change both alike and prove nothing), and
 * verification may move that private copy's weights in place for its noise samples.
 */
export function referenceFromFile(file: string): Model | undefined {
  return loadModel(file);
}
