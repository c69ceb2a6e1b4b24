// Every --json report carries a `schema` tag and validates against its JSON Schema in docs/schema
// (ajv, draft 2020-12), on real outputs of the binary: optimize (proven, --no-verify, failed),
// a batch run with a broken model, verify (equal and different), inspect.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { describe, expect, it } from "vitest";
import { CLI, cliScratch, DEMO, ROOT } from "./helpers/cli.js";

const SCHEMAS = path.join(ROOT, "docs", "schema");
const SMALL = path.join(ROOT, "fixtures", "models", "neg_relu_in_branch_preserve_op13.onnx");
const { work, at } = cliScratch("json-schema");

function json(args: string[], stream: "stdout" | "stderr" = "stdout"): { code: number | null; report: Record<string, unknown> } {
  const r = spawnSync(process.execPath, [CLI, ...args, "--json"], { cwd: work, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, report: JSON.parse(stream === "stdout" ? r.stdout : r.stderr) };
}

const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
for (const f of fs.readdirSync(SCHEMAS).filter((n) => n.endsWith(".schema.json"))) ajv.addSchema(JSON.parse(fs.readFileSync(path.join(SCHEMAS, f), "utf8")));

/** The schema file named by the report's `schema` tag: "reparam-onnx/NAME/1" → NAME.1.schema.json. */
function validate(report: Record<string, unknown>): string[] {
  const m = /^reparam-onnx\/([a-z-]+)\/(\d+)$/.exec(String(report.schema));
  expect(m, `schema tag ${String(report.schema)}`).not.toBeNull();
  const check = ajv.getSchema(`${m![1]}.${m![2]}.schema.json`);
  expect(check, `docs/schema/${m![1]}.${m![2]}.schema.json`).toBeDefined();
  return check!(report) ? [] : check!.errors!.map((e) => `${e.instancePath} ${e.message}`);
}

describe("--json reports follow docs/schema", () => {
  it("every schema file compiles, and names its file in $id", () => {
    for (const f of fs.readdirSync(SCHEMAS).filter((n) => n.endsWith(".schema.json"))) {
      const s = JSON.parse(fs.readFileSync(path.join(SCHEMAS, f), "utf8"));
      expect(s.$id).toBe(f);
      expect(ajv.getSchema(f), f).toBeDefined();
    }
  });

  it("optimize: proven, --no-verify, failed verification, model on stdout", () => {
    const ok = json(["optimize", DEMO, "a.onnx"]);
    expect(ok.code).toBe(0);
    expect(ok.report.schema).toBe("reparam-onnx/optimize-report/1");
    expect(validate(ok.report)).toEqual([]);
    expect(validate((ok.report.verification as Record<string, unknown>))).toEqual([]);
    const nv = json(["optimize", DEMO, "b.onnx", "--no-verify"]);
    expect(validate(nv.report)).toEqual([]);
    const failed = json(["optimize", DEMO, "c.onnx", "--tolerance", "1e-30"]);
    expect(failed.code).toBe(1);
    expect(failed.report.output).toBeNull();
    expect(failed.report.culprit).not.toBeNull();
    expect(validate(failed.report)).toEqual([]);
    const stdout = json(["optimize", SMALL, "-"], "stderr");
    expect(validate(stdout.report)).toEqual([]);
  });

  it("optimize --out-dir with a broken model among good ones", () => {
    fs.mkdirSync(at("models"));
    fs.copyFileSync(SMALL, at("models/small.onnx"));
    fs.writeFileSync(at("models/broken.onnx"), "junk");
    const b = json(["optimize", "models", "--out-dir", "out"]);
    expect(b.code).toBe(2);
    expect(b.report.schema).toBe("reparam-onnx/optimize-batch-report/1");
    expect((b.report.results as unknown[]).length).toBe(2);
    expect(validate(b.report)).toEqual([]);
  });

  it("verify (equal and different) and inspect", () => {
    expect(json(["optimize", DEMO, "v.onnx", "--no-verify"]).code).toBe(0);
    const v = json(["verify", DEMO, "v.onnx"]);
    expect(v.report).toMatchObject({ schema: "reparam-onnx/verify-report/1", reference: DEMO, candidate: "v.onnx", ok: true });
    expect(validate(v.report)).toEqual([]);
    // Exact comparison: no fold is bit-exact in float32, so this fails.
    const d = json(["verify", DEMO, "v.onnx", "--atol", "0", "--rtol", "0"]);
    expect(d.code).toBe(1);
    expect(validate(d.report)).toEqual([]);
    const saved = json(["verify", DEMO, "v.onnx", "--save-outputs", "golden.npz"]);
    expect(saved.report.saved).toBe("golden.npz");
    expect(validate(saved.report)).toEqual([]);
    const loaded = json(["verify", "v.onnx", "--load-outputs", "golden.npz"]);
    expect(loaded.report.criterion).toBe("floor");
    expect(validate(loaded.report)).toEqual([]);
    const record = json(["verify", DEMO, "--save-outputs", "record.npz"]);
    expect(record.report.schema).toBe("reparam-onnx/verify-record/1");
    expect(validate(record.report)).toEqual([]);
    const i = json(["inspect", SMALL, "--explain"]);
    expect(i.report.schema).toBe("reparam-onnx/inspect-report/1");
    expect(validate(i.report)).toEqual([]);
  });

  it("the schemas reject a report that breaks them (the check can fail)", () => {
    const r = json(["inspect", SMALL]).report;
    expect(validate({ ...r, stats: { ...(r.stats as object), nodes: "seven" } })).toEqual(["/stats/nodes must be integer"]);
    const { file: _dropped, ...noFile } = r;
    expect(validate(noFile)).toEqual([" must have required property 'file'"]);
  });
});
