// Adversarial files: random bit flips and truncations of real models. Whatever the damage, the
// tool either works (and its output still verifies) or fails with a ModelError/UsageError — never
// another exception (which the CLI would report as an internal error with a stack trace).
import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { ModelError, UsageError } from "../src/ir/errors.js";
import { modelFromBytes } from "../src/ir/io.js";
import { optimize } from "../src/app/optimize.js";
import { verifyModels } from "../src/verify/verify.js";
import { rng } from "./helpers/random.js";

const FILES = ["demo_repvgg_net.onnx", "comp_dbb_k3_preserve_op13.onnx", "comp_orepa_s1_folded_op13.onnx"].map(
  (f) => new URL(`../fixtures/models/${f}`, import.meta.url).pathname,
);

async function survive(bytes: Uint8Array, label: string): Promise<"ok" | "rejected"> {
  try {
    const model = modelFromBytes(bytes, label);
    const { model: out } = optimize(model);
    const v = await verifyModels(model, out, { runs: 1 });
    // Damage may make outputs NaN in both models; what matters is that we never make it worse.
    if (!v.ok) expect(v.outputs.every((o) => o.nonFinite !== undefined || o.shapeMismatch !== undefined), `${label}: optimized output differs (max rel ${v.maxRel})`).toBe(true);
    return "ok";
  } catch (e) {
    if (e instanceof ModelError || e instanceof UsageError) return "rejected";
    throw new Error(`${label}: ${(e as Error).stack}`);
  }
}

describe("adversarial inputs", () => {
  it("bit-flipped models are rejected cleanly or handled", async () => {
    const r = rng(99);
    const outcomes = { ok: 0, rejected: 0 };
    for (const file of FILES) {
      const original = fs.readFileSync(file);
      for (let k = 0; k < 40; k++) {
        const bytes = Uint8Array.from(original);
        const flips = 1 + Math.floor(r() * 3);
        for (let f = 0; f < flips; f++) bytes[Math.floor(r() * bytes.length)]! ^= 1 << Math.floor(r() * 8);
        outcomes[await survive(bytes, `${file}#flip${k}`)]++;
      }
    }
    expect(outcomes.ok + outcomes.rejected).toBe(FILES.length * 40);
  });

  it("models truncated anywhere are rejected cleanly", async () => {
    const original = fs.readFileSync(FILES[0]!);
    for (let k = 1; k < 40; k++) {
      const cut = Math.floor((original.length * k) / 40);
      expect(await survive(original.subarray(0, cut), `truncated at ${cut}`)).toBe("rejected");
    }
  });
});
