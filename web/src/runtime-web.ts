// The browser's side of src/verify/runtime.ts: web/build.mjs bundles this file in its place, so
// verify.ts runs unchanged on onnxruntime-web (WebAssembly). Same exports as the Node runtime;
// the check at the end makes the compiler say so when one of them changes.
import { UsageError } from "../../src/ir/errors.js";
import type { Model } from "../../src/ir/graph.js";
import type * as NodeRuntime from "../../src/verify/runtime.js";

export * as ort from "onnxruntime-web/wasm";

export const runtimeName = "onnxruntime-web";

export function cudaLibraries(): { ok: false; reason: string } {
  return { ok: false, reason: "onnxruntime-web has no CUDA provider (the page verifies on WebAssembly)" };
}

/**
 * The most weight bytes the page verifies. onnxruntime-web's WebAssembly memory (wasm32: 4 GiB)
 * holds the model's bytes and its weights while a session loads; measured in Chromium 156
 * (npm run web:size): 1162 MiB of weights verify, 1279 MiB fail with std::bad_alloc after a minute
 * or more. The worker refuses larger models before any work.
 */
export const VERIFY_LIMIT_BYTES = 1.15 * 2 ** 30;

/** Node loads models over protobuf's 2 GiB from a temporary file; a page has no file system. */
export async function withModelFile<T>(_model: Model, _use: (file: string) => Promise<T>): Promise<T> {
  throw new UsageError(`over ${VERIFY_LIMIT_BYTES / 2 ** 30} GiB of weights, more than the page can verify (use the CLI)`);
}

/** A page has the model in memory only: verification proves against it as given. */
export function referenceFromFile(_file: string): Model | undefined {
  return undefined;
}

const sameExports: Omit<typeof NodeRuntime, "ort"> = { runtimeName, cudaLibraries, withModelFile, referenceFromFile };
void sameExports;
