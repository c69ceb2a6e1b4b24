// Messages between the page (main.ts) and the worker that runs the compiler (worker.ts).
import type { OptimizeReport, VerifyReport } from "../../src/core.js";

/** The options the page offers: the CLI's --shape, --fix-shapes, --tolerance, --max-mac-growth (1: --no-costlier) and --no-verify. */
export interface PageOptions {
  shapes?: Record<string, number[]>;
  fixShapes: boolean;
  tolerance?: number;
  maxMacGrowth?: number;
  verify: boolean;
}

export interface RunRequest {
  type: "run";
  model: File;
  /** External data files picked with the model (matched by location, then by file name). */
  data: File[];
  options: PageOptions;
}

export interface CulpritSummary {
  node: string;
  pass: string;
  summary: string;
  maxAbs: number;
  maxRel: number;
}

export interface PageResult {
  input: string;
  /** Download name; undefined when verification failed (nothing is offered). */
  output?: string;
  model?: Blob;
  report: OptimizeReport;
  /** null with verification off (the output is then NOT proven). */
  verification: VerifyReport | null;
  culprit?: CulpritSummary;
  runtime: string;
  timings: { readMs: number; passesMs: number; verifyMs: number; writeMs: number };
}

export type WorkerMessage =
  | { type: "progress"; stage: string }
  | { type: "done"; result: PageResult }
  | { type: "error"; message: string };
