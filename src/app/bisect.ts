// When verification fails, find the rewrite responsible: re-apply growing prefixes of the
// rewrite sequence (binary search, so O(log n) verifications) and verify each. With
// --skip-failing the culprit is declined and the rest re-applied and verified again, so a user
// blocked by one bad rewrite keeps all the others.
import type { Model } from "../ir/graph.js";
import { verifyModels, type VerifyOptions, type VerifyReport } from "../verify/verify.js";
import { optimize, type OptimizeOptions, type OptimizeReport } from "./optimize.js";
import type { RewriteRecord } from "../pipeline/rule.js";

export interface Culprit {
  rewrite: RewriteRecord;
  /** Verification of the smallest failing prefix (its error is the culprit's). */
  verification: VerifyReport;
}

async function attempt(model: Model, options: OptimizeOptions, allowed: Set<string>, denied: Set<string>, verify: VerifyOptions) {
  const { model: out, report } = optimize(model, { ...options, filter: (k) => allowed.has(k) && !denied.has(k) });
  return { out, report, verification: await verifyModels(model, out, verify) };
}

/** The first rewrite in `records` whose inclusion makes verification fail, or undefined. */
export async function findCulprit(model: Model, records: RewriteRecord[], options: OptimizeOptions, verify: VerifyOptions, denied = new Set<string>()): Promise<Culprit | undefined> {
  if (records.length === 0) return undefined; // nothing rewritten: no rewrite to blame
  let lo = 0, hi = records.length; // invariant: prefix lo passes, prefix hi fails
  let failing: VerifyReport | undefined;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    const r = await attempt(model, options, new Set(records.slice(0, mid).map((x) => x.key)), denied, verify);
    if (r.verification.ok) lo = mid;
    else [hi, failing] = [mid, r.verification];
  }
  if (!failing) {
    const r = await attempt(model, options, new Set(records.slice(0, hi).map((x) => x.key)), denied, verify);
    if (r.verification.ok) return undefined; // not reproducible by prefixes: no single culprit
    failing = r.verification;
  }
  return { rewrite: records[hi - 1]!, verification: failing };
}

export interface SkipResult {
  culprits: Culprit[];
  model: Model;
  report: OptimizeReport;
  verification: VerifyReport;
}

/** Decline culprits one by one until the optimized model verifies (at most `limit` culprits). */
export async function skipFailing(model: Model, first: OptimizeReport, options: OptimizeOptions, verify: VerifyOptions, limit = 16): Promise<SkipResult | undefined> {
  const culprits: Culprit[] = [];
  const denied = new Set<string>();
  let records = first.rewrites;
  for (let i = 0; i < limit; i++) {
    const culprit = await findCulprit(model, records, options, verify, denied);
    if (!culprit) return undefined;
    culprits.push(culprit);
    denied.add(culprit.rewrite.key);
    const { model: out, report } = optimize(model, { ...options, filter: (k) => !denied.has(k) });
    const verification = await verifyModels(model, out, verify);
    if (verification.ok) return { culprits, model: out, report, verification };
    records = report.rewrites;
  }
  return undefined;
}
