// Whole random graphs through the CLI as users run it (bench/graph-fuzz.ts; `npm run fuzz -- --family
// graph` runs thousands): exit 0 implies equal outputs in onnxruntime at several shapes on inputs the
// tool never saw, input files are never modified, refusals name the right file, nothing crashes.
import { describe, expect, it } from "vitest";
import { runGraphCase, runGraphFuzz, type CaseResult } from "../bench/graph-fuzz.js";
import { ALL_FEATURES, type GraphFeatures } from "../bench/random-graphs.js";

// Every generator feature is on: If bodies reading outer tensors, dynamic H/W, --shape and
// --fix-shapes, external data, float16 bodies, injected faults (issue 11's classes 1–4 all land here).
const features: GraphFeatures = ALL_FEATURES;

const summary = (rs: CaseResult[]) => rs.map((r) => `${r.verdict} seed ${r.seed} [${r.tags.join(" ")}]: ${r.detail}\n  args: ${r.args.slice(3).join(" ")}\n  ops: ${r.ops.join(" · ")}`).join("\n");

describe("random whole graphs through the CLI", () => {
  // Every failure verdict counts here: silent mismatches, modified inputs, crashes, wrong files,
  // valid models rejected, false refusals, and outputs costlier than the growth bound at some shape.
  it("a spawned CLI per graph: no failure of any kind", async () => {
    const results: CaseResult[] = [];
    for (let seed = 9001; seed < 9009; seed++) results.push(await runGraphCase(seed, { features, spawn: true }));
    const failed = results.filter((r) => !["equal", "caught", "refused-fault"].includes(r.verdict));
    expect(failed, summary(failed)).toEqual([]);
    // The cases did something: most wrote a model that was then compared.
    expect(results.filter((r) => r.verdict === "equal").length).toBeGreaterThan(3);
  }, 120_000);

  it("100 graphs through the CLI's main(): no failure of any kind", async () => {
    // main() from the source (one module graph with this test: the built one would bring a second protobuf runtime).
    const cliModule = new URL("../src/cli/main.ts", import.meta.url).pathname;
    const { tally, failures } = await runGraphFuzz(1, 100, { features, cliModule, log: () => {} });
    console.log(`random graphs 1..100: ${JSON.stringify(tally)}`);
    expect(failures, summary(failures)).toEqual([]);
    expect(tally.equal).toBeGreaterThan(60);
    expect(tally["refused-fault"]).toBeGreaterThan(0);
  }, 240_000);
});
