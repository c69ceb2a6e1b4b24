// Which input shapes a proof runs at. A rewritten model that keeps dynamic dims must be equal at
// every size, and a rewrite that was only valid at one size (explicit pads computed for 8x8,
// a Reshape with the batch baked in) shows at another: so every dynamic dim is proven at two
// values at least, an odd batch greater than 1 and, for each other dynamic dim, an odd and an
// even size. Sizes are found by asking the reference model: a size it refuses is not one the
// model accepts, and the next candidate is tried (README "Guarantees").
//
//   set 0: the user's shapes; otherwise batch 1 and every other dynamic dim at the first of
//          8, 16, 32, 64, 224, 1 the reference runs at;
//   set 1: batch 3 (1 when set 0's batch is already odd and > 1) and every other dynamic dim
//          moved to the other parity (v+1, v−1, v+3, …); failing that the same sizes with
//          batch 3, failing that set 0's batch at the other parity. What could not be covered is
//          said in the report's notes.
// A dim is dynamic when neither model gives it a value; dims sharing a name are one value.
// Inputs given as data keep their data's shape.

export type DeclaredDims = (number | string)[] | undefined;

export interface PlannedInput {
  name: string;
  /** Declared dims in the reference and in the candidate (undefined: rank unknown). */
  reference: DeclaredDims;
  candidate: DeclaredDims;
}

export type ShapeSet = Record<string, number[]>;

export interface ShapePlan {
  sets: ShapeSet[];
  /** What was chosen and what could not be covered, in words. */
  notes: string[];
}

/** Runs the reference at `shapes`: undefined when it ran, else onnxruntime's error text. */
export type Acceptor = (shapes: ShapeSet, set: number) => Promise<string | undefined>;

const EVEN_SIZES = [8, 16, 32, 64, 224, 1];
const PARITY_STEPS = [1, -1, 3, -3, 5, -5, 7, -7];
/** At most this many refused trials per set: each costs a forward pass of the reference. */
const MAX_TRIALS = 10;

interface DynamicDim {
  key: string;
  batch: boolean;
  /** input name and dim index of each occurrence */
  at: [string, number][];
}

export async function planShapes(inputs: PlannedInput[], given: ShapeSet, fed: ReadonlySet<string>, accepts: Acceptor): Promise<ShapePlan> {
  const notes: string[] = [];
  const dynamic = new Map<string, DynamicDim>();
  const bound = new Map<string, number>(); // dynamic key -> value fixed by given data
  const fixedDims = new Map<string, number[]>(); // input -> dims with dynamic entries as placeholders
  for (const input of inputs) {
    const g = given[input.name];
    const declared = input.reference ?? input.candidate;
    if (!declared) {
      // Rank unknown: only a given shape can say it (the input checks say so when it is missing).
      fixedDims.set(input.name, g ? [...g] : []);
      continue;
    }
    const dims: number[] = [];
    declared.forEach((d, i) => {
      const c = input.candidate?.[i];
      const value = typeof d === "number" ? d : typeof c === "number" ? c : undefined;
      if (value !== undefined) {
        dims.push(g?.[i] ?? value);
        return;
      }
      const key = typeof d === "string" && d !== "?" ? `name:${d}` : `${input.name}#${i}`;
      let dim = dynamic.get(key);
      if (!dim) dynamic.set(key, (dim = { key, batch: i === 0, at: [] }));
      dim.at.push([input.name, i]);
      dims.push(-1);
      if (fed.has(input.name) && g?.[i] !== undefined) bound.set(key, g[i]!);
    });
    fixedDims.set(input.name, dims);
  }
  // User-given (not fed) values: set 0's value of each dynamic dim they name.
  const userValue = new Map<string, number>();
  for (const dim of dynamic.values())
    for (const [name, i] of dim.at) {
      const g = given[name];
      if (g?.[i] !== undefined && !userValue.has(dim.key)) userValue.set(dim.key, g[i]!);
    }
  const free = [...dynamic.values()].filter((d) => !bound.has(d.key));

  const build = (values: Map<string, number>): ShapeSet => {
    const set: ShapeSet = {};
    for (const input of inputs) {
      const g = given[input.name];
      if (fed.has(input.name) || !(input.reference ?? input.candidate)) {
        if (g) set[input.name] = [...g];
        continue;
      }
      const dims = [...fixedDims.get(input.name)!];
      for (const dim of dynamic.values())
        for (const [name, i] of dim.at) if (name === input.name) dims[i] = bound.get(dim.key) ?? values.get(dim.key)!;
      set[input.name] = dims;
    }
    return set;
  };
  const describe = (s: ShapeSet) => Object.entries(s).map(([k, v]) => `${k}=${v.join("x")}`).join(" ");

  /** The first attempt the reference accepts (at most MAX_TRIALS refusals), or what it said. */
  const firstAccepted = async (attempts: Map<string, number>[], set: number) => {
    const tried: string[] = [];
    let lastError = "";
    for (const values of attempts) {
      const shapes = build(values);
      const error = await accepts(shapes, set);
      if (error === undefined) return { values, shapes, tried, lastError };
      tried.push(describe(shapes));
      lastError = error;
      if (tried.length >= MAX_TRIALS) break;
    }
    return { tried, lastError };
  };

  // Set 0: the user's values, else batch 1 and the first even size the reference accepts.
  let values0 = new Map<string, number>();
  let set0: ShapeSet;
  if (free.every((d) => userValue.has(d.key))) {
    for (const d of free) values0.set(d.key, userValue.get(d.key)!);
    set0 = build(values0);
  } else {
    const varies = free.some((d) => !d.batch && !userValue.has(d.key));
    const attempts = (varies ? EVEN_SIZES : [1]).map((size) => new Map(free.map((d) => [d.key, userValue.get(d.key) ?? (d.batch ? 1 : size)])));
    const found = await firstAccepted(attempts, 0);
    if (!found.values) return { sets: [], notes: [`the reference runs at none of ${found.tried.join(", ")}: ${found.lastError}`] };
    [values0, set0] = [found.values, found.shapes];
  }
  const sets = [set0];
  if (free.length === 0) {
    if (dynamic.size > 0) notes.push("every dynamic dim is fixed by the data given: proven at that shape only");
    return { sets, notes };
  }

  // Set 1: an odd batch > 1 and the other parity; failing that, each of the two alone.
  const batchDims = free.filter((d) => d.batch);
  const otherDims = free.filter((d) => !d.batch);
  const batch1 = (v: number) => (v % 2 === 1 && v > 1 ? 1 : 3);
  const attempts: Map<string, number>[] = [];
  const withBatch = (newBatch: boolean, step: number) => {
    const values = new Map<string, number>();
    for (const d of batchDims) values.set(d.key, newBatch ? batch1(values0.get(d.key)!) : values0.get(d.key)!);
    for (const d of otherDims) values.set(d.key, values0.get(d.key)! + step);
    return values;
  };
  const steps = PARITY_STEPS.filter((step) => otherDims.length > 0 && otherDims.every((d) => values0.get(d.key)! + step >= 1));
  for (const step of steps) attempts.push(withBatch(true, step));
  if (batchDims.length) attempts.push(withBatch(true, 0));
  if (batchDims.length) for (const step of steps) attempts.push(withBatch(false, step));
  const found = await firstAccepted(attempts, 1);
  const values1 = found.values;
  const lastError = found.lastError;
  if (found.shapes) sets.push(found.shapes);

  // Say what is covered.
  const seen = (d: DynamicDim) => [values0.get(d.key)!, ...(values1 ? [values1.get(d.key)!] : [])];
  const label = (d: DynamicDim) => (d.key.startsWith("name:") ? `'${d.key.slice(5)}'` : `${d.at[0]![0]} dim ${d.at[0]![1]}`);
  for (const d of batchDims)
    if (!seen(d).some((v) => v > 1 && v % 2 === 1)) notes.push(`batch ${label(d)} proven at ${seen(d).join(", ")} only: the reference refused an odd batch > 1${lastError ? ` (${lastError})` : ""}`);
  for (const d of otherDims) {
    const vs = seen(d);
    if (!(vs.some((v) => v % 2 === 0) && vs.some((v) => v % 2 === 1)))
      notes.push(`dynamic dim ${label(d)} proven at ${vs.join(", ")} only: the reference refused the sizes of the other parity tried${lastError ? ` (${lastError})` : ""}`);
  }
  return { sets, notes };
}
