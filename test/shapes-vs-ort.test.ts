// Shape inference is what several passes' proofs stand on, so it must never state a wrong dim.
// Every fixture (and its deploy model) and random RepMLP-style blocks run in onnxruntime with all
// intermediate tensors as outputs and a batch of 3 where the batch is dynamic (so symbolic dims are
// exercised); each dim the inference claims must equal the dim onnxruntime produces.
import { describe, expect, it } from "vitest";
import { buildFcBlock, randomFcSpec } from "../bench/random-fc-blocks.js";
import { loadModel } from "../src/ir/io.js";
import { checkInferredShapes, concreteInputShapes } from "../src/verify/shape-check.js";
import { FIXTURES, readManifest } from "./helpers/manifest.js";

describe("shape inference never states a wrong dim", () => {
  const files = new Set(["manifest.json", "compositions.json", "attention.json", "forms.json"].flatMap((m) => readManifest(m).flatMap((e) => [e.file, ...(e.deploy ? [e.deploy] : [])])));
  it(`on every fixture and its deploy model (${files.size} files), with batch 3 where the batch is dynamic`, async () => {
    const wrong: string[] = [];
    let checked = 0;
    for (const file of files) {
      const model = loadModel(FIXTURES + file);
      const r = await checkInferredShapes(model, concreteInputShapes(model));
      checked += r.checkedDims;
      wrong.push(...r.wrong.map((w) => `${file}: ${w}`));
    }
    expect(wrong).toEqual([]);
    expect(checked).toBeGreaterThan(5000); // the check really ran (about 9,000 dims)
  });

  it("on random RepMLP-style blocks with shapes traced from Shape()", async () => {
    const wrong: string[] = [];
    for (let i = 0; i < 30; i++) {
      const model = buildFcBlock(randomFcSpec(777 + i));
      wrong.push(...(await checkInferredShapes(model, concreteInputShapes(model))).wrong);
    }
    expect(wrong).toEqual([]);
  });
});
