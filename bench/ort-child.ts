// onnxruntime's own offline optimization of a file (optimizedModelFilePath), timed in its own process.
import * as ort from "onnxruntime-node";
import { peakRssBytes } from "./peak-memory.js";

const [input, output] = process.argv.slice(2) as [string, string];
const t0 = performance.now();
// Over 2 GiB, onnxruntime can only write its optimized model with external initializers.
const big = process.argv.includes("--external-data");
const session = await ort.InferenceSession.create(input, {
  graphOptimizationLevel: "all", optimizedModelFilePath: output, logSeverityLevel: 3,
  ...(big ? { extra: { session: { optimized_model_external_initializers_file_name: `${output.split("/").pop()}.data`, optimized_model_external_initializers_min_size_in_bytes: "1024" } } } : {}),
});
const t1 = performance.now();
await session.release();
process.stdout.write(JSON.stringify({ ortOptimizeMs: t1 - t0, maxRssBytes: peakRssBytes() }) + "\n");
