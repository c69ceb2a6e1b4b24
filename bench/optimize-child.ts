// One optimizer run in its own process, so the benchmark can read its peak memory.
import { loadModel, saveModel } from "../src/ir/io.js";
import { optimize } from "../src/app/optimize.js";
import { peakRssBytes } from "./peak-memory.js";

const [input, output] = process.argv.slice(2) as [string, string];
// What the process holds before it reads the model (Node, the modules): the floor of any run.
const startRssBytes = process.memoryUsage().rss;
const t0 = performance.now();
const model = loadModel(input);
const t1 = performance.now();
const { model: out, report } = optimize(model);
const t2 = performance.now();
const written = saveModel(out, output, { externalData: process.argv.includes("--external-data") });
const t3 = performance.now();
process.stdout.write(JSON.stringify({
  loadMs: t1 - t0, passesMs: t2 - t1, writeMs: t3 - t2, totalMs: t3 - t0,
  maxRssBytes: peakRssBytes(), startRssBytes, outBytes: written.bytes + written.dataBytes,
  rewrites: report.rewrites.length, nodesBefore: report.before.nodes, nodesAfter: report.after.nodes,
}) + "\n");
