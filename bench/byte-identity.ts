// npm run bench:identity -- --save FILE | --compare FILE [--extra a.onnx,b.onnx]
// Speed work must not change results: optimize (default options, no verification) every committed
// fixture model and any --extra files, and record the SHA-256 of the bytes each writes (or of the
// one-line refusal for files the tool rejects). --save writes the table; --compare recomputes it
// and lists every file whose output differs from the saved table, exiting 1 if any does.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { modelToBytes } from "../src/ir/bytes.js";
import { loadModel } from "../src/ir/io.js";
import { optimize } from "../src/app/optimize.js";

const { values } = parseArgs({ options: { save: { type: "string" }, compare: { type: "string" }, extra: { type: "string" } } });
if (!values.save === !values.compare) {
  console.error("byte-identity: give exactly one of --save FILE or --compare FILE");
  process.exit(2);
}
const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, "../..");

const fixtures = path.join(root, "fixtures/models");
const committed = fs.readdirSync(fixtures, { recursive: true }).map(String).filter((f) => f.endsWith(".onnx")).sort().map((f) => path.join(fixtures, f));
const files = [...committed, ...(values.extra?.split(",").filter(Boolean) ?? [])];
const hashes: Record<string, string> = {};
for (const file of files) {
  const key = path.relative(root, path.resolve(file));
  let digest: string;
  try {
    const { model } = optimize(loadModel(file));
    digest = createHash("sha256").update(modelToBytes(model)).digest("hex");
  } catch (e) {
    digest = `refused: ${(e as Error).message.split("\n")[0]}`;
  }
  hashes[key] = digest;
}

if (values.save) {
  fs.writeFileSync(values.save, JSON.stringify(hashes, null, 1) + "\n");
  console.log(`byte-identity: ${files.length} outputs recorded in ${values.save}`);
} else {
  const saved = JSON.parse(fs.readFileSync(values.compare!, "utf8")) as Record<string, string>;
  const differ = Object.keys(hashes).filter((k) => k in saved && saved[k] !== hashes[k]);
  const missing = Object.keys(saved).filter((k) => !(k in hashes));
  for (const k of differ) console.log(`differs: ${k}\n  saved ${saved[k]}\n  now   ${hashes[k]}`);
  for (const k of missing) console.log(`not checked (no such file now): ${k}`);
  const compared = Object.keys(hashes).filter((k) => k in saved).length;
  console.log(`byte-identity: ${compared - differ.length}/${compared} outputs identical to ${values.compare}`);
  process.exit(differ.length > 0 ? 1 : 0);
}
