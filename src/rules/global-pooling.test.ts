import { describe, expect, it } from "vitest";
import { Net } from "../../test/helpers/graphs.js";
import { applyAndProve, matchAt, nodeOf, opCounts, refusalAt } from "../../test/helpers/rules.js";
import { globalPooling as rule } from "./global-pooling.js";

/** SE's squeeze as PyTorch exports avg_pool2d(x, kernel_size=x.size(3)): Pad of zeros, AveragePool(H×W). */
function squeeze(kernel = 5) {
  const n = new Net(16);
  const x = n.input("x", [1, 3, 5, 5]);
  const padded = n.op("Pad", [x, n.int64("pads", [0, 0, 0, 0, 0, 0, 0, 0])]);
  return n.finish(n.op("Relu", [n.op("AveragePool", [padded], { kernel_shape: [kernel, kernel] })]));
}

describe("global-pooling", () => {
  it("matches a zero Pad and an AveragePool whose window is the whole map", () => {
    const model = squeeze();
    const m = matchAt(model, rule, nodeOf(model, "AveragePool"));
    if ("refused" in m) throw new Error(m.refused);
    expect(m.remove.map((n) => n.opType)).toEqual(["Pad", "AveragePool"]);
  });

  it("passes over a window smaller than the map, and a padded pooling", () => {
    const small = squeeze(3);
    expect(refusalAt(small, rule, nodeOf(small, "AveragePool"))).toMatchObject({ quiet: true, refused: "the window does not cover the whole input" });
    const n = new Net(17);
    const padded = n.finish(n.op("AveragePool", [n.input("x", [1, 3, 5, 5])], { kernel_shape: [5, 5], pads: [1, 1, 1, 1] }));
    expect(refusalAt(padded, rule, nodeOf(padded, "AveragePool")).refused).toBe("AveragePool with padding");
  });

  it("rewrites them as one GlobalAveragePool, proven", async () => {
    const { model: out, result } = await applyAndProve(squeeze(), [rule]);
    expect(opCounts(out)).toEqual({ GlobalAveragePool: 1, Relu: 1 });
    expect(result.rewrites[0]!.summary).toBe("Pad + AveragePool over the whole 5x5 map → GlobalAveragePool");
  });
});
