// Issue 11, class 2: an If/Loop/Scan body may read any tensor of an enclosing graph by name,
// without listing it as an input of the node. Those reads are uses: every pass's "every consumer"
// check, folding, pruning, renaming and garbage collection must see them, at any nesting depth.
// Each model below has an If whose branches read outer tensors; both branches are run in
// onnxruntime before and after optimizing.
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { GraphBuilder } from "../src/ir/builder.js";
import { DataType } from "../src/ir/dtype.js";
import { ModelError } from "../src/ir/errors.js";
import { Node, outerReads, type Model } from "../src/ir/graph.js";
import { modelFromBytes, modelToBytes } from "../src/ir/io.js";
import { onnx, type AttributeProto, type GraphProto } from "../src/ir/proto.js";
import { optimize } from "../src/app/optimize.js";
import type { Rule } from "../src/pipeline/rule.js";
import { Rewriter } from "../src/pipeline/rewriter.js";
import { runModel, tensorToFloat64, verifyModels } from "../src/verify/verify.js";
import { Net } from "./helpers/graphs.js";
import { randomArray, rng } from "./helpers/random.js";

const X_DIMS = [1, 3, 5, 5];

/** A branch body: nodes named by `prefix` so nothing in it shadows an outer name. */
function body(prefix: string, build: (b: GraphBuilder) => string, dims?: number[]): GraphProto {
  const b = new GraphBuilder(13);
  const y = build(b);
  b.output(y, dims);
  const g = b.build().graph.toProto();
  g.name = prefix;
  return g;
}

function graphAttr(name: string, g: GraphProto): AttributeProto {
  return onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.GRAPH, g });
}

/** An If node on `cond` with the two bodies; returns its output. */
function addIf(n: GraphBuilder, cond: string, then: GraphProto, otherwise: GraphProto, name: string): string {
  const out = `${name}_out`;
  n.nodes.push(new Node(name, "If", [cond], [out], [graphAttr("then_branch", then), graphAttr("else_branch", otherwise)]));
  return out;
}

/** A body holding an If (on `cond`, an outer tensor) over two inner bodies: a read two levels deep. */
function nestedBody(prefix: string, cond: string, then: GraphProto, otherwise: GraphProto, dims?: number[]): GraphProto {
  return body(prefix, (b) => addIf(b, cond, then, otherwise, `${prefix}_if`), dims);
}

/** Every output of `m`, run with the same x, once per branch. */
async function run(m: Model, x: Float32Array): Promise<Record<string, number[]>[]> {
  const results = [];
  for (const taken of [true, false]) {
    const feeds = { x: new ort.Tensor("float32", x, X_DIMS), cond: new ort.Tensor("bool", Uint8Array.of(taken ? 1 : 0), [1]) };
    const out = await runModel(modelFromBytes(modelToBytes(m)), feeds);
    results.push(Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Array.from(tensorToFloat64(v)!)])));
  }
  return results;
}

/** Optimize, check the result is valid and computes the same outputs whichever branch is taken. */
async function optimizeAndCompare(m: Model) {
  const result = optimize(m);
  const x = Float32Array.from(randomArray(rng(7), X_DIMS.reduce((a, b) => a * b, 1)));
  const [before, after] = [await run(m, x), await run(result.model, x)];
  for (const [k, branch] of before.entries())
    for (const [name, values] of Object.entries(branch)) {
      const got = after[k]![name]!;
      expect(got.length, `${name} (branch ${k === 0 ? "then" : "else"}) size`).toBe(values.length);
      const err = Math.max(...values.map((v, i) => Math.abs(v - got[i]!)));
      expect(err, `${name} (branch ${k === 0 ? "then" : "else"})`).toBeLessThan(1e-4);
    }
  return result;
}

function start(seed: number): { n: Net; x: string; cond: string } {
  const n = new Net(seed);
  return { n, x: n.input("x", X_DIMS), cond: n.input("cond", [1], DataType.BOOL) };
}

describe("outer-scope reads of subgraphs are uses", () => {
  it("outerReads finds free names at any depth, including an output naming an outer tensor", () => {
    const inner = body("inner", (b) => b.op("Add", ["a", "b"], {}, "inner_add"));
    const nested = body("mid", (b) => {
      b.nodes.push(new Node("mid_if", "If", ["c"], ["mid_if_out"], [graphAttr("then_branch", inner), graphAttr("else_branch", body("e", (e) => e.op("Identity", ["d"], {}, "e_id")))]));
      return "mid_if_out";
    });
    expect([...outerReads(nested)].sort()).toEqual(["a", "b", "c", "d"]);
    const passthrough = body("p", () => "outer_t");
    expect(outerReads(passthrough)).toEqual(["outer_t"]);
    // A Loop body: its own inputs (iteration number, condition, carried values) are not outer reads.
    const loop = body("loop", (b) => {
      b.input("iter", [], DataType.INT64);
      b.input("cond_in", [], DataType.BOOL);
      b.input("carried", [4]);
      b.nodes.push(new Node("loop_cond", "Identity", ["cond_in"], ["cond_out"]));
      return b.op("Add", ["carried", "outer_w"], {}, "loop_add");
    });
    expect(outerReads(loop)).toEqual(["outer_w"]);
  });

  it("pruning zero channels leaves a tensor a branch returns alone", async () => {
    const { n, x, cond } = start(1);
    const w = randomArray(n.r, 4 * 3 * 9);
    for (let i = 27; i < 54; i++) w[i] = 0; // output channel 1 is exactly zero
    const t = n.op("Conv", [x, n.constant("w", [4, 3, 3, 3], w)], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
    const y = n.conv(n.op("Relu", [t]), 4, 2, 1);
    const branch = addIf(n, cond, body("then", (b) => b.op("Identity", [t], {}, "then_id"), [1, 4, 5, 5]), body("else", (b) => b.op("Neg", [t], {}, "else_neg"), [1, 4, 5, 5]), "if");
    n.output(y);
    n.output(branch, [1, 4, 5, 5]);
    const { report } = await optimizeAndCompare(n.build());
    expect(report.rewrites.filter((r) => r.pass === "prune-zero-channels")).toEqual([]);
    expect(report.refusals.filter((r) => r.pass === "prune-zero-channels").map((r) => r.reason)).toEqual([`'${t}' is read inside a subgraph of If 'if' (its channel count would change there)`]);
  });

  it("a region is not folded across a tensor a branch reads", async () => {
    const { n, x, cond } = start(2);
    const t = n.conv(x, 3, 4, 3);
    const y = n.bn(t, 4);
    const branch = addIf(n, cond, body("then", (b) => b.op("Identity", [t], {}, "then_id")), body("else", (b) => b.op("Relu", [t], {}, "else_relu")), "if");
    n.output(y);
    n.output(branch);
    const { model } = await optimizeAndCompare(n.build());
    expect(model.graph.producers().has(t)).toBe(true);
  });

  it("constant folding keeps a folded tensor that only a branch reads", async () => {
    const { n, x, cond } = start(3);
    const c = n.op("Mul", [n.constant("a", [4], [1, 2, 3, 4]), n.constant("b", [4], [0.5, 0.5, 2, 2])]);
    const branch = addIf(n, cond, body("then", (b) => b.op("Identity", [c], {}, "then_id"), [4]), body("else", (b) => b.op("Neg", [c], {}, "else_neg"), [4]), "if");
    n.output(n.op("Relu", [x]));
    n.output(branch, [4]);
    const { model, report } = await optimizeAndCompare(n.build());
    expect(report.rewrites.some((r) => r.pass === "fold-constants")).toBe(true);
    expect(Array.from(model.graph.initializers.get(c)!.toFloat64())).toEqual([0.5, 1, 6, 8]);
  });

  it("renaming a tensor renames it inside branches, nested two deep", async () => {
    const { n, x, cond } = start(4);
    const W = n.constant("w", [4, 3, 1, 1], randomArray(n.r, 12));
    const wid = n.op("Identity", [W]); // PyTorch's export of a shared parameter's second use
    const y = n.op("Conv", [x, wid], { kernel_shape: [1, 1] });
    const inner = body("inner", (b) => b.op("Neg", [wid], {}, "inner_neg"), [4, 3, 1, 1]);
    const outer = nestedBody("outer", cond, inner, body("ie", (e) => e.op("Identity", [wid], {}, "ie_id")), [4, 3, 1, 1]);
    const branch = addIf(n, cond, outer, body("else", (b) => b.op("Identity", [wid], {}, "else_id"), [4, 3, 1, 1]), "if");
    n.output(y);
    n.output(branch, [4, 3, 1, 1]);
    const { model, report } = await optimizeAndCompare(n.build());
    expect(report.rewrites.some((r) => /Identity of initializer/.test(r.summary))).toBe(true);
    const ifNode = model.graph.nodes.find((m) => m.opType === "If")!;
    expect(ifNode.subgraphReads()).toContain(W);
    expect(ifNode.subgraphReads()).not.toContain(wid);
  });

  it("garbage collection keeps an initializer only a nested branch reads", async () => {
    const { n, x, cond } = start(5);
    const W = n.constant("w", [4, 3, 3, 3], randomArray(n.r, 108));
    const y = n.bn(n.op("Conv", [x, W], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }), 4);
    const inner = body("inner", (b) => b.op("Identity", [W], {}, "inner_id"), [4, 3, 3, 3]);
    const outer = nestedBody("outer", cond, inner, body("ie", (e) => e.op("Neg", [W], {}, "ie_neg")), [4, 3, 3, 3]);
    const branch = addIf(n, cond, outer, body("else", (b) => b.op("Neg", [W], {}, "else_neg"), [4, 3, 3, 3]), "if");
    n.output(y);
    n.output(branch, [4, 3, 3, 3]);
    const { model } = await optimizeAndCompare(n.build());
    expect(model.graph.initializers.has(W)).toBe(true);
  });
});

describe("verification takes both branches", () => {
  it("a candidate wrong only in the else branch fails, one wrong only in the then branch too", async () => {
    const make = (thenOp: string, elseOp: string) => {
      const { n, x, cond } = start(5);
      const branch = addIf(n, cond, body("then", (b) => b.op(thenOp, [x], {}, "then_op"), X_DIMS), body("else", (b) => b.op(elseOp, [x], {}, "else_op"), X_DIMS), "if");
      n.output(branch, X_DIMS);
      return n.build();
    };
    const reference = make("Relu", "Neg");
    expect((await verifyModels(reference, make("Relu", "Neg"))).ok).toBe(true);
    expect((await verifyModels(reference, make("Relu", "Identity"))).ok).toBe(false);
    expect((await verifyModels(reference, make("Identity", "Neg"))).ok).toBe(false);
  });
});

describe("names", () => {
  it("a fresh name chosen by the rewriter is not one a subgraph defines, at any depth", () => {
    const { n, x, cond } = start(8);
    const inner = body("inner", (b) => b.op("Identity", [x], {}, "deep"));
    const outer = nestedBody("outer", cond, inner, body("ie", (e) => e.op("Neg", [x], {}, "ie_neg")));
    n.output(addIf(n, cond, outer, body("else", (b) => b.op("Relu", [x], {}, "else_relu")), "if"));
    const rewriter = new Rewriter(n.build().graph);
    expect(rewriter.uniqueName("deep_out")).toBe("deep_out_1");
    expect(rewriter.uniqueName("else_relu_out")).toBe("else_relu_out_1");
    expect(rewriter.uniqueName("fresh")).toBe("fresh");
  });
});

describe("an invalid model is never blamed on the input file", () => {
  it("a model whose branch reads a tensor nobody provides is refused at load, naming the file", () => {
    const { n, x, cond } = start(6);
    n.output(addIf(n, cond, body("then", (b) => b.op("Identity", ["nope"], {}, "then_id")), body("else", (b) => b.op("Identity", [x], {}, "else_id")), "if"));
    expect(() => modelFromBytes(modelToBytes(n.build()), "m.onnx")).toThrow(/^m\.onnx: node 'if' \(in a subgraph\) reads 'nope', which no node, input or initializer provides$/);
  });

  it("a rewrite that breaks the graph is an internal error naming the rewrite, not a ModelError about the input", () => {
    const { n, x } = start(7);
    const t = n.op("Relu", [x]);
    n.output(n.op("Neg", [t]));
    const m = modelFromBytes(modelToBytes(n.build()), "in.onnx");
    // A deliberately wrong rule: drops the Relu (through the rewriter) while the Neg still reads it.
    const broken: Rule = {
      name: "broken", description: "test only", rootOps: ["Relu"], benefit: 1,
      match: (root) => ({ anchor: root, remove: [root] }),
      rewrite: () => ({ summary: "dropped" }),
    };
    let error: unknown;
    try {
      optimize(m, { rules: [broken] });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(ModelError);
    expect((error as Error).message).toMatch(/^the rewritten model is invalid \(node '.*' reads 'Relu_\d+_out', which no node, input or initializer provides\); last rewrite: broken at 'Relu_\d+'$/);
    expect((error as Error).message).not.toMatch(/in\.onnx/);
  });
});
