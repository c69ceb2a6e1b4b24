// npm run zoo [-- --models resnet18,convnext_tiny --opset 13 --out bench/out/zoo]: models written by other
// people. torchvision architectures (random weights, trained-looking BN statistics) are exported by
// bench/zoo_export.py in both forms (needs /usr/bin/python3 with python3-torch and
// python3-torchvision), then each is optimized and verified in onnxruntime: what was folded, and
// that nothing was silently changed. Not part of the test suite (it needs PyTorch).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { loadModel } from "../src/ir/io.js";
import { optimize } from "../src/app/optimize.js";
import { checkInferredShapes, concreteInputShapes } from "../src/verify/shape-check.js";
import { verifyModels } from "../src/verify/verify.js";

const DEFAULT = "resnet18,mobilenet_v3_small,efficientnet_b0,shufflenet_v2_x1_0,regnet_y_400mf,mnasnet0_5,googlenet,densenet121,squeezenet1_0,convnext_tiny,swin_t";
const { values } = parseArgs({ options: { models: { type: "string" }, out: { type: "string" }, opset: { type: "string" } } });
const opset = Number(values.opset ?? 13);
if (!Number.isInteger(opset) || opset < 9 || opset > 17) throw new Error(`--opset is 9..17 (PyTorch 1.13's exporter), not ${values.opset}`);
const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, "../..");
const out = path.join(path.resolve(values.out ?? path.join(root, "bench/out/zoo")), `op${opset}`);
const names = (values.models ?? DEFAULT).split(",");
const missing = names.filter((n) => !fs.existsSync(path.join(out, `${n}_preserve.onnx`)));
if (missing.length) execFileSync("/usr/bin/python3", [path.join(root, "bench/zoo_export.py"), out, ...missing], { stdio: "inherit", env: { ...process.env, ZOO_OPSET: String(opset) } });

const rows: Record<string, unknown>[] = [];
let failures = 0;
for (const name of names)
  for (const form of ["folded", "preserve"]) {
    const file = path.join(out, `${name}_${form}.onnx`);
    const model = loadModel(file);
    const t0 = performance.now();
    const { model: result, report } = optimize(model);
    const ms = performance.now() - t0;
    const v = await verifyModels(model, result, { runs: 2 });
    // Shape inference against onnxruntime, batch 3 (the proofs above stand on it).
    const shapeCheck = await checkInferredShapes(model, concreteInputShapes(model));
    if (!v.ok || shapeCheck.wrong.length) failures++;
    for (const w of shapeCheck.wrong.slice(0, 3)) console.log(`WRONG SHAPE ${name} ${form}: ${w}`);
    const count = (m: typeof model, op: string) => m.graph.nodes.filter((n) => n.opType === op).length;
    rows.push({
      model: name, form, nodes: `${model.graph.nodes.length}→${result.graph.nodes.length}`,
      BN: `${count(model, "BatchNormalization")}→${count(result, "BatchNormalization")}`,
      Mul: `${count(model, "Mul")}→${count(result, "Mul")}`, rewrites: report.rewrites.length,
      optimizeMs: Math.round(ms), verified: v.ok, maxRel: +v.maxRel.toExponential(2),
      shapeDims: `${shapeCheck.checkedDims - shapeCheck.wrong.length}/${shapeCheck.checkedDims}`,
    });
    console.log(JSON.stringify(rows[rows.length - 1]));
  }
console.table(rows);
process.exitCode = failures ? 1 : 0;
