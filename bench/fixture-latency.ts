// npm run bench:fixtures [-- --cases forms_ --manifests forms.json --batch 8 --rounds 200 --json out.json]
//
// For every training-form fixture that has a hand-fused deploy file (fixtures/models/*.json): optimize
// it, then time the input, our output and the authors' deploy model in onnxruntime (CPU, one intra-op
// thread, graph optimization "all", so onnxruntime's own fusions apply to all three), round-robin in
// one process so that load from other jobs spreads evenly; report out/in and out/deploy latency ratios
// from that one run, and whether the output reaches the deploy structure (no op type more often than in
// the deploy file, Conv weights no larger) and matches the input in onnxruntime.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import type { Model } from "../src/ir/graph.js";
import { loadModel, saveModel } from "../src/ir/io.js";
import { optimize } from "../src/app/optimize.js";
import { verifyModels } from "../src/verify/verify.js";
import { medianLatencies } from "./latency.js";

const { values } = parseArgs({
  options: {
    manifests: { type: "string" }, cases: { type: "string" }, batch: { type: "string" },
    rounds: { type: "string" }, json: { type: "string" }, out: { type: "string" },
  },
});
const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, "../..");
const fixtures = path.join(root, "fixtures/models");
const outDir = path.resolve(values.out ?? path.join(root, "bench/out/fixtures"));
fs.mkdirSync(outDir, { recursive: true });
const manifests = (values.manifests ?? "manifest.json,compositions.json,attention.json,forms.json").split(",");
const caseFilter = values.cases ? new RegExp(values.cases) : undefined;
const batch = Number(values.batch ?? 8);
const rounds = Number(values.rounds ?? 200);

interface Entry { file: string; case: string; form: string; opset: number; deploy: string | null; input_shape: number[] }

/** A pooling over the whole map is one reduction whichever op writes it. */
const SAME_OP: Record<string, string> = { GlobalAveragePool: "AveragePool" };

/** Op-type histogram. */
function histogram(m: Model): Map<string, number> {
  const h = new Map<string, number>();
  for (const n of m.graph.nodes) {
    const op = SAME_OP[n.opType] ?? n.opType;
    h.set(op, (h.get(op) ?? 0) + 1);
  }
  return h;
}

/** Elements of the initializers that Conv nodes read as weights. */
function convWeights(m: Model): number {
  let total = 0;
  for (const n of m.graph.nodes) {
    if (n.opType !== "Conv") continue;
    const w = m.graph.initializers.get(n.inputs[1] ?? "");
    if (w) total += w.size;
  }
  return total;
}

/** The op types that occur more often in `out` than in `deploy` ("Conv+2"). */
function excess(out: Model, deploy: Model): string[] {
  const d = histogram(deploy);
  return [...histogram(out)].filter(([op, k]) => k > (d.get(op) ?? 0)).map(([op, k]) => `${op}+${k - (d.get(op) ?? 0)}`);
}

const latencies = (files: string[], shape: number[]) =>
  medianLatencies(files, shape, { rounds, warmup: 10, oneThread: true, phase: 0.37, amplitude: 2 });

const entries: Entry[] = manifests.flatMap((name) => {
  const p = path.join(fixtures, name);
  return fs.existsSync(p) ? (JSON.parse(fs.readFileSync(p, "utf8")) as Entry[]) : [];
}).filter((e) => e.deploy && (!caseFilter || caseFilter.test(e.file)));

const cpu = os.cpus();
console.log(`machine: ${cpu[0]?.model} x${cpu.length}, load ${os.loadavg()[0]!.toFixed(1)}, node ${process.version}, onnxruntime-node ${ort.env.versions.common}; ` +
  `CPU provider, 1 thread, batch ${batch}, ${rounds} rounds round-robin (median)`);
const rows: Record<string, string | number | boolean>[] = [];
for (const e of entries) {
  const input = path.join(fixtures, e.file);
  const deployFile = path.join(fixtures, e.deploy!);
  const outFile = path.join(outDir, e.file.replace(/\.onnx$/, ".reparam.onnx"));
  const model = loadModel(input);
  const { model: out } = optimize(model);
  saveModel(out, outFile);
  const deploy = loadModel(deployFile);
  const v = await verifyModels(loadModel(input), loadModel(outFile), { runs: 1 });
  const shape = [batch, ...e.input_shape.slice(1)];
  const [tIn, tOut, tDeploy] = await latencies([input, outFile, deployFile], shape);
  const more = excess(out, deploy);
  const row = {
    file: e.file.replace(/\.onnx$/, ""),
    nodes: `${model.graph.nodes.length}→${out.graph.nodes.length} (deploy ${deploy.graph.nodes.length})`,
    convWeights: `${convWeights(out)} (deploy ${convWeights(deploy)})`,
    reachesDeploy: more.length === 0 && convWeights(out) <= convWeights(deploy),
    overDeploy: more.join(" "),
    equal: v.ok,
    inMs: +tIn!.toFixed(3), outMs: +tOut!.toFixed(3), deployMs: +tDeploy!.toFixed(3),
    outVsIn: +(tOut! / tIn!).toFixed(2), outVsDeploy: +(tOut! / tDeploy!).toFixed(2),
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}

const geomean = (xs: number[]) => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / Math.max(1, xs.length));
console.log(`\n| fixture | nodes in→out (deploy) | Conv weights out (deploy) | reaches deploy | equal | out/in | out/deploy |`);
console.log(`|---|---|---|---|---|---|---|`);
for (const r of rows)
  console.log(`| ${r.file} | ${r.nodes} | ${r.convWeights} | ${r.reachesDeploy ? "yes" : `no: ${r.overDeploy || "Conv weights"}`} | ${r.equal ? "yes" : "NO"} | ${r.outVsIn} | ${r.outVsDeploy} |`);
const outVsIn = rows.map((r) => r.outVsIn as number);
const outVsDeploy = rows.map((r) => r.outVsDeploy as number);
console.log(`\n${rows.length} fixtures; geomean out/in ${geomean(outVsIn).toFixed(3)}, out/deploy ${geomean(outVsDeploy).toFixed(3)}; ` +
  `slower than input (out/in > 1.05): ${rows.filter((r) => (r.outVsIn as number) > 1.05).map((r) => r.file).join(", ") || "none"}; ` +
  `not reaching deploy: ${rows.filter((r) => !r.reachesDeploy).length}; not equal: ${rows.filter((r) => !r.equal).length}`);
if (values.json) fs.writeFileSync(values.json, JSON.stringify(rows, null, 2));
