// Rewrites of layers that share weights (recursion, SReT) produce identical new initializers at
// each use: merge them again so shared weights stay shared. Only initializers that the pipeline
// created are considered; the model's own are left exactly as they were.
import type { Pass } from "../src/pipeline/pass.js";
import { rawBytes, type Tensor } from "../src/ir/tensor.js";

/** Tensors never change once made: each is hashed once, however many rounds the pipeline runs. */
const fingerprints = new WeakMap<Tensor, string>();

function fingerprint(t: Tensor): string {
  let key = fingerprints.get(t);
  if (key === undefined) fingerprints.set(t, (key = hash(t)));
  return key;
}

function hash(t: Tensor): string {
  const bytes = rawBytes(t.data());
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return `${t.dtype}:${t.dims.join("x")}:${bytes.length}:${h >>> 0}`;
}

function equal(a: Tensor, b: Tensor): boolean {
  const x = rawBytes(a.data()), y = rawBytes(b.data());
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

export const dedupeInitializers: Pass = {
  name: "dedupe-initializers",
  description: "merge identical initializers created by rewrites (keeps shared weights shared)",
  run(ctx) {
    const seen = new Map<string, Tensor[]>();
    for (const t of ctx.graph.initializers.values()) {
      if (!ctx.rewriter.created.has(t.name) || t.size < 2) continue; // the model's own tensors are not touched
      const key = fingerprint(t);
      const twin = (seen.get(key) ?? []).find((u) => equal(u, t));
      if (!twin) {
        seen.set(key, [...(seen.get(key) ?? []), t]);
        continue;
      }
      const readers = ctx.consumers(t.name);
      if (readers.length === 0 || ctx.isGraphOutput(t.name)) continue;
      ctx.rewriter.replaceAllUses(t.name, twin.name);
      ctx.rewriter.replace({ pass: dedupeInitializers.name, anchor: readers[0]!, remove: [], add: [], collect: [t.name], summary: `'${t.name}' is identical to '${twin.name}': shared` });
      return true;
    }
    return false;
  },
};
