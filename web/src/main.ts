// The page: picks files and options, hands them to the worker (worker.ts) and shows its report:
// the before → after op table, MACs and weight bytes, the verification, the rewrites and the
// candidates left alone, and a download link for the output. Errors are one line.
import type { OptimizeReport, VerifyReport } from "../../src/core.js";
import { parseShapeSpecs } from "../../src/cli/shape-spec.js";
import type { PageOptions, PageResult, RunRequest, WorkerMessage } from "./protocol.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const form = $<HTMLFormElement>("form");
const files = $<HTMLInputElement>("files");
const runButton = $<HTMLButtonElement>("run");
const stage = $("stage");
const busy = $<HTMLProgressElement>("busy");
const errorLine = $("error");
const resultView = $("result");

const num = (n: number) => n.toLocaleString("en-US");
const sci = (n: number) => (Number.isFinite(n) ? n.toExponential(2) : String(n));
const ms = (t: number) => (t < 1000 ? `${t.toFixed(0)} ms` : `${(t / 1000).toFixed(2)} s`);

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

function table(head: string[], rows: (Node | string)[][], rowAttrs: (i: number) => Record<string, string> = () => ({})): HTMLTableElement {
  return el("table", {}, el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((r, i) => el("tr", rowAttrs(i), ...r.map((c) => el("td", {}, c))))));
}

let worker: Worker | undefined;
let downloadUrl: string | undefined;
let timer: number | undefined;

function showError(message: string): void {
  errorLine.textContent = message;
  errorLine.hidden = false;
}

function setBusy(on: boolean, text: string): void {
  busy.hidden = !on;
  runButton.disabled = on || !files.files?.length;
  stage.textContent = text;
  document.body.dataset.state = on ? "busy" : "idle";
}

files.addEventListener("change", () => {
  runButton.disabled = !files.files?.length;
  stage.textContent = files.files?.length ? "Ready." : "Choose an .onnx file.";
});

/** A positive number from a text field, undefined when empty (as the CLI's number flags). */
function positive(id: string, flag: string): number | undefined {
  const text = $<HTMLInputElement>(id).value.trim();
  if (text === "") return undefined;
  const n = Number(text);
  if (!(Number.isFinite(n) && n > 0)) throw new Error(`${flag} '${text}': expected a positive number`);
  return n;
}

function readOptions(): PageOptions {
  // The CLI's --shape syntax (several separated by spaces).
  const shapes = parseShapeSpecs($<HTMLInputElement>("shapes").value.split(/\s+/).filter(Boolean));
  const fixShapes = $<HTMLInputElement>("fix-shapes").checked;
  if (fixShapes && !shapes) throw new Error("fix shapes needs input shapes (the shapes to write into the output)");
  return {
    shapes, fixShapes,
    tolerance: positive("tolerance", "tolerance"),
    maxMacGrowth: positive("max-mac-growth", "max MAC growth"),
    verify: $<HTMLInputElement>("verify").checked,
  };
}

/** The model among the picked files: the one .onnx file (or the only file); the rest is external data. */
function pickModel(picked: File[]): { model: File; data: File[] } {
  const onnx = picked.filter((f) => /\.onnx$/i.test(f.name));
  if (onnx.length > 1) throw new Error(`pick one .onnx model at a time (got ${onnx.map((f) => f.name).join(", ")})`);
  const model = onnx[0] ?? (picked.length === 1 ? picked[0] : undefined);
  if (!model) throw new Error(`no .onnx file among the picked files (${picked.map((f) => f.name).join(", ")})`);
  return { model, data: picked.filter((f) => f !== model) };
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  errorLine.hidden = true;
  resultView.hidden = true;
  resultView.replaceChildren();
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  let request: RunRequest;
  try {
    const { model, data } = pickModel([...(files.files ?? [])]);
    request = { type: "run", model, data, options: readOptions() };
  } catch (e) {
    showError((e as Error).message);
    return;
  }
  worker ??= new Worker("worker.js", { type: "module" });
  const started = performance.now();
  let current = "starting";
  const tick = () => setBusy(true, `${current} … ${((performance.now() - started) / 1000).toFixed(1)} s`);
  tick();
  timer = window.setInterval(tick, 200);
  const finish = () => {
    window.clearInterval(timer);
    worker!.onmessage = null;
    worker!.onerror = null;
  };
  worker.onmessage = (e: MessageEvent<WorkerMessage>) => {
    const msg = e.data;
    if (msg.type === "progress") {
      current = msg.stage;
      tick();
      return;
    }
    finish();
    if (msg.type === "error") {
      setBusy(false, `Failed after ${ms(performance.now() - started)}.`);
      showError(msg.message);
    } else {
      setBusy(false, `Done in ${ms(performance.now() - started)}.`);
      render(msg.result);
    }
  };
  worker.onerror = (e) => {
    finish();
    // A worker that dies (e.g. out of memory) is not reusable.
    worker?.terminate();
    worker = undefined;
    setBusy(false, "Failed.");
    showError(`the compiler's worker stopped: ${e.message || "out of memory or a browser limit (use the CLI for this model)"}`);
  };
  worker.postMessage(request);
});

function opTable(report: OptimizeReport): HTMLTableElement {
  const { before, after } = report;
  const ops = [...new Set([...Object.keys(before.ops), ...Object.keys(after.ops)])].sort();
  const rows: string[][] = ops.map((op) => [op, num(before.ops[op] ?? 0), num(after.ops[op] ?? 0)]);
  rows.push(["Nodes", num(before.nodes), num(after.nodes)]);
  rows.push(["MACs per input", num(before.macs), num(after.macs)]);
  rows.push(["Weight bytes", num(before.weightBytes), num(after.weightBytes)]);
  rows.push(["Conv weight elements", num(before.convWeights), num(after.convWeights)]);
  const t = table(["", "Original model", "Optimized model"], rows, (i): Record<string, string> => (i < ops.length && !after.ops[ops[i]!] ? { class: "gone" } : {}));
  t.id = "ops";
  return t;
}

function verificationView(v: VerifyReport | null, runtime: string, r: PageResult): HTMLElement {
  const box = el("section", { id: "verification", "data-ok": v ? String(v.ok) : "skipped" }, el("h2", {}, "Verification"));
  if (!v) {
    box.append(el("p", { class: "failed" }, "Skipped: the output is NOT proven equal to the input."));
    return box;
  }
  // The CLI's wording (src/cli/format.ts formatVerify), as a paragraph and a table.
  const shapes = [...new Set(v.shapeSets.map((set) => Object.entries(set).map(([k, s]) => `${k}=${s.join("x")}`).join(" ")))].join(", ");
  const criterion = v.criterion === "user" ? `tolerance ${sci(v.tolerance)}` : `calibrated${v.calibrated ? ", noise measured" : ""}`;
  box.append(el("p", {},
    el("span", { class: v.ok ? "ok" : "failed" }, v.ok ? "OK" : "FAILED"),
    ` — ${runtime}, ${v.inputSets} input set${v.inputSets === 1 ? "" : "s"} at ${shapes}: max abs error ${sci(v.maxAbs)}, max rel error ${sci(v.maxRel)} (${criterion}), ${ms(v.timeMs)}`));
  box.append(table(["Output", "shapes", "max abs error", "max rel error", "allowed rel", ""], v.outputs.map((o) => [
    o.name, o.shapes.map((s) => `[${s.join(",")}]`).join(" "), sci(o.maxAbs), sci(o.maxRel),
    `${sci(o.allowedRel)} (${o.precision ?? "exact"}${o.noiseRel !== undefined ? `, noise ${sci(o.noiseRel)}` : ""})`,
    o.ok ? "OK" : (o.reason ?? o.shapeMismatch ?? o.nonFinite ?? "FAILED"),
  ])));
  for (const n of v.notes) box.append(el("p", { class: "note" }, `Note: ${n}`));
  if (r.culprit)
    box.append(el("p", { class: "failed" }, `Rewrite responsible: ${r.culprit.node} [${r.culprit.pass}: ${r.culprit.summary}] (max rel ${sci(r.culprit.maxRel)}). Nothing is offered for download.`));
  else if (!v.ok) box.append(el("p", { class: "failed" }, "Nothing is offered for download."));
  return box;
}

function render(r: PageResult): void {
  const { report } = r;
  const parts: Node[] = [];
  const title = el("h2", {}, `${r.input}: ${report.before.nodes} → ${report.after.nodes} nodes, ${report.rewrites.length} rewrite${report.rewrites.length === 1 ? "" : "s"}`);
  parts.push(title);
  if (r.model && r.output) {
    downloadUrl = URL.createObjectURL(r.model);
    parts.push(el("a", { id: "download", class: "download", href: downloadUrl, download: r.output }, `Download ${r.output} (${num(r.model.size)} bytes)`));
  }
  parts.push(opTable(report));
  parts.push(verificationView(r.verification, r.runtime, r));
  parts.push(el("h2", {}, `Rewrites (${report.rewrites.length})`));
  parts.push(el("ul", { id: "rewrites" }, ...report.rewrites.map((w) => el("li", {}, el("code", {}, w.node), `: ${w.summary}`,
    w.macsBefore ? ` (MACs ${num(w.macsBefore)} → ${num(w.macsAfter ?? 0)})` : "", ` — ${w.pass}`))));
  parts.push(el("h2", {}, `Candidates left alone (${report.refusals.length})`));
  parts.push(el("ul", { id: "refusals" }, ...report.refusals.map((x) => el("li", {}, el("code", {}, x.node), ` (${x.op}): ${x.reason} — ${x.pass}`))));
  const t = r.timings;
  parts.push(el("p", { id: "timings" }, `Time: read ${ms(t.readMs)}, passes ${ms(t.passesMs)}, verify ${ms(t.verifyMs)}, write ${ms(t.writeMs)}.`));
  resultView.replaceChildren(...parts);
  resultView.hidden = false;
  resultView.dataset.state = "done";
}

setBusy(false, "Choose an .onnx file.");
