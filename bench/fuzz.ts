// npm run fuzz [-- --count 5000 --seed 1 --family conv|fc|graph]: differential testing at length. Random
// linear blocks (bench/random-blocks.ts; --family fc: locality-injection blocks,
// bench/random-fc-blocks.ts) are optimized and verified in onnxruntime; prints every mismatch or
// crash with its spec (to replay: buildBlock(spec) / buildFcBlock(spec)) and a closing count.
// --family graph: whole random graphs through the CLI (bench/graph-fuzz.ts); --seed is the first
// seed, a failure prints its seed (replay one with --seed S --count 1 --keep), --spawn runs a
// process per graph instead of the CLI's main() in this process.
import { parseArgs } from "node:util";
import { optimize } from "../src/app/optimize.js";
import { verifyModels } from "../src/verify/verify.js";
import { buildFcBlock, fcBlockFailure, randomFcSpec } from "./random-fc-blocks.js";
import { buildBlock, randomSpec } from "./random-blocks.js";

const { values } = parseArgs({ options: { count: { type: "string" }, seed: { type: "string" }, family: { type: "string" }, spawn: { type: "boolean" }, keep: { type: "boolean" }, without: { type: "string", multiple: true } } });
const family = values.family ?? "conv";
if (family !== "conv" && family !== "fc" && family !== "graph") throw new Error(`--family is conv, fc or graph, not ${family}`);
const count = Number(values.count ?? 2000);
const seed = Number(values.seed ?? 1);
if (family === "graph") {
  const { runGraphFuzz, FAILURES } = await import("./graph-fuzz.js");
  const { ALL_FEATURES } = await import("./random-graphs.js");
  // --without dynamicSpatial|shapeOverride|ifBodies|externalData|float16|<fault name>: narrow the generator.
  const features = { ...ALL_FEATURES, faults: ALL_FEATURES.faults.filter((f) => !values.without?.includes(f)) };
  for (const w of values.without ?? []) {
    if (w in features && w !== "faults") (features as unknown as Record<string, boolean>)[w] = false;
    else if (!(ALL_FEATURES.faults as readonly string[]).includes(w)) throw new Error(`--without ${w}: not a feature (${Object.keys(ALL_FEATURES).filter((k) => k !== "faults").join(", ")}, ${ALL_FEATURES.faults.join(", ")})`);
  }
  const { tally, seconds } = await runGraphFuzz(seed, count, { spawn: values.spawn, keep: values.keep, features, progressEvery: 100 });
  const silent = FAILURES.reduce((s, v) => s + tally[v], 0);
  console.log(`${count} graphs (seeds ${seed}..${seed + count - 1}): ${tally.equal} equal, ${tally.caught} caught by verification (exit 1), ${tally["refused-fault"]} injected faults refused; ` +
    `${tally.mismatch} silent mismatches, ${tally["modified-input"]} modified inputs, ${tally.crash} crashes, ${tally["wrong-file"]} wrong-file refusals, ${tally.rejected} valid models rejected, ${tally["false-refusal"]} false refusals (exit 1 for an equal model), ${tally.costlier} costlier than the bound, ${tally["missed-fault"]} missed faults, ${tally.generator} generator errors (${seconds.toFixed(1)} s)`);
  process.exit(silent ? 1 : 0);
}
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
