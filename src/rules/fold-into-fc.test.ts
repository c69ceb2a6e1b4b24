import { describe, expect, it } from "vitest";
import { Net } from "../../test/helpers/graphs.js";
import { applyAndProve, matchAt, nodeOf, opCounts, refusalAt } from "../../test/helpers/rules.js";
import { foldIntoFc as rule } from "./fold-into-fc.js";

/** RepMLP: Gemm(x) + Reshape(Conv3x3(Reshape(x, [N,1,4,4])), [N,16]) on x: [2, 16]. */
function repmlp(opts: { sharedWeight?: boolean } = {}) {
  const n = new Net(14);
  const x = n.input("x", [2, 16]);
  const w = n.constant("fc", [16, 16], Array.from({ length: 256 }, (_, i) => Math.sin(i) / 4));
  const fc = n.op("Gemm", [x, w], { transB: 1 });
  const image = n.op("Reshape", [x, n.int64("to_image", [2, 1, 4, 4])]);
  const local = n.op("Reshape", [n.conv(image, 1, 1, 3), n.int64("to_rows", [2, 16])]);
  const y = n.op("Add", [fc, local]);
  if (!opts.sharedWeight) return n.finish(y);
  return n.finish(n.op("Gemm", [y, w], { transB: 1 }));
}

describe("fold-into-fc", () => {
  it("matches an FC summed with a conv branch on the same rows", () => {
    const model = repmlp();
    const m = matchAt(model, rule, nodeOf(model, "Add"));
    if ("refused" in m) throw new Error(m.refused);
    expect(m.fc).toBe(nodeOf(model, "Gemm"));
    expect([m.map.rows, m.map.cols]).toEqual([16, 16]);
    expect(m.remove.map((n) => n.opType).sort()).toEqual(["Add", "Conv", "Gemm", "Reshape", "Reshape"]);
  });

  it("refuses a shared FC weight; passes over sums of different tensors", () => {
    const shared = repmlp({ sharedWeight: true });
    expect(refusalAt(shared, rule, nodeOf(shared, "Add")).refused).toMatch(/'fc_\d+' of Gemm_\d+ is shared with another node/);
    const n = new Net(15);
    const a = n.op("Gemm", [n.input("a", [2, 4]), n.constant("w", [4, 4], Array.from({ length: 16 }, (_, i) => i))], { transB: 1 });
    const model = n.finish(n.op("Add", [a, n.input("b", [2, 4])]));
    expect(refusalAt(model, rule, nodeOf(model, "Add"))).toMatchObject({ quiet: true });
  });

  it("rewrites the sum as one Gemm, proven", async () => {
    const { model: out, result } = await applyAndProve(repmlp(), [rule]);
    expect(opCounts(out)).toEqual({ Gemm: 1 });
    expect(result.rewrites[0]!.summary).toMatch(/Conv folded into Gemm .*\[16, 16\] matrix/);
  });
});
