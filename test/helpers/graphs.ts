// Small graph builders for pass tests: random conv/BN branches through the IR, plus a helper that
// optimizes and proves the result in onnxruntime.
import { expect } from "vitest";
import { GraphBuilder } from "../../src/ir/builder.js";
import type { Model } from "../../src/ir/graph.js";
import { optimize, type OptimizeOptions } from "../../src/app/optimize.js";
import { verifyModels } from "../../src/verify/verify.js";
import { randomArray, rng } from "./random.js";

export class Net extends GraphBuilder {
  readonly r: () => number;
  constructor(seed = 1, opset = 13, dtype?: number) {
    super(opset, dtype);
    this.r = rng(seed);
  }

  conv(x: string, cin: number, cout: number, k: [number, number] | number, opts: { stride?: number; pads?: number[]; group?: number; dilation?: number; bias?: boolean } = {}): string {
    const [kh, kw] = typeof k === "number" ? [k, k] : k;
    const g = opts.group ?? 1;
    const w = this.constant("w", [cout, cin / g, kh, kw], randomArray(this.r, cout * (cin / g) * kh * kw));
    const inputs = [x, w];
    if (opts.bias) inputs.push(this.constant("b", [cout], randomArray(this.r, cout)));
    const pads = opts.pads ?? [Math.floor(kh / 2), Math.floor(kw / 2), Math.floor(kh / 2), Math.floor(kw / 2)];
    const s = opts.stride ?? 1, d = opts.dilation ?? 1;
    return this.op("Conv", inputs, { kernel_shape: [kh, kw], pads, strides: [s, s], dilations: [d, d], group: g });
  }

  bn(x: string, c: number): string {
    const gamma = this.constant("gamma", [c], randomArray(this.r, c).map((v) => 1 + 0.5 * v));
    const beta = this.constant("beta", [c], randomArray(this.r, c));
    const mean = this.constant("mean", [c], randomArray(this.r, c));
    const variance = this.constant("var", [c], randomArray(this.r, c).map((v) => 1.25 + 0.75 * v));
    return this.op("BatchNormalization", [x, gamma, beta, mean, variance], { epsilon: 1e-5 });
  }

  convBn(x: string, cin: number, cout: number, k: [number, number] | number, opts: Parameters<Net["conv"]>[4] = {}): string {
    return this.bn(this.conv(x, cin, cout, k, opts), cout);
  }

  add(...xs: string[]): string {
    return xs.slice(1).reduce((acc, x) => this.op("Add", [acc, x]), xs[0]!);
  }

  finish(y: string): Model {
    this.output(y);
    return this.build();
  }
}

export function ops(m: Model): Record<string, number> {
  const h: Record<string, number> = {};
  for (const n of m.graph.nodes) h[n.opType] = (h[n.opType] ?? 0) + 1;
  return h;
}

/** Optimize, prove equal in onnxruntime, return the optimized model and report. */
export async function foldAndVerify(model: Model, options: OptimizeOptions & { tolerance?: number } = {}) {
  const result = optimize(model, options);
  const v = await verifyModels(model, result.model, { runs: 3, shapes: options.shapes, tolerance: options.tolerance });
  expect(v.ok, `verification failed: max rel ${v.maxRel}`).toBe(true);
  return { ...result, verification: v };
}
