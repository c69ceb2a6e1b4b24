// Rewrites of layers that share weights (recursion, SReT) produce identical new initializers at
// each use: merge them again so shared weights stay shared. Only initializers that the pipeline
// created are considered; the model's own are left exactly as they were. Rooted on a reader of
// the later copy; the earliest identical initializer (in the model's order) is the one kept.
import { rawBytes, type Tensor } from "../ir/tensor.js";
import type { RuleContext } from "../pipeline/context.js";
import { notCandidate, type Match, type Rule } from "../pipeline/rule.js";

/** Tensors never change once made: each is hashed once, however many rounds the pipeline runs. */
const fingerprints = new WeakMap<Tensor, string>();
const sketches = new WeakMap<Tensor, string>();

function fingerprint(t: Tensor): string {
  let key = fingerprints.get(t);
  if (key === undefined) fingerprints.set(t, (key = hash(t)));
  return key;
}

/**
 * A cheap first key (dtype, dims, 256 bytes spread over the data): the full hash reads every byte
 * (a third of the pipeline's time on RepVGG-A0), and only tensors that share a sketch need it.
 */
function sketch(t: Tensor): string {
  let key = sketches.get(t);
  if (key === undefined) {
    const bytes = rawBytes(t.data());
    let h = 0x811c9dc5;
    const step = Math.max(1, Math.floor(bytes.length / 256));
    for (let i = 0; i < bytes.length; i += step) h = Math.imul(h ^ bytes[i]!, 0x01000193);
    sketches.set(t, (key = `${t.dtype}:${t.dims.join("x")}:${bytes.length}:${h >>> 0}`));
  }
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

/** Each initializer this run created that has an identical earlier one, mapped to that one. */
function twins(ctx: RuleContext): Map<string, string> {
  return ctx.memo("dedupe-initializers:twins", () => {
    const seen = new Map<string, Tensor[]>();
    const twinOf = new Map<string, string>();
    for (const t of ctx.graph.initializers.values()) {
      if (!ctx.created.has(t.name) || t.size < 2) continue; // the model's own tensors are not touched
      // Identical tensors share a sketch and a fingerprint: the earliest equal one is the twin.
      const key = sketch(t);
      const bucket = seen.get(key);
      if (!bucket) {
        seen.set(key, [t]);
        continue;
      }
      const twin = bucket.find((u) => fingerprint(u) === fingerprint(t) && equal(u, t));
      if (twin) twinOf.set(t.name, twin.name);
      else bucket.push(t);
    }
    return twinOf;
  });
}

interface DuplicateMatch extends Match {
  copy: string;
  twin: string;
}

export const dedupeInitializers: Rule<DuplicateMatch> = {
  name: "dedupe-initializers",
  description: "merge identical initializers created by rewrites (keeps shared weights shared)",
  benefit: 50,
  match(root, ctx) {
    if (ctx.created.size === 0 || !root.inputs.some((i) => ctx.created.has(i))) return notCandidate("reads no rewritten initializer");
    const twinOf = twins(ctx);
    const copy = root.inputs.find((i) => twinOf.has(i) && !ctx.isGraphOutput(i));
    if (!copy) return notCandidate("its initializers are unique");
    const twin = twinOf.get(copy)!;
    if (ctx.graph.renameCapturedBy(copy, twin)) return notCandidate(`a subgraph reading '${copy}' defines its own '${twin}'`);
    return { anchor: root, remove: [], copy, twin };
  },
  rewrite({ copy, twin }) {
    return { replaceUses: [{ from: copy, to: twin }], collect: [copy], summary: `'${copy}' is identical to '${twin}': shared` };
  },
};
