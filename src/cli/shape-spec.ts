// `--shape` values in the three spellings users already type:
//   NAME=1x3x224x224   (this tool's own)
//   NAME:1,3,224,224   (onnxsim's --overwrite-input-shape)
//   NAME:1x3x224x224   (trtexec's --shapes, which also joins several with commas)
// A name may itself contain ':' or '=' (TensorFlow exports name inputs "input_1:0"): the name is
// everything before the last separator.
import { UsageError } from "../ir/errors.js";
import type { Model } from "../ir/graph.js";

const EXAMPLE = "expected NAME=1x3x224x224, NAME:1,3,224,224 or NAME:1x3x224x224";

/** One flag value may hold several shapes joined by commas (trtexec): a comma piece holding ':' or '=' starts a new shape, the others continue onnxsim's dims. */
function split(value: string): string[] {
  const specs: string[] = [];
  for (const piece of value.split(",")) {
    if (specs.length && !/[:=]/.test(piece)) specs[specs.length - 1] += `,${piece}`;
    else specs.push(piece);
  }
  return specs;
}

function parseOne(spec: string, whole: string): [string, number[]] {
  const eq = spec.lastIndexOf("="), colon = spec.lastIndexOf(":");
  const at = eq >= 0 ? eq : colon;
  const name = spec.slice(0, at), dims = spec.slice(at + 1);
  if (at <= 0 || !/^\d+(?:x\d+)*$|^\d+(?:,\d+)+$/.test(dims)) throw new UsageError(`--shape '${whole}': ${EXAMPLE}`);
  return [name, dims.split(/[x,]/).map(Number)];
}

/** Every --shape value parsed: input name → dims. undefined when none was given. */
export function parseShapeSpecs(values: readonly string[] | undefined): Record<string, number[]> | undefined {
  if (!values?.length) return undefined;
  const out: Record<string, number[]> = {};
  for (const value of values)
    for (const spec of split(value)) {
      const [name, dims] = parseOne(spec, value);
      if (name in out && out[name]!.join("x") !== dims.join("x")) throw new UsageError(`--shape '${value}': input '${name}' was given two shapes (${out[name]!.join("x")} and ${dims.join("x")})`);
      out[name] = dims;
    }
  return out;
}

/** Every --shape name must be an input of the model: a shape for no input would be ignored silently. */
export function checkShapeNames(shapes: Record<string, number[]> | undefined, model: Model, file: string): void {
  const inputs = model.graph.realInputs().map((v) => v.name);
  for (const name of Object.keys(shapes ?? {}))
    if (!inputs.includes(name)) throw new UsageError(`${file}: --shape gives input '${name}', which the model does not have (its inputs: ${inputs.join(", ") || "none"})`);
}
