// Versions named by --version and recorded in every written model's metadata_props.
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";

/** This package's version, from its package.json. */
export function toolVersion(): string {
  // Walk up to our package.json: the CLI runs from dist/src/cli (built) and from src/cli (tests import the source).
  let root = path.dirname(new URL(import.meta.url).pathname);
  while (!fs.existsSync(path.join(root, "package.json")) && path.dirname(root) !== root) root = path.dirname(root);
  return (JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { version: string }).version;
}

/** The installed onnxruntime-node's version, or "not found". */
export function onnxruntimeVersion(): string {
  try {
    // onnxruntime-node's entry point sits inside its package: walk up to its package.json.
    let dir = path.dirname(createRequire(import.meta.url).resolve("onnxruntime-node"));
    while (!fs.existsSync(path.join(dir, "package.json")) && path.dirname(dir) !== dir) dir = path.dirname(dir);
    return (JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "not found";
  }
}
