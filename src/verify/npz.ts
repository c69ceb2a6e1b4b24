// NumPy .npz archives (a zip of .npy files, as numpy.savez/savez_compressed write them) through
// fflate, for verify's --input, --save-outputs and --load-outputs. Layout of the files verify
// writes and reads (README "verify as a CI guard"):
//   inputs/K/NAME, outputs/K/NAME   input set K (0, 1, …): its inputs and the reference's outputs;
//   inputs/NAME, outputs/NAME       the same for a single input set (easy to write by hand);
//   NAME                            bare names: the arrays of one set (inputs for --input, outputs
//                                   for --load-outputs, whose inputs then come from --input).
import * as fs from "node:fs";
import * as path from "node:path";
import { unzipSync, zipSync } from "fflate";
import { UsageError } from "../ir/errors.js";
import { encodeNpy, parseNpy, readDataFile, type NpyArray } from "./npy.js";

function fail(file: string, why: string): never {
  throw new UsageError(`${file}: ${why}`);
}

/** Arrays of an .npz by name (the entry name without ".npy"). */
export function parseNpz(bytes: Uint8Array, file = "<npz>"): Map<string, NpyArray> {
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(bytes);
  } catch (e) {
    fail(file, `not a valid .npz file (a zip of .npy files): ${(e as Error).message}`);
  }
  const arrays = new Map<string, NpyArray>();
  for (const [name, data] of Object.entries(entries)) {
    if (name.endsWith("/")) continue; // a folder entry
    if (!name.endsWith(".npy")) fail(file, `entry '${name}' is not a .npy array`);
    arrays.set(name.slice(0, -4), parseNpy(data, `${file}:${name}`));
  }
  return arrays;
}

export function readNpz(file: string): Map<string, NpyArray> {
  return parseNpz(readDataFile(file, ".npz"), file);
}

/** An .npz (stored entries, as numpy.savez writes) of the given arrays. */
export function encodeNpz(arrays: Map<string, NpyArray>): Uint8Array {
  const entries: Record<string, [Uint8Array, { level: 0 }]> = {};
  for (const [name, a] of arrays) entries[`${name}.npy`] = [encodeNpy(a.dims, a.data, a.dtype), { level: 0 }];
  return zipSync(entries);
}

/** Write an .npz atomically (a temporary file in the same folder, then a rename). */
export function writeNpz(file: string, arrays: Map<string, NpyArray>): void {
  const bytes = encodeNpz(arrays);
  const tmp = path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    fail(file, `cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** One input set: its inputs and the outputs computed from them. */
export interface StoredSet {
  inputs: Map<string, NpyArray>;
  outputs: Map<string, NpyArray>;
}

/** The arrays of input sets, in the layout above (always with the set index). */
export function setsToArrays(sets: StoredSet[]): Map<string, NpyArray> {
  const arrays = new Map<string, NpyArray>();
  sets.forEach((s, k) => {
    for (const [name, a] of s.inputs) arrays.set(`inputs/${k}/${name}`, a);
    for (const [name, a] of s.outputs) arrays.set(`outputs/${k}/${name}`, a);
  });
  return arrays;
}

/**
 * Input sets from an archive's arrays. `bare` says what unprefixed names are ("inputs" or
 * "outputs"); an archive of bare names is one set with the other half empty.
 */
export function arraysToSets(arrays: Map<string, NpyArray>, file: string, bare: "inputs" | "outputs"): StoredSet[] {
  const prefixed = [...arrays.keys()].filter((k) => k.startsWith("inputs/") || k.startsWith("outputs/"));
  if (prefixed.length === 0) {
    const set: StoredSet = { inputs: new Map(), outputs: new Map() };
    for (const [name, a] of arrays) set[bare].set(name, a);
    return arrays.size ? [set] : fail(file, "holds no arrays");
  }
  if (prefixed.length !== arrays.size)
    fail(file, `mixes 'inputs/…'/'outputs/…' arrays with others (${[...arrays.keys()].filter((k) => !prefixed.includes(k)).slice(0, 3).join(", ")})`);
  const indexed = prefixed.every((k) => /^(inputs|outputs)\/\d+\/./.test(k));
  const sets: StoredSet[] = [];
  for (const [key, a] of arrays) {
    const m = indexed ? /^(inputs|outputs)\/(\d+)\/(.+)$/.exec(key)! : /^(inputs|outputs)\/(.+)$/.exec(key)!;
    const k = indexed ? Number(m[2]) : 0;
    const name = indexed ? m[3]! : m[2]!;
    while (sets.length <= k) sets.push({ inputs: new Map(), outputs: new Map() });
    sets[k]![m[1] as "inputs" | "outputs"].set(name, a);
  }
  sets.forEach((s, k) => {
    if (s.inputs.size === 0 && s.outputs.size === 0) fail(file, `input set ${k} is missing (sets are numbered from 0)`);
  });
  return sets;
}
