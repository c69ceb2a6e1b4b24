// onnxruntime's own offline optimization of a file (optimizedModelFilePath), timed in its own process.
import * as ort from "onnxruntime-node";

const [input, output] = process.argv.slice(2) as [string, string];
const t0 = performance.now();
const session = await ort.InferenceSession.create(input, { graphOptimizationLevel: "all", optimizedModelFilePath: output, logSeverityLevel: 3 });
const t1 = performance.now();
await session.release();
process.stdout.write(JSON.stringify({ ortOptimizeMs: t1 - t0, maxRssBytes: process.resourceUsage().maxRSS * 1024 }) + "\n");
