import { describe, expect, it } from "vitest";
import { Net } from "../../test/helpers/graphs.js";
import { applyAndProve, matchAt, nodeOf, opCounts, refusalAt } from "../../test/helpers/rules.js";
import { foldConstants as rule } from "./fold-constants.js";

/** A conv whose weight is computed in the graph: w · s + t (OREPA-style generated kernels). */
function generatedKernel() {
  const n = new Net(5);
  const x = n.input("x", [1, 2, 5, 5]);
  const w = n.constant("w", [3, 2, 3, 3], Array.from({ length: 54 }, (_, i) => Math.cos(i)));
  const k = n.op("Add", [n.op("Mul", [w, n.constant("s", [3, 1, 1, 1], [0.5, 2, -1])]), n.constant("t", [1], [0.25])]);
  return n.finish(n.op("Conv", [x, k], { kernel_shape: [3, 3] }));
}

describe("fold-constants", () => {
  it("rooted on the first foldable node, matches the constant region to its end", () => {
    const model = generatedKernel();
    const m = matchAt(model, rule, nodeOf(model, "Mul"));
    if ("refused" in m) throw new Error(m.refused);
    expect(m.remove.map((n) => n.opType)).toEqual(["Mul", "Add"]);
    expect(m.anchor).toBe(nodeOf(model, "Add"));
  });

  it("a last reader runs as soon as its inputs exist, yet folded nodes and notes come in graph order", () => {
    // a = m1 + t runs right after m1 (it frees m1), u = diag(m2) right after m2: ahead of q.
    const n = new Net(11);
    const x = n.input("x", [3, 3]);
    const m1 = n.op("Mul", [n.constant("w1", [3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]), n.constant("s1", [1], [2])]);
    const m2 = n.op("Mul", [n.constant("w2", [3, 3], [9, 8, 7, 6, 5, 4, 3, 2, 1]), n.constant("s2", [1], [3])]);
    const q = n.op("Einsum", [n.constant("sq", [3, 3], [1, 0, 0, 0, 1, 0, 0, 0, 1])], { equation: "ii->i" });
    const a = n.op("Add", [m1, n.constant("t1", [1], [0.5])]);
    const u = n.op("Einsum", [m2], { equation: "ii->i" });
    const model = n.finish(n.op("Add", [n.op("Add", [n.op("Add", [x, a]), q]), u]));
    const m = matchAt(model, rule, nodeOf(model, "Mul"));
    if ("refused" in m) throw new Error(m.refused);
    expect(m.remove.map((r) => r.outputs[0])).toEqual([m1, m2, a]);
    expect(m.anchor.outputs[0]).toBe(a);
    expect(m.notes!.map((r) => r.node.outputs[0])).toEqual([q, u]);
    expect(m.notes!.every((r) => /diagonal/.test(r.reason))).toBe(true);
  });

  it("refuses nodes reading activations, outputs that would grow the file, shapes static only under --shape", () => {
    const model = generatedKernel();
    expect(refusalAt(model, rule, nodeOf(model, "Conv")).refused).toMatch(/not foldable|not constant/);
    const n = new Net(6);
    const big = n.op("Expand", [n.constant("v", [1], [1]), n.int64("shape", [1, 3, 64, 64])]);
    const grow = n.finish(n.op("Add", [n.input("x", [1, 3, 64, 64]), big]));
    expect(refusalAt(grow, rule, nodeOf(grow, "Expand")).refused).toMatch(/the model would grow/);
    const d = new Net(7);
    const shape = d.op("Shape", [d.input("x", ["N", 3, 4, 4])]);
    const dynamic = d.finish(d.op("Reshape", [d.input("y", [1, 48]), shape]));
    // --shape gives N = 1, but the model declares N dynamic: the Shape is not folded.
    expect(refusalAt(dynamic, rule, nodeOf(dynamic, "Shape"), { shapes: { x: [1, 3, 4, 4] } }).refused).toMatch(/not static in the model/);
  });

  it("rewrites the region into the initializers the rest of the graph reads", async () => {
    const { model: out, result } = await applyAndProve(generatedKernel(), [rule]);
    expect(opCounts(out)).toEqual({ Conv: 1 });
    expect([...out.graph.initializers.keys()]).toEqual([out.graph.nodes[0]!.inputs[1]]);
    expect(result.rewrites[0]!.summary).toBe("2 constant node(s) (1 Mul, 1 Add) → 1 initializer(s)");
  });

  it("kernels dropped as their last reader folds are reused for later ones: the same result (OREPA-sized chain)", async () => {
    // Five kernels of 32·16·3·3 = 4608 values (large enough to be recycled), each scaled per output
    // channel, summed pairwise; Einsum broadcasts as OREPA does. Buffers of the dropped products
    // and decoded weights come back as the next outputs; the first product is read twice, far apart.
    const n = new Net(9);
    const x = n.input("x", [1, 16, 8, 8]);
    const kernel = (name: string, phase: number) => n.constant(name, [32, 16, 3, 3], Array.from({ length: 4608 }, (_, i) => Math.sin(i * 0.37 + phase)));
    const scale = (name: string, phase: number) => n.constant(name, [32], Array.from({ length: 32 }, (_, i) => 0.5 + Math.cos(i + phase)));
    const first = n.op("Einsum", [kernel("w0", 0), scale("s0", 0)], { equation: "oihw,o->oihw" });
    let k = first;
    for (let b = 1; b < 5; b++) {
      const term = n.op("Einsum", [kernel(`w${b}`, b), scale(`s${b}`, b)], { equation: "oihw,o->oihw" });
      k = n.op("Add", [k, b % 2 ? term : n.op("Mul", [term, n.constant(`t${b}`, [1], [0.75])])]);
    }
    // Read again at the end: alive (not reused) until then.
    k = n.op("Sub", [k, n.op("Mul", [first, n.constant("half", [1], [0.5])])]);
    const model = n.finish(n.op("Conv", [x, k], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }));
    const { model: out } = await applyAndProve(model, [rule]);
    expect(opCounts(out)).toEqual({ Conv: 1 });
  });

  it("a folded kernel read by a conv and, later, by another folded node is written once its last reader is passed", async () => {
    const n = new Net(10);
    const x = n.input("x", [1, 4, 6, 6]);
    const k = n.op("Mul", [n.constant("w", [4, 4, 3, 3], Array.from({ length: 144 }, (_, i) => Math.cos(i))), n.constant("s", [4, 1, 1, 1], [1, -2, 0.5, 3])]);
    const y = n.op("Conv", [x, k], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
    const k2 = n.op("Add", [k, n.constant("t", [1], [0.125])]);
    const model = n.finish(n.op("Conv", [y, k2], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }));
    const { model: out, result } = await applyAndProve(model, [rule]);
    expect(opCounts(out)).toEqual({ Conv: 2 });
    // Both kernels, in the order the graph reads them.
    expect([...out.graph.initializers.keys()]).toEqual(out.graph.nodes.map((c) => c.inputs[1]));
    expect(result.rewrites[0]!.summary).toBe("2 constant node(s) (1 Mul, 1 Add) → 2 initializer(s)");
  });

  it("a growing node that stays keeps its folded inputs, however far its other readers folded (memory release)", async () => {
    // p = v·c is folded; g = Expand(p) grows 12288x. One reader of g folds (g·s grows too, then + a
    // full-size constant, which does not grow: that reader is settled); the other reads an
    // activation, so g stays and p must still be there to be written as an initializer.
    const n = new Net(8);
    const x = n.input("x", [1, 3, 64, 64]);
    const p = n.op("Mul", [n.constant("v", [1], [1.5]), n.constant("c", [1], [2])]);
    const g = n.op("Expand", [p, n.int64("shape", [1, 3, 64, 64])]);
    const full = n.constant("full", [1, 3, 64, 64], Array.from({ length: 3 * 64 * 64 }, (_, i) => Math.sin(i)));
    const settledBranch = n.op("Add", [n.op("Mul", [g, n.constant("s", [1], [0.5])]), full]);
    const model = n.finish(n.op("Add", [n.op("Add", [x, g]), settledBranch]));
    const { model: out } = await applyAndProve(model, [rule]);
    expect(opCounts(out)).toEqual({ Expand: 1, Add: 2 });
    const expand = nodeOf(out, "Expand");
    expect(Array.from(out.graph.initializers.get(expand.inputs[0]!)!.toFloat64())).toEqual([3]);
  });

  it("an Einsum reading one folded value twice in different orders (ij,ji->ij) does not write over it", async () => {
    // m is read for the last time by the Einsum, as both operands: written in place, out[0][1] would
    // overwrite m[0][1] before out[1][0] reads it.
    const n = new Net(12);
    const x = n.input("x", [3, 3]);
    const w = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    const m = n.op("Mul", [n.constant("w", [3, 3], w), n.constant("s", [1], [2])]);
    const model = n.finish(n.op("Add", [x, n.op("Einsum", [m, m], { equation: "ij,ji->ij" })]));
    const { model: out } = await applyAndProve(model, [rule]);
    expect(opCounts(out)).toEqual({ Add: 1 });
    const folded = out.graph.initializers.get(out.graph.nodes[0]!.inputs[1]!)!;
    expect(Array.from(folded.toFloat64())).toEqual(w.map((_, k) => 2 * w[k]! * 2 * w[(k % 3) * 3 + Math.floor(k / 3)]!));
  });
});
