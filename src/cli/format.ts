// Human-readable reports (the CLI's default output); --json prints the same objects as JSON.
import Table from "cli-table3";
import type { OptimizeReport } from "../app/optimize.js";
import type { ModelStats } from "../app/stats.js";
import type { VerifyReport } from "../verify/verify.js";

const num = (n: number) => n.toLocaleString("en-US");
const sci = (n: number) => (Number.isFinite(n) ? n.toExponential(2) : String(n));
export const ms = (t: number) => (t < 1000 ? `${t.toFixed(0)} ms` : `${(t / 1000).toFixed(2)} s`);

/**
 * The before → after table (as onnxsim prints it): one row per op type, then the totals.
 * Indented by two spaces like the report's other lines.
 */
export function opTable(before: ModelStats, after: ModelStats): string[] {
  const table = new Table({ head: ["op", "before", "after"], colAligns: ["left", "right", "right"], style: { head: [], border: [], compact: true } });
  const ops = [...new Set([...Object.keys(before.ops), ...Object.keys(after.ops)])].sort();
  for (const op of ops) table.push([op, before.ops[op] ?? 0, after.ops[op] ?? 0]);
  table.push([{ colSpan: 3, content: "" }]);
  table.push(["nodes", num(before.nodes), num(after.nodes)]);
  table.push(["conv weights (elements)", num(before.convWeights), num(after.convWeights)]);
  table.push(["weights (bytes)", num(before.weightBytes), num(after.weightBytes)]);
  if (before.macs || after.macs) table.push(["MACs per input", num(before.macs), num(after.macs)]);
  return table.toString().split("\n").map((l) => `  ${l}`);
}

export function formatOptimize(report: OptimizeReport, explain: boolean): string[] {
  const { before, after } = report;
  const lines: string[] = [];
  lines.push(`  dtype ${after.dtype}`);
  for (const p of report.passes) lines.push(`  pass ${p.name}: ${p.rewrites} rewrite${p.rewrites === 1 ? "" : "s"}, ${p.refusals} left alone (${ms(p.timeMs)})`);
  const c = report.convergence;
  if (c && !c.converged) lines.push(`  note: the rules were still rewriting after ${c.rounds} rounds (${c.stillFiring ?? "?"}): the model is proven as usual but may fold further`);
  lines.push(...opTable(before, after));
  for (const o of report.shapeOverrides ?? [])
    lines.push(o.fixed
      ? `  fixed input shape ${o.input} ${o.dims.join("x")} (--fix-shapes; declared ${o.declared.join("x")}): the output accepts this shape only`
      : `  --shape ${o.input}=${o.dims.join("x")} fixes dims the model leaves dynamic (${o.declared.join("x")}): used to verify, not to rewrite; rewrites that need those dims are left alone (--fix-shapes writes the shape into the output and allows them)`);
  if (explain) {
    for (const r of report.rewrites) lines.push(`  rewrite ${r.node}: ${r.summary}${r.macsBefore ? ` (MACs ${num(r.macsBefore)} → ${num(r.macsAfter ?? 0)})` : ""}`);
    for (const r of report.refusals) lines.push(`  left alone ${r.node} (${r.op}): ${r.reason}`);
  } else if (report.refusals.length) {
    lines.push(`  ${report.refusals.length} candidate${report.refusals.length === 1 ? "" : "s"} left alone (--explain says why)`);
  }
  return lines;
}

export function formatVerify(v: VerifyReport): string[] {
  const shapes = [...new Set(v.shapeSets.map((set) => Object.entries(set).map(([k, s]) => `${k}=${s.join("x")}`).join(" ")))].join(", ");
  const criterion =
    v.criterion === "user" ? `atol ${sci(v.atol ?? 0)}, rtol ${sci(v.rtol ?? 0)}, tolerance ${sci(v.tolerance)}`
    : v.criterion === "floor" ? "floor of each output's precision; no reference model to measure its noise"
    : `calibrated${v.calibrated ? ", noise measured" : ""}`;
  const lines = [`  verify (${v.provider}, ${v.inputSets} input set${v.inputSets === 1 ? "" : "s"} at ${shapes}): max abs ${sci(v.maxAbs)}, max rel ${sci(v.maxRel)} (${criterion}) ${v.ok ? "OK" : "FAILED"}`];
  for (const o of v.outputs) {
    const allowed = v.criterion === "user" ? "" : `, allowed ${sci(o.allowedRel)} rel (${o.precision ?? "exact"}${o.noiseRel !== undefined ? `, noise ${sci(o.noiseRel)}` : ""})`;
    const extra = [
      o.referenceNonFinite ? `${o.referenceNonFinite} NaN/Inf in the reference (not compared)` : "",
      o.inconclusiveSets ? `${o.inconclusiveSets} input set(s) inconclusive` : "",
    ].filter(Boolean).join(", ");
    lines.push(`    output '${o.name}' ${o.shapes.map((s) => `[${s.join(",")}]`).join(" ")}: max abs ${sci(o.maxAbs)}, max rel ${sci(o.maxRel)}${allowed}${extra ? `; ${extra}` : ""} ${o.ok ? "OK" : "FAILED"}`);
    if (!o.ok && o.reason) lines.push(`      ${o.reason}`);
  }
  for (const n of v.notes) lines.push(`    note: ${n}`);
  return lines;
}
