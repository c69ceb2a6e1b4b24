import { describe, expect, it } from "vitest";
import { Net } from "../../test/helpers/graphs.js";
import { applyAndProve, matchAt, nodeOf, refusalAt } from "../../test/helpers/rules.js";
import { pruneZeroChannels as rule } from "./prune-zero-channels.js";

/** conv (rows 2 and 5 exactly zero, no bias) → activation → conv. */
function compactor(opts: { act?: string; group?: number; allZero?: boolean; output?: boolean } = {}) {
  const n = new Net(13);
  const x = n.input("x", [1, 4, 7, 7]);
  const g = opts.group ?? 1;
  const q = Array.from({ length: 8 * (4 / g) }, (_, i) => (opts.allZero || [2, 5].includes(Math.floor(i / (4 / g))) ? 0 : Math.sin(i + 1)));
  const z = n.op("Conv", [x, n.constant("q", [8, 4 / g, 1, 1], q)], { kernel_shape: [1, 1], group: g });
  const a = n.op(opts.act ?? "Relu", [z]);
  if (opts.output) return n.finish(a);
  return n.finish(n.conv(a, 8, 6, 3));
}

describe("prune-zero-channels", () => {
  it("matches a conv with zero output channels whose readers can drop them", () => {
    const model = compactor();
    const m = matchAt(model, rule, nodeOf(model, "Conv"));
    if ("refused" in m) throw new Error(m.refused);
    expect(m.zero).toEqual([2, 5]);
    expect(m.chain.map((n) => n.opType)).toEqual(["Relu"]);
    expect(m.readers).toEqual([nodeOf(model, "Conv", 1)]);
  });

  it("refuses with the reason", () => {
    const cases: [Parameters<typeof compactor>[0], RegExp][] = [
      [{ act: "Sigmoid" }, /zero channels reach Sigmoid .* cannot drop input channels/],
      [{ group: 2 }, /grouped conv/],
      [{ allZero: true }, /every output channel is zero/],
      [{ output: true }, /is a graph output/],
    ];
    for (const [opts, reason] of cases) {
      const model = compactor(opts);
      expect(refusalAt(model, rule, nodeOf(model, "Conv")).refused, JSON.stringify(opts)).toMatch(reason);
    }
  });

  it("rewrites both weights without the zero channels, proven", async () => {
    const { model: out, result } = await applyAndProve(compactor(), [rule]);
    const [p, r] = [nodeOf(out, "Conv", 0), nodeOf(out, "Conv", 1)];
    expect(out.graph.initializers.get(p.inputs[1]!)!.dims).toEqual([6, 4, 1, 1]);
    expect(out.graph.initializers.get(r.inputs[1]!)!.dims).toEqual([6, 6, 3, 3]);
    expect(out.graph.initializers.size).toBe(2); // the unpruned weights are gone
    expect(result.rewrites[0]!.summary).toMatch(/pruned 2 zero channel\(s\)/);
  });

  it("prunes a per-channel PRelu slope with the channels it scales, proven", async () => {
    for (const dims of [[8, 1, 1], [1, 8, 1, 1], [1, 1]]) {
      const n = new Net(13);
      const x = n.input("x", [1, 4, 7, 7]);
      const q = Array.from({ length: 32 }, (_, i) => ([2, 5].includes(Math.floor(i / 4)) ? 0 : Math.sin(i + 1)));
      const z = n.op("Conv", [x, n.constant("q", [8, 4, 1, 1], q)], { kernel_shape: [1, 1] });
      const size = dims.reduce((a, b) => a * b, 1);
      const a = n.op("PRelu", [z, n.constant("slope", dims, Array.from({ length: size }, (_, i) => 0.1 * (i + 1)))]);
      const { model: out } = await applyAndProve(n.finish(n.conv(a, 8, 6, 3)), [rule]);
      const slope = out.graph.initializers.get(nodeOf(out, "PRelu").inputs[1]!)!;
      expect(slope.dims, JSON.stringify(dims)).toEqual(size === 1 ? dims : dims.map((d) => (d === 8 ? 6 : d)));
      if (size > 1) expect([...slope.toFloat64()].map((v) => Math.round(v * 10))).toEqual([1, 2, 4, 5, 7, 8]);
    }
  });

  it("a Clip keeps zero only when every element of its bounds does (non-scalar bounds are checked whole)", () => {
    const n = new Net(13);
    const x = n.input("x", [1, 4, 7, 7]);
    const q = Array.from({ length: 32 }, (_, i) => ([2, 5].includes(Math.floor(i / 4)) ? 0 : Math.sin(i + 1)));
    const z = n.op("Conv", [x, n.constant("q", [8, 4, 1, 1], q)], { kernel_shape: [1, 1] });
    const a = n.op("Clip", [z, n.constant("lo", [2], [-1, 0.5]), n.constant("hi", [], [6])]);
    const model = n.finish(n.conv(a, 8, 6, 3));
    expect(refusalAt(model, rule, nodeOf(model, "Conv")).refused).toMatch(/zero channels reach Clip/);
  });
});
