// npm run fuzz [-- --count 5000 --seed 1 --family conv|fc]: differential testing at length. Random
// linear blocks (bench/random-blocks.ts; --family fc: locality-injection blocks,
// bench/random-fc-blocks.ts) are optimized and verified in onnxruntime; prints every mismatch or
// crash with its spec (to replay: buildBlock(spec) / buildFcBlock(spec)) and a closing count.
import { parseArgs } from "node:util";
import { optimize } from "../src/pipeline/optimize.js";
import { verifyModels } from "../src/verify/verify.js";
import { buildFcBlock, fcBlockFailure, randomFcSpec } from "./random-fc-blocks.js";
import { buildBlock, randomSpec } from "./random-blocks.js";

const { values } = parseArgs({ options: { count: { type: "string" }, seed: { type: "string" }, family: { type: "string" } } });
const family = values.family ?? "conv";
if (family !== "conv" && family !== "fc") throw new Error(`--family is conv or fc, not ${family}`);
const count = Number(values.count ?? 2000);
const seed = Number(values.seed ?? 1);
let ok = 0, mismatches = 0, crashes = 0, notFolded = 0;
const t0 = performance.now();
for (let i = 0; i < count; i++) {
  if (family === "fc") {
    const spec = randomFcSpec(seed * 1_000_003 + i);
    try {
      const model = buildFcBlock(spec);
      const { model: out, report } = optimize(model);
      const v = await verifyModels(model, out, { runs: 2 });
      const failure = v.ok ? fcBlockFailure(spec, out, report.refusals) : undefined;
      if (!v.ok) mismatches++;
      else if (failure) notFolded++;
      else ok++;
      if (!v.ok || failure) console.log(`${v.ok ? `NOT FOLDED (${failure})` : `MISMATCH max rel ${v.maxRel.toExponential(2)}`}: ${JSON.stringify(spec)}`);
    } catch (e) {
      crashes++;
      console.log(`CRASH ${(e as Error).message}: ${JSON.stringify(spec)}`);
    }
    if ((i + 1) % 500 === 0) console.error(`${i + 1}/${count} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    continue;
  }
  const spec = randomSpec(seed * 1_000_003 + i);
  try {
    const model = buildBlock(spec);
    const { model: out, report } = optimize(model);
    const costBound = report.refusals.some((r) => /raise MACs/.test(r.reason)) || report.rewrites.some((r) => /raise MACs/.test(r.summary));
    const v = await verifyModels(model, out, { runs: 2 });
    if (!v.ok) {
      mismatches++;
      console.log(`MISMATCH max rel ${v.maxRel.toExponential(2)}: ${JSON.stringify(spec)}`);
      continue;
    }
    const convs = out.graph.nodes.filter((n) => n.opType === "Conv").length;
    if (!spec.negative && !costBound && spec.branches.some((b) => b !== "identity") && convs !== 1) {
      notFolded++;
      console.log(`NOT FOLDED (${convs} convs): ${JSON.stringify(spec)}`);
      continue;
    }
    ok++;
  } catch (e) {
    crashes++;
    console.log(`CRASH ${(e as Error).message}: ${JSON.stringify(spec)}`);
  }
  if ((i + 1) % 500 === 0) console.error(`${i + 1}/${count} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
}
console.log(`${count} graphs: ${ok} folded and verified, ${mismatches} mismatches, ${notFolded} not fully folded, ${crashes} crashes (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
process.exitCode = mismatches || crashes || notFolded ? 1 : 0;
