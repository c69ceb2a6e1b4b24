// Network descriptions for the trainer: block families (which branches a re-parameterizable layer
// has), the built-in presets (`--arch`), and the JSON format of `--block-spec`.
import * as fs from "node:fs";
import { UsageError } from "../ir/errors.js";

/**
 * The branches a layer can have; each is linear (no activation inside) and has the same output grid
 * as the main k×k conv (explicit pads: k//2 for k×k, 0 for 1×1, (0,k//2)/(k//2,0) for 1×k/k×1).
 *   kxk       k×k conv (stride s)                               RepVGG/ACB/DBB/MobileOne main conv
 *   1x1       1×1 conv (stride s)                               RepVGG, DBB, MobileOne scale branch
 *   identity  the input itself (stride 1, cin = cout)           RepVGG, MobileOne, RepGhost
 *   1xk, kx1  asymmetric convs                                  ACNet
 *   1x1_avg   1×1 conv, then k×k average pool (stride s)        DBB, OREPA
 *   1x1_kxk   1×1 conv (identity-initialised), then k×k conv    DBB, OREPA
 *   dw_pw     depthwise k×k, then 1×1 (dense layers only)       OREPA "linear depthwise separable"
 * Multi-branch form: every conv is followed by BatchNormalization (DBB's BN-value padding between
 * the 1×1 and the pool / k×k). Online form (`--online`): no BN inside branches, a learned per-channel
 * scale at the end of each branch, one BN after the sum; the branches compose into one kernel.
 */
export const BRANCH_KINDS = ["kxk", "1x1", "identity", "1xk", "kx1", "1x1_avg", "1x1_kxk", "dw_pw"] as const;
export type BranchKind = (typeof BRANCH_KINDS)[number];

export const FAMILIES = ["repvgg", "acb", "dbb", "orepa", "mobileone", "repghost", "plain"] as const;
export type Family = (typeof FAMILIES)[number];

/** One re-parameterizable layer: deploys as one Conv (+ activation). */
export interface LayerSpec {
  name: string;
  cin: number;
  cout: number;
  k: number;
  stride: number;
  depthwise: boolean;
  /** Branch kinds; a kind may repeat (MobileOne's k over-parameterized branches). */
  branches: BranchKind[];
  act: "relu" | "none";
  /** Constant attention (ASR) on the branch sum: Mul by σ(FC(ReLU(FC(ψ)))) with a learned ψ. */
  asr: boolean;
}

export interface NetSpec {
  name: string;
  /** Input [C, H, W]. */
  input: [number, number, number];
  classes: number;
  layers: LayerSpec[];
  /** Families used (for reports). */
  families: Family[];
}

/** A stage of the `--block-spec` JSON file (and of the presets). */
export interface StageSpec {
  width: number;
  depth?: number;
  stride?: number;
  block?: Family;
  kernel?: number;
  /** Explicit branch list instead of the family's (for custom blocks). */
  branches?: BranchKind[];
  /** MobileOne: number of over-parameterized k×k branches (default 3). */
  overparam?: number;
  asr?: boolean;
}

export interface BlockSpecFile {
  name?: string;
  input?: [number, number, number];
  classes?: number;
  block?: Family;
  asr?: boolean;
  stem?: StageSpec;
  stages: StageSpec[];
}

function familyBranches(family: Family, k: number, stride: number, cin: number, cout: number, overparam: number): BranchKind[] {
  const id: BranchKind[] = stride === 1 && cin === cout ? ["identity"] : [];
  switch (family) {
    case "repvgg": return ["kxk", "1x1", ...id];
    case "acb": return ["kxk", "1xk", "kx1"];
    case "dbb": return k > 1 ? ["kxk", "1x1", "1x1_avg", "1x1_kxk"] : ["kxk"];
    case "orepa": return k > 1 ? ["kxk", "1x1", "1x1_avg", "1x1_kxk", "dw_pw"] : ["kxk"];
    case "mobileone": return [...Array<BranchKind>(overparam).fill("kxk"), ...(k > 1 ? (["1x1"] as BranchKind[]) : []), ...id];
    case "repghost": return ["kxk", ...id];
    case "plain": return ["kxk"];
  }
}

/** Expands a stage into layers (MobileOne: depthwise k×k + pointwise 1×1; RepGhost: 1×1 then depthwise k×k). */
function stageLayers(prefix: string, st: StageSpec, cin: number, family: Family, asr: boolean, dense: boolean): LayerSpec[] {
  const out: LayerSpec[] = [];
  const depth = st.depth ?? 1;
  const k = st.kernel ?? 3;
  const overparam = st.overparam ?? 3;
  const fam = st.block ?? family;
  const withAsr = st.asr ?? asr;
  for (let i = 0; i < depth; i++) {
    const stride = i === 0 ? st.stride ?? 1 : 1;
    const name = depth === 1 ? prefix : `${prefix}.${i}`;
    const cout = st.width;
    const layer = (suffix: string, lcin: number, lcout: number, lk: number, ls: number, depthwise: boolean, f: Family, act: LayerSpec["act"] = "relu"): LayerSpec => ({
      name: suffix ? `${name}.${suffix}` : name,
      cin: lcin, cout: lcout, k: lk, stride: ls, depthwise,
      branches: st.branches ? filterBranches(st.branches, ls, lcin, lcout, depthwise) : familyBranches(f, lk, ls, lcin, lcout, overparam),
      act, asr: withAsr,
    });
    if ((fam === "mobileone" || fam === "repghost") && !dense) {
      if (fam === "mobileone") out.push(layer("dw", cin, cin, k, stride, true, fam), layer("pw", cin, cout, 1, 1, false, fam));
      else out.push(layer("pw", cin, cout, 1, 1, false, "plain"), layer("dw", cout, cout, k, stride, true, fam));
    } else {
      out.push(layer("", cin, cout, k, stride, false, fam === "repghost" ? "repvgg" : fam));
    }
    cin = cout;
  }
  return out;
}

function filterBranches(list: BranchKind[], stride: number, cin: number, cout: number, depthwise: boolean): BranchKind[] {
  return list.filter((b) => (b !== "identity" || (stride === 1 && cin === cout)) && !(b === "dw_pw" && depthwise));
}

export function buildNet(file: BlockSpecFile, source = "block spec"): NetSpec {
  validateSpec(file, source);
  const family = file.block ?? "repvgg";
  const input = file.input ?? [1, 28, 28];
  const asr = file.asr ?? false;
  const layers: LayerSpec[] = [];
  let cin = input[0];
  if (file.stem) {
    layers.push(...stageLayers("stem", { ...file.stem, depth: 1 }, cin, family, asr, true));
    cin = file.stem.width;
  }
  file.stages.forEach((st, s) => {
    layers.push(...stageLayers(`stages.${s}`, st, cin, family, asr, false));
    cin = st.width;
  });
  const families = [...new Set([family, ...file.stages.map((s) => s.block ?? family), ...(file.stem?.block ? [file.stem.block] : [])])];
  return { name: file.name ?? "custom", input, classes: file.classes ?? 10, layers, families };
}

function validateSpec(f: BlockSpecFile, source: string): void {
  const bad = (msg: string): never => {
    throw new UsageError(`${source}: ${msg}`);
  };
  if (typeof f !== "object" || f === null) bad("expected a JSON object");
  if (!Array.isArray(f.stages) || f.stages.length === 0) bad("'stages' must be a non-empty array of {width, depth?, stride?, block?, kernel?, branches?}");
  const known = new Set(["name", "input", "classes", "block", "asr", "stem", "stages"]);
  for (const key of Object.keys(f)) if (!known.has(key)) bad(`unknown key '${key}' (known: ${[...known].join(", ")})`);
  if (f.block !== undefined && !(FAMILIES as readonly string[]).includes(f.block)) bad(`block '${f.block}': expected one of ${FAMILIES.join(", ")}`);
  if (f.input !== undefined && (!Array.isArray(f.input) || f.input.length !== 3 || f.input.some((d) => !Number.isInteger(d) || d < 1))) bad("'input' must be [channels, height, width]");
  if (f.classes !== undefined && (!Number.isInteger(f.classes) || f.classes < 2)) bad("'classes' must be an integer ≥ 2");
  const stageKeys = new Set(["width", "depth", "stride", "block", "kernel", "branches", "overparam", "asr"]);
  const check = (st: StageSpec, where: string) => {
    if (typeof st !== "object" || st === null) bad(`${where}: expected an object`);
    for (const key of Object.keys(st)) if (!stageKeys.has(key)) bad(`${where}: unknown key '${key}' (known: ${[...stageKeys].join(", ")})`);
    if (!Number.isInteger(st.width) || st.width < 1) bad(`${where}: 'width' must be a positive integer`);
    if (st.depth !== undefined && (!Number.isInteger(st.depth) || st.depth < 1)) bad(`${where}: 'depth' must be a positive integer`);
    if (st.stride !== undefined && st.stride !== 1 && st.stride !== 2) bad(`${where}: 'stride' must be 1 or 2`);
    if (st.kernel !== undefined && (!Number.isInteger(st.kernel) || st.kernel < 1 || st.kernel % 2 === 0)) bad(`${where}: 'kernel' must be an odd positive integer`);
    if (st.block !== undefined && !(FAMILIES as readonly string[]).includes(st.block)) bad(`${where}: block '${st.block}': expected one of ${FAMILIES.join(", ")}`);
    if (st.overparam !== undefined && (!Number.isInteger(st.overparam) || st.overparam < 1)) bad(`${where}: 'overparam' must be a positive integer`);
    if (st.branches !== undefined) {
      if (!Array.isArray(st.branches) || st.branches.length === 0) bad(`${where}: 'branches' must be a non-empty array`);
      for (const b of st.branches) if (!(BRANCH_KINDS as readonly string[]).includes(b)) bad(`${where}: branch '${b}': expected one of ${BRANCH_KINDS.join(", ")}`);
      if (!st.branches.includes("kxk")) bad(`${where}: 'branches' must include the main 'kxk' conv`);
    }
  };
  if (f.stem) check(f.stem, "stem");
  f.stages.forEach((st, i) => check(st, `stages[${i}]`));
}

const MINI_STAGES: StageSpec[] = [
  { width: 32, depth: 1, stride: 2 },
  { width: 32, depth: 1, stride: 1 },
  { width: 64, depth: 1, stride: 2 },
];

/** Built-in presets (28×28 grayscale inputs, 10 classes unless the data says otherwise). */
export const PRESETS: Record<string, BlockSpecFile & { description: string }> = {
  ...Object.fromEntries(
    (["repvgg", "acb", "dbb", "orepa", "mobileone", "repghost", "plain"] as Family[]).map((fam) => [
      `${fam}-mini`,
      { description: `4 ${fam} layers (16-32-32-64), ~0.06M parameters deploy`, block: fam, stem: { width: 16, stride: 1 }, stages: MINI_STAGES },
    ]),
  ),
  "repvgg-small": {
    description: "RepVGG, 7 blocks (32-64-64-128-128-128-128)",
    block: "repvgg",
    stem: { width: 32, stride: 1 },
    stages: [{ width: 64, depth: 2, stride: 2 }, { width: 128, depth: 4, stride: 2 }],
  },
};

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

/** The net for `--arch NAME` or `--block-spec FILE`; input/classes come from the data set when not given. */
export function resolveNet(opts: { arch?: string; blockSpec?: string; asr?: boolean; input?: [number, number, number]; classes?: number }): NetSpec {
  let file: BlockSpecFile;
  let source: string;
  if (opts.blockSpec) {
    if (opts.arch) throw new UsageError("--arch and --block-spec are exclusive");
    let text: string;
    try {
      text = fs.readFileSync(opts.blockSpec, "utf8");
    } catch {
      throw new UsageError(`${opts.blockSpec}: cannot read the block spec file`);
    }
    try {
      file = JSON.parse(text) as BlockSpecFile;
    } catch (e) {
      throw new UsageError(`${opts.blockSpec}: not valid JSON (${(e as Error).message})`);
    }
    source = opts.blockSpec;
  } else {
    const name = opts.arch ?? "repvgg-mini";
    const preset = PRESETS[name];
    if (!preset) throw new UsageError(`--arch '${name}': expected one of ${presetNames().join(", ")} (or --block-spec FILE.json)`);
    const { description: _d, ...rest } = preset;
    file = { name, ...rest };
    source = `--arch ${name}`;
  }
  const merged: BlockSpecFile = {
    ...file,
    input: file.input ?? opts.input,
    classes: file.classes ?? opts.classes,
    asr: opts.asr || file.asr,
  };
  const net = buildNet(merged, source);
  if (opts.input && (net.input[0] !== opts.input[0] || net.input[1] !== opts.input[1] || net.input[2] !== opts.input[2]))
    throw new UsageError(`${source}: input ${net.input.join("x")} does not match the data (${opts.input.join("x")})`);
  if (opts.classes !== undefined && net.classes !== opts.classes)
    throw new UsageError(`${source}: ${net.classes} classes, the data has ${opts.classes}`);
  return net;
}
