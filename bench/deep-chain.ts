// Deep graphs (issue 11 #8): builds linear chains of N nodes and times the CLI on them, so the
// README's depth figures can be rerun. Nothing may recurse once per node: a chain this long used
// to overflow the stack (exit 3) at 5,000 nodes.
//
//   npm run build && node dist/bench/deep-chain.js [N=100000] [--verify] [--kind perm|conv1x1|conv3x3-relu]
//
// perm: (Conv 1x1 → Mul) × N/2 whose kernels are scaled permutations undone by the Muls, so
// float32 evaluation is exact and verification can prove the one-Conv result at any depth.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { GraphBuilder } from "../src/ir/builder.js";
import { saveModel } from "../src/ir/io.js";

const args = process.argv.slice(2);
const n = Number(args.find((a) => /^\d+$/.test(a)) ?? 100_000);
const verify = args.includes("--verify");
const kindAt = args.indexOf("--kind");
const kind = kindAt >= 0 ? args[kindAt + 1] ?? "" : "perm";

function chain(): ReturnType<GraphBuilder["build"]> {
  const C = kind === "perm" ? 3 : 4;
  const b = new GraphBuilder(13);
  let t = b.input("x", ["N", C, 8, 8]);
  for (let i = 0; i < n / 2; i++) {
    if (kind === "perm") {
      const p = i % 2 === 0 ? [1, 2, 0] : [2, 0, 1];
      const w = new Array(C * C).fill(0);
      for (let o = 0; o < C; o++) w[o * C + p[o]!] = 2;
      t = b.op("Conv", [t, b.constant("w", [C, C, 1, 1], w)], { kernel_shape: [1, 1] });
      t = b.op("Mul", [t, b.constant("s", [1], [0.5])]);
    } else if (kind === "conv1x1") {
      for (let k = 0; k < 2; k++)
        t = b.op("Conv", [t, b.constant("w", [C, C, 1, 1], Array.from({ length: C * C }, (_, j) => (j % (C + 1) === 0 ? 1 : 0.001)))], { kernel_shape: [1, 1] });
    } else if (kind === "conv3x3-relu") {
      t = b.op("Conv", [t, b.constant("w", [C, C, 3, 3], Array.from({ length: C * C * 9 }, (_, j) => ((j * 7) % 11) / 100))], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
      t = b.op("Relu", [t]);
    } else throw new Error(`unknown --kind ${kind} (perm, conv1x1, conv3x3-relu)`);
  }
  b.output(t, ["N", C, 8, 8]);
  return b.build();
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-deep-chain-"));
try {
  const input = path.join(dir, "chain.onnx");
  saveModel(chain(), input);
  const cli = path.join(import.meta.dirname, "..", "src", "cli", "main.js");
  const cmd = ["optimize", input, path.join(dir, "out.onnx"), ...(verify ? [] : ["--no-verify"])];
  const t0 = performance.now();
  const r = spawnSync("/usr/bin/time", ["-f", "peak %M KB", process.execPath, cli, ...cmd], { encoding: "utf8", maxBuffer: 1 << 26 });
  const seconds = (performance.now() - t0) / 1000;
  const lines = `${r.stdout}\n${r.stderr}`.split("\n").filter((l) => /time:|verify|wrote|peak|error/.test(l)).map((l) => l.slice(0, 300));
  console.log(`deep-chain: ${n.toLocaleString("en-US")} nodes (${kind}), ${verify ? "verified" : "--no-verify"}: exit ${r.status}, ${seconds.toFixed(1)} s`);
  for (const l of lines) console.log(`  ${l.trim()}`);
  process.exitCode = r.status ?? 1;
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
