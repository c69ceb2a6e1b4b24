// onnxruntime in its own process, timed:
//   ort-child IN OUT [--external-data]   its offline optimization of IN (optimizedModelFilePath)
//   ort-child --load A B                 loading A then B (one session at a time, released in between),
//                                        as verification does: the floor a verification is measured against
import * as ort from "onnxruntime-node";
import { peakRssBytes } from "./peak-memory.js";

const args = process.argv.slice(2);
const startRssBytes = process.memoryUsage().rss;
if (args[0] === "--load") {
  const t0 = performance.now();
  for (const file of args.slice(1, 3)) {
    const session = await ort.InferenceSession.create(file, { executionProviders: ["cpu"], graphOptimizationLevel: "all", logSeverityLevel: 3 });
    await session.release();
  }
  process.stdout.write(JSON.stringify({ ortLoadMs: performance.now() - t0, maxRssBytes: peakRssBytes() }) + "\n");
} else {
  const [input, output] = args as [string, string];
  const t0 = performance.now();
  // Over 2 GiB, onnxruntime can only write its optimized model with external initializers.
  const big = args.includes("--external-data");
  const session = await ort.InferenceSession.create(input, {
    graphOptimizationLevel: "all", optimizedModelFilePath: output, logSeverityLevel: 3,
    ...(big ? { extra: { session: { optimized_model_external_initializers_file_name: `${output.split("/").pop()}.data`, optimized_model_external_initializers_min_size_in_bytes: "1024" } } } : {}),
  });
  const t1 = performance.now();
  await session.release();
  process.stdout.write(JSON.stringify({ ortOptimizeMs: t1 - t0, maxRssBytes: peakRssBytes(), startRssBytes }) + "\n");
}
