// The metadata_props every written model carries: that it was rewritten, by what, and whether
// (and where) it was proven — Netron shows these. Shared by the CLI and the web app, which differ
// only in the runtime that proved the model (onnxruntime-node / onnxruntime-web), so both write the
// same bytes for the same model and options up to that one entry.
import type { VerifyReport } from "../verify/verify.js";
import type { OptimizeReport } from "./optimize.js";

/** What an approximation changed (--approx-attention) and its measured end-to-end error. */
export interface ApproximationNote {
  replaced: string[];
  error?: { maxRel: number; top1Agreement: number; samples: number };
}

/** `version`: this tool's version; `runtime`: what verified, e.g. "onnxruntime-node 1.30.0 cpu". */
export function provenance(report: OptimizeReport, verification: VerifyReport | undefined, version: string, runtime: string, approximation?: ApproximationNote): Record<string, string> {
  const sci = (x: number) => x.toExponential(2);
  const entries: Record<string, string> = {
    "reparam-onnx.version": version,
    "reparam-onnx.passes": report.passes.map((p) => `${p.name} ${p.rewrites}`).join(", "),
    "reparam-onnx.rewrites": String(report.rewrites.length),
    "reparam-onnx.verification": verification
      ? `${verification.ok ? "OK" : "FAILED"}: ${runtime}, ${verification.inputSets} input sets at ${verification.shapeSets.map((set) => Object.entries(set).map(([k, v]) => `${k}=${v.join("x")}`).join(" ")).join(", ")}, max abs ${sci(verification.maxAbs)}, max rel ${sci(verification.maxRel)}, ${verification.criterion === "user" ? `tolerance ${sci(verification.tolerance)}` : "calibrated tolerance"}`
      : "NOT verified (--no-verify)",
  };
  if (approximation && approximation.replaced.length) {
    const e = approximation.error;
    entries["reparam-onnx.approximation"] = `APPROXIMATE: attention replaced by its calibration mean at ${approximation.replaced.join(", ")}${e ? `; max rel ${sci(e.maxRel)}, top-1 agreement ${(e.top1Agreement * 100).toFixed(1)}% on ${e.samples} calibration inputs` : ""}`;
  }
  return entries;
}
