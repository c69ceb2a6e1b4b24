// Fixture manifests (fixtures/models/*.json) and the structural comparisons the fixture tests share.
import * as fs from "node:fs";
import type { Model } from "../../src/ir/graph.js";

export const FIXTURES = new URL("../../fixtures/models/", import.meta.url).pathname;

export interface FixtureEntry {
  file: string;
  case: string;
  form: string;
  opset: number;
  expect: "fold" | "unfolded";
  deploy: string | null;
  why?: string;
  deploy_out_channels?: number[];
  weight_floats?: number;
  deploy_weight_floats?: number;
  histogram_ignore?: string[];
}

export function readManifest(name: string): FixtureEntry[] {
  return JSON.parse(fs.readFileSync(FIXTURES + name, "utf8")) as FixtureEntry[];
}

/** Op-type histogram, sorted by op name (optionally ignoring some op types). */
export function histogram(m: Model, ignore: string[] = []): Record<string, number> {
  const h: Record<string, number> = {};
  for (const n of m.graph.nodes) if (!ignore.includes(n.opType)) h[n.opType] = (h[n.opType] ?? 0) + 1;
  return Object.fromEntries(Object.entries(h).sort(([a], [b]) => a.localeCompare(b)));
}
