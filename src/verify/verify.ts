// Model-level proof of a rewrite: run the original and the rewritten model in onnxruntime on the
// same inputs and compare every output (REPARAM_MATH §9). Inputs are deterministic and include
// sets with large-magnitude borders and per-channel offsets, because padding bugs only show at
// the border of an image and folded-BN bugs only show when channels have a non-zero mean.
import { GraphBuilder } from "../ir/builder.js";
import { DataType, bfloat16ToFloat, dtypeName, floatToHalf, halfToFloat } from "../ir/dtype.js";
import { ModelError, UsageError } from "../ir/errors.js";
import type { Model } from "../ir/graph.js";
import { modelToBytes } from "../ir/bytes.js";
import { toNumber, type ValueInfoProto } from "../ir/proto.js";
// onnxruntime-node here, onnxruntime-web in the web app: nothing in this file needs Node itself.
import { cudaLibraries, ort, withModelFile } from "./runtime.js";

export type Provider = "cpu" | "cuda";

export type FeedData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array;

/** A user-provided input (e.g. read from .npy). `dtype` is onnxruntime's type name: float32, float16 (data = half bits), float64, int32, int64, uint8, bool. */
export interface Feed {
  dims: number[];
  data: FeedData;
  dtype: string;
}

export interface VerifyOptions {
  /** Number of input sets (default 3: normal; large borders + channel offsets; uniform + large channel constants). */
  runs?: number;
  /**
   * The file the reference model was loaded from, unmodified since: onnxruntime then reads it
   * itself (no serialized copy in memory, and it takes less memory loading a file than bytes).
   */
  referenceFile?: string;
  /** The same for the candidate model. */
  candidateFile?: string;
  /** PRNG seed (default 1). */
  seed?: number;
  /** Relative tolerance: an output passes iff max|Δ| ≤ tolerance·max(1, max|ref|) in every run. Default per output dtype: 1e-4 float32/float64, 1e-2 float16/bfloat16, 0 (exact) for integer/bool outputs. */
  tolerance?: number;
  provider?: Provider;
  /** Concrete shapes for inputs; otherwise every symbolic or missing dim is 1. */
  shapes?: Record<string, number[]>;
  /** User inputs: used for every run instead of random data. */
  feeds?: Record<string, Feed>;
}

export interface OutputComparison {
  name: string;
  /** Largest |ref − cand| over all runs (Infinity when the non-finite values differ). */
  maxAbs: number;
  /** Worst per-run maxAbs / max(1, max|ref|). */
  maxRel: number;
  /** max(1, max|ref|) over all runs (finite reference values only). */
  scale: number;
  ok: boolean;
  /** Tolerance this output was judged with. */
  tolerance: number;
  /** Missing output, different shape or different element type. */
  shapeMismatch?: string;
  /** First place where NaN/Inf differ (e.g. NaN in the candidate where the reference is finite). */
  nonFinite?: string;
  /** Run (0-based) with the largest relative error. */
  worstRun?: number;
}

export interface VerifyReport {
  ok: boolean;
  runs: number;
  provider: Provider;
  /** The tolerance used (the loosest one when it was chosen per output dtype). */
  tolerance: number;
  maxAbs: number;
  maxRel: number;
  outputs: OutputComparison[];
  inputShapes: Record<string, number[]>;
  timeMs: number;
}

export interface InputOptions {
  seed?: number;
  shapes?: Record<string, number[]>;
  feeds?: Record<string, Feed>;
}

// --- deterministic random numbers -------------------------------------------------------------

function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** mulberry32: small, fast, good enough for test data. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Rng {
  private readonly next: () => number;
  private spare: number | undefined;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * this.next();
  }
  /** Standard normal (Box–Muller). */
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    const u1 = 1 - this.next(); // (0, 1]
    const u2 = this.next();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }
}

function streamSeed(seed: number, run: number, inputIndex: number): number {
  return mix32(mix32(mix32(seed >>> 0) ^ Math.imul(run + 1, 0x9e3779b1)) ^ Math.imul(inputIndex + 1, 0x7f4a7c15));
}

// --- input shapes and data --------------------------------------------------------------------

const ORT_TYPE: Record<number, string> = {
  [DataType.FLOAT]: "float32",
  [DataType.FLOAT16]: "float16",
  [DataType.DOUBLE]: "float64",
  [DataType.INT32]: "int32",
  [DataType.INT64]: "int64",
  [DataType.BOOL]: "bool",
  [DataType.UINT8]: "uint8",
};

function product(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

function fmtDims(dims: readonly (number | string)[]): string {
  return `[${dims.join(",")}]`;
}

interface InputSpec {
  name: string;
  elemType: number;
  /** Declared dims: a number for a fixed dim, a string for a symbolic or missing one; undefined when the rank is unknown. */
  declared: (number | string)[] | undefined;
}

function inputSpecs(model: Model): InputSpec[] {
  return model.graph.realInputs().map((v: ValueInfoProto) => {
    const name = v.name ?? "";
    const tt = v.type?.tensorType;
    if (!tt) throw new UsageError(`input '${name}' is not a tensor (sequence/map/optional inputs are not supported by verify)`);
    const shape = tt.shape;
    const declared = shape
      ? (shape.dim ?? []).map((d) => {
          if (d.dimParam) return d.dimParam;
          const has = Object.prototype.hasOwnProperty.call(d, "dimValue") && d.dimValue !== null && d.dimValue !== undefined;
          const value = has ? toNumber(d.dimValue) : 0;
          return value > 0 ? value : "?";
        })
      : undefined;
    return { name, elemType: tt.elemType ?? 0, declared };
  });
}

function checkAgainstDeclared(spec: InputSpec, dims: number[], what: string): void {
  if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0))
    throw new UsageError(`${what} for input '${spec.name}' is not a list of non-negative integers: ${fmtDims(dims)}`);
  if (!spec.declared) return;
  const declared = spec.declared;
  if (declared.length !== dims.length)
    throw new UsageError(`${what} ${fmtDims(dims)} for input '${spec.name}' has rank ${dims.length}, the model declares ${fmtDims(declared)}`);
  declared.forEach((d, i) => {
    if (typeof d === "number" && d !== dims[i])
      throw new UsageError(`${what} ${fmtDims(dims)} for input '${spec.name}' does not fit the model's ${fmtDims(declared)} (dim ${i} must be ${d})`);
  });
}

function checkNames(specs: InputSpec[], names: string[], what: string): void {
  const known = new Set(specs.map((s) => s.name));
  for (const n of names)
    if (!known.has(n)) throw new UsageError(`${what} names '${n}', which is not an input of the model (inputs: ${[...known].join(", ") || "none"})`);
}

function resolveShape(spec: InputSpec, options: InputOptions): number[] {
  const feed = options.feeds?.[spec.name];
  if (feed) return [...feed.dims];
  const given = options.shapes?.[spec.name];
  if (given) {
    checkAgainstDeclared(spec, given, "shape");
    return [...given];
  }
  if (!spec.declared)
    throw new UsageError(`input '${spec.name}' has no declared shape in the model: give its shape explicitly`);
  return spec.declared.map((d) => (typeof d === "number" ? d : 1));
}

const FEED_ARRAY: Record<string, Function> = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array, bool: Uint8Array,
};

function feedTensor(spec: InputSpec, feed: Feed): ort.Tensor {
  const want = ORT_TYPE[spec.elemType];
  if (feed.dtype !== want)
    throw new UsageError(`input '${spec.name}': the given data is ${feed.dtype}, the model expects ${want ?? dtypeName(spec.elemType)}`);
  const ctor = FEED_ARRAY[feed.dtype];
  if (!ctor || !(feed.data instanceof ctor))
    throw new UsageError(`input '${spec.name}': ${feed.dtype} data must be a ${ctor?.name ?? "typed array"}, got ${feed.data.constructor.name}`);
  checkAgainstDeclared(spec, feed.dims, "given data of shape");
  if (feed.data.length !== product(feed.dims))
    throw new UsageError(`input '${spec.name}': ${feed.data.length} values do not fill shape ${fmtDims(feed.dims)}`);
  return new ort.Tensor(feed.dtype as "float32", feed.data as Float32Array, feed.dims);
}

/**
 * Float input values for one run. Pattern run % 3:
 *  0: standard normal;
 *  1: normal, the outermost rows/columns of every spatial plane (any index 0 or last along dims
 *     2..) scaled by 50, plus a per-channel (dim 1) offset;
 *  2: uniform in [-3, 3] plus a large per-channel constant (±20..100).
 */
function floatPattern(dims: readonly number[], run: number, rng: Rng): Float64Array {
  const n = product(dims);
  const out = new Float64Array(n);
  const pattern = run % 3;
  if (pattern === 0) {
    for (let i = 0; i < n; i++) out[i] = rng.normal();
    return out;
  }
  const channels = dims.length >= 2 ? dims[1]! : 1;
  const spatial = dims.length >= 3 ? dims.slice(2) : [];
  const inner = product(spatial);
  const perChannel = new Float64Array(channels);
  for (let c = 0; c < channels; c++)
    perChannel[c] = pattern === 1 ? rng.uniform(-10, 10) : (rng.uniform() < 0.5 ? -1 : 1) * rng.uniform(20, 100);
  // Border mask over one spatial block (shared by every batch/channel).
  const border = new Uint8Array(inner);
  if (pattern === 1 && spatial.length > 0) {
    const coord = new Array<number>(spatial.length).fill(0);
    for (let j = 0; j < inner; j++) {
      border[j] = coord.some((v, k) => v === 0 || v === spatial[k]! - 1) ? 1 : 0;
      for (let k = spatial.length - 1; k >= 0; k--) {
        if (++coord[k]! < spatial[k]!) break;
        coord[k] = 0;
      }
    }
  }
  for (let i = 0; i < n; i++) {
    const c = dims.length >= 2 ? Math.floor(i / inner) % channels : 0;
    if (pattern === 1) out[i] = rng.normal() * (border[i % inner] ? 50 : 1) + perChannel[c]!;
    else out[i] = rng.uniform(-3, 3) + perChannel[c]!;
  }
  return out;
}

/** The inputs of one run: user feeds where given, deterministic random data otherwise. */
export function makeInputs(model: Model, run: number, options: InputOptions = {}): Record<string, ort.Tensor> {
  const specs = inputSpecs(model);
  checkNames(specs, Object.keys(options.shapes ?? {}), "shapes");
  checkNames(specs, Object.keys(options.feeds ?? {}), "feeds");
  const seed = options.seed ?? 1;
  const result: Record<string, ort.Tensor> = {};
  specs.forEach((spec, index) => {
    const feed = options.feeds?.[spec.name];
    if (feed) {
      const shape = options.shapes?.[spec.name];
      if (shape && fmtDims(shape) !== fmtDims(feed.dims))
        throw new UsageError(`input '${spec.name}': shape ${fmtDims(shape)} conflicts with the given data's shape ${fmtDims(feed.dims)}`);
      result[spec.name] = feedTensor(spec, feed);
      return;
    }
    const dims = resolveShape(spec, options);
    const n = product(dims);
    const rng = new Rng(streamSeed(seed, run, index));
    switch (spec.elemType) {
      case DataType.FLOAT:
        result[spec.name] = new ort.Tensor("float32", Float32Array.from(floatPattern(dims, run, rng)), dims);
        break;
      case DataType.DOUBLE:
        result[spec.name] = new ort.Tensor("float64", floatPattern(dims, run, rng), dims);
        break;
      case DataType.FLOAT16: {
        const v = floatPattern(dims, run, rng);
        const h = new Uint16Array(n);
        for (let i = 0; i < n; i++) h[i] = floatToHalf(v[i]!);
        result[spec.name] = new ort.Tensor("float16", h, dims);
        break;
      }
      case DataType.INT64: {
        const a = new BigInt64Array(n);
        for (let i = 0; i < n; i++) a[i] = BigInt(Math.floor(rng.uniform() * 4));
        result[spec.name] = new ort.Tensor("int64", a, dims);
        break;
      }
      case DataType.INT32: {
        const a = new Int32Array(n);
        for (let i = 0; i < n; i++) a[i] = Math.floor(rng.uniform() * 4);
        result[spec.name] = new ort.Tensor("int32", a, dims);
        break;
      }
      case DataType.BOOL: {
        const a = new Uint8Array(n);
        for (let i = 0; i < n; i++) a[i] = rng.uniform() < 0.5 ? 1 : 0;
        result[spec.name] = new ort.Tensor("bool", a, dims);
        break;
      }
      default:
        throw new UsageError(`input '${spec.name}' is ${dtypeName(spec.elemType)}: verify generates float32, float16, float64, int32, int64 and bool inputs only (give this one as data)`);
    }
  });
  return result;
}

// --- onnxruntime sessions ---------------------------------------------------------------------

const INSTALL_HINT = "CUDA execution provider is not available in onnxruntime-node (install it with: npm install onnxruntime-node --onnxruntime-node-install=cuda12)";

/** First non-empty line of an onnxruntime error, without its source location and C++ signature. */
export function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const line = msg.split(/\r?\n/).map((l) => l.trim()).find((l) => l.length > 0) ?? "unknown error";
  // "/onnxruntime_src/.../reshape_helper.h:91 onnxruntime::ReshapeHelper::ReshapeHelper(const ...&, bool) " -> ""
  return line.replace(/\S*onnxruntime_src\/\S+:\d+\s+(?:[\w:~<>]+\([^()]*\)\s*(?:const\s+)?)?/g, "").trim();
}

let cudaProbe: Promise<{ ok: boolean; reason: string }> | undefined;

/**
 * Whether onnxruntime-node can really run a graph on the CUDA execution provider here. Checks
 * that the provider libraries are installed beside the binding (without them onnxruntime 1.30
 * throws "Failed to load shared library" and also prints a multi-line error log to stderr), then
 * runs a one-node graph with CPU fallback disabled. Cached for the process.
 */
export function cudaAvailable(): Promise<{ ok: boolean; reason: string }> {
  cudaProbe ??= probeCuda();
  return cudaProbe;
}

async function probeCuda(): Promise<{ ok: boolean; reason: string }> {
  const libs = cudaLibraries();
  if (!libs.ok) return libs;
  const dir = libs.dir;
  const b = new GraphBuilder(13);
  b.input("x", [4]);
  b.output(b.op("Relu", ["x"], {}, "probe_relu"), [4]);
  let session: ort.InferenceSession | undefined;
  try {
    session = await ort.InferenceSession.create(modelToBytes(b.build()), strictCudaOptions());
    const out = await session.run({ x: new ort.Tensor("float32", Float32Array.from([-1, 2, -3, 4]), [4]) });
    const y = Array.from(out[session.outputNames[0]!]!.data as Float32Array);
    if (y.join(",") !== "0,2,0,4") return { ok: false, reason: `CUDA probe graph returned wrong values [${y}]` };
    return { ok: true, reason: `CUDA execution provider ran a probe graph (libraries in ${dir})` };
  } catch (e) {
    return { ok: false, reason: firstLine(e) };
  } finally {
    await session?.release();
  }
}

/** CUDA session options: every node must be placed on CUDA (no silent fallback to CPU). */
function strictCudaOptions(): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ["cuda"],
    graphOptimizationLevel: "all",
    logSeverityLevel: 4,
    extra: { session: { disable_cpu_ep_fallback: "1" } },
  };
}

async function requireProvider(provider: Provider): Promise<void> {
  if (provider === "cpu") return;
  if (provider !== "cuda") throw new UsageError(`unknown provider '${String(provider)}' (use cpu or cuda)`);
  const cuda = await cudaAvailable();
  if (!cuda.ok) throw new UsageError(`${INSTALL_HINT}: ${cuda.reason}`);
}

function modelLabel(model: Model, role: string): string {
  const what = role ? `${role} model` : "model";
  return model.path ? `${what} ${model.path}` : what;
}

/**
 * An onnxruntime session for `model`; the caller releases it. Provider "cuda" runs every node on
 * CUDA or fails (UsageError); onnxruntime's complaints about the model become one-line ModelErrors.
 */
export async function createSession(model: Model, provider: Provider = "cpu", role = "", file?: string): Promise<ort.InferenceSession> {
  await requireProvider(provider);
  const options: ort.InferenceSession.SessionOptions =
    provider === "cuda" ? strictCudaOptions() : { executionProviders: ["cpu"], graphOptimizationLevel: "all", logSeverityLevel: 4 };
  // A model over protobuf's 2 GiB cannot be handed over as bytes: onnxruntime loads it from a file
  // with external data.
  const weights = [...model.graph.initializers.values()].reduce((n, t) => n + t.byteLength, 0);
  try {
    if (file) return await ort.InferenceSession.create(file, options);
    if (weights > LARGE_MODEL_BYTES) return await withModelFile(model, (f) => ort.InferenceSession.create(f, options));
    return await ort.InferenceSession.create(modelToBytes(model), options);
  } catch (e) {
    const line = firstLine(e);
    if (provider === "cuda" && /fallback to CPU EP has been explicitly disabled/i.test(line))
      throw new UsageError(`${modelLabel(model, role)}: onnxruntime would run some nodes on CPU (no CUDA kernel, or a shape computation it keeps on CPU) and verify refuses CPU fallback with provider cuda (use provider cpu): ${line}`);
    throw new ModelError(`${modelLabel(model, role)}: onnxruntime cannot load it: ${line}`);
  }
}

/** Above this, sessions load from a temporary file with external data instead of bytes. */
const LARGE_MODEL_BYTES = 1.5 * 2 ** 30;

async function runSession(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, model: Model, role: string): Promise<Record<string, ort.Tensor>> {
  try {
    return (await session.run(feeds)) as Record<string, ort.Tensor>;
  } catch (e) {
    throw new ModelError(`${modelLabel(model, role)}: onnxruntime failed to run it: ${firstLine(e)}`);
  }
}

/** One-shot helper: load `model`, run it on `feeds`, release the session. */
export async function runModel(model: Model, feeds: Record<string, ort.Tensor>, provider: Provider = "cpu"): Promise<Record<string, ort.Tensor>> {
  const session = await createSession(model, provider);
  try {
    return await runSession(session, feeds, model, "");
  } finally {
    await session.release();
  }
}

// --- comparison -------------------------------------------------------------------------------

/** Tensor values as float64 (float16/bfloat16 decoded, int64 converted); undefined for strings. */
export function tensorToFloat64(t: ort.Tensor): Float64Array | undefined {
  const data = t.data as unknown;
  const n = t.size;
  const out = new Float64Array(n);
  if (t.type === "string") return undefined;
  if (t.type === "float16" && data instanceof Uint16Array) {
    for (let i = 0; i < n; i++) out[i] = halfToFloat(data[i]!);
  } else if ((t.type as string) === "bfloat16" && data instanceof Uint16Array) {
    for (let i = 0; i < n; i++) out[i] = bfloat16ToFloat(data[i]!);
  } else if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    for (let i = 0; i < n; i++) out[i] = Number(data[i]!);
  } else {
    const arr = data as ArrayLike<number>;
    for (let i = 0; i < n; i++) out[i] = Number(arr[i]);
  }
  return out;
}

export function defaultTolerance(ortType: string): number {
  switch (ortType) {
    case "float32": case "float64": return 1e-4;
    case "float16": case "bfloat16": return 1e-2;
    default: return 0;
  }
}

interface RunComparison {
  maxAbs: number;
  refMax: number;
  nonFinite?: string;
}

function compareValues(ref: Float64Array, cand: Float64Array): RunComparison {
  let maxAbs = 0;
  let refMax = 0;
  let nonFinite: string | undefined;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i]!;
    const c = cand[i]!;
    if (Number.isFinite(r) && Number.isFinite(c)) {
      const d = Math.abs(r - c);
      if (d > maxAbs) maxAbs = d;
      const a = Math.abs(r);
      if (a > refMax) refMax = a;
      continue;
    }
    if (Number.isFinite(r)) refMax = Math.max(refMax, Math.abs(r));
    const same = (Number.isNaN(r) && Number.isNaN(c)) || r === c;
    if (!same && nonFinite === undefined) nonFinite = `element ${i}: reference ${r}, candidate ${c}`;
  }
  return { maxAbs: nonFinite ? Infinity : maxAbs, refMax, nonFinite };
}

class OutputAccumulator {
  maxAbs = 0;
  maxRel = 0;
  scale = 1;
  ok = true;
  worstRun = 0;
  shapeMismatch: string | undefined;
  nonFinite: string | undefined;
  tolerance: number | undefined;

  constructor(readonly name: string, private readonly userTolerance: number | undefined) {}

  add(run: number, ref: ort.Tensor, cand: ort.Tensor | undefined): void {
    const tol = this.userTolerance ?? defaultTolerance(ref.type);
    this.tolerance = Math.max(this.tolerance ?? 0, tol);
    if (!cand) return this.fail(`candidate has no output named '${this.name}'`);
    if (ref.dims.length !== cand.dims.length || ref.dims.some((d, i) => d !== cand.dims[i]))
      return this.fail(`shape ${fmtDims(ref.dims)} in the reference, ${fmtDims(cand.dims)} in the candidate (run ${run})`);
    if (ref.type !== cand.type) return this.fail(`element type ${ref.type} in the reference, ${cand.type} in the candidate`);
    const r = tensorToFloat64(ref);
    const c = tensorToFloat64(cand);
    let cmp: RunComparison;
    if (!r || !c) {
      const rs = ref.data as string[];
      const cs = cand.data as string[];
      const differ = rs.findIndex((v, i) => v !== cs[i]);
      cmp = differ < 0 ? { maxAbs: 0, refMax: 0 } : { maxAbs: Infinity, refMax: 0, nonFinite: `string element ${differ} differs` };
    } else {
      cmp = compareValues(r, c);
    }
    const scale = Math.max(1, cmp.refMax);
    const rel = cmp.maxAbs / scale;
    this.scale = Math.max(this.scale, scale);
    this.maxAbs = Math.max(this.maxAbs, cmp.maxAbs);
    if (rel > this.maxRel) {
      this.maxRel = rel;
      this.worstRun = run;
    }
    if (cmp.nonFinite && !this.nonFinite) this.nonFinite = `run ${run}, ${cmp.nonFinite}`;
    if (!(cmp.maxAbs <= tol * scale)) this.ok = false;
  }

  private fail(text: string): void {
    this.ok = false;
    this.maxAbs = Infinity;
    this.maxRel = Infinity;
    this.shapeMismatch ??= text;
  }

  result(): OutputComparison {
    const out: OutputComparison = {
      name: this.name, maxAbs: this.maxAbs, maxRel: this.maxRel, scale: this.scale, ok: this.ok,
      tolerance: this.tolerance ?? this.userTolerance ?? 0, worstRun: this.worstRun,
    };
    if (this.shapeMismatch) out.shapeMismatch = this.shapeMismatch;
    if (this.nonFinite) out.nonFinite = this.nonFinite;
    return out;
  }
}

function checkSameInputs(reference: Model, candidate: Model): void {
  const ref = inputSpecs(reference);
  const cand = new Map(inputSpecs(candidate).map((s) => [s.name, s]));
  const refNames = ref.map((s) => s.name);
  const missing = refNames.filter((n) => !cand.has(n));
  const extra = [...cand.keys()].filter((n) => !refNames.includes(n));
  if (missing.length || extra.length)
    throw new ModelError(
      `candidate model's inputs differ from the reference's` +
        (missing.length ? `: missing ${missing.map((n) => `'${n}'`).join(", ")}` : "") +
        (extra.length ? `${missing.length ? ";" : ":"} extra ${extra.map((n) => `'${n}'`).join(", ")}` : ""),
    );
  for (const r of ref) {
    const c = cand.get(r.name)!;
    if (c.elemType !== r.elemType)
      throw new ModelError(`candidate model's input '${r.name}' is ${dtypeName(c.elemType)}, the reference's is ${dtypeName(r.elemType)}`);
  }
}

/** Run `reference` and `candidate` on the same inputs and compare every reference output. */
export async function verifyModels(reference: Model, candidate: Model, options: VerifyOptions = {}): Promise<VerifyReport> {
  const start = performance.now();
  const runs = options.runs ?? 3;
  if (!Number.isInteger(runs) || runs < 1) throw new UsageError(`runs must be a positive integer, got ${runs}`);
  if (options.tolerance !== undefined && !(options.tolerance >= 0)) throw new UsageError(`tolerance must be a non-negative number, got ${options.tolerance}`);
  const provider = options.provider ?? "cpu";
  checkSameInputs(reference, candidate);
  const inputOptions: InputOptions = { seed: options.seed ?? 1, shapes: options.shapes, feeds: options.feeds };
  // Build (and validate) the first input set before spending time on sessions.
  const firstInputs = makeInputs(reference, 0, inputOptions);
  const inputShapes: Record<string, number[]> = {};
  for (const [name, t] of Object.entries(firstInputs)) inputShapes[name] = [...t.dims];

  await requireProvider(provider);
  // One session at a time (the reference's outputs are kept, not its weights): peak memory holds
  // one model in onnxruntime, not two.
  const feedsOf = (run: number) => (run === 0 ? firstInputs : makeInputs(reference, run, inputOptions));
  const refOuts: Record<string, ort.Tensor>[] = [];
  let outputNames: readonly string[] = [];
  const refSession = await createSession(reference, provider, "reference", options.referenceFile);
  try {
    outputNames = refSession.outputNames;
    for (let run = 0; run < runs; run++) refOuts.push(await runSession(refSession, feedsOf(run), reference, "reference"));
  } finally {
    await refSession.release();
  }
  const acc = new Map<string, OutputAccumulator>();
  const candSession = await createSession(candidate, provider, "candidate", options.candidateFile);
  try {
    for (let run = 0; run < runs; run++) {
      const candOut = await runSession(candSession, feedsOf(run), candidate, "candidate");
      for (const name of outputNames) {
        let a = acc.get(name);
        if (!a) acc.set(name, (a = new OutputAccumulator(name, options.tolerance)));
        a.add(run, refOuts[run]![name]!, candOut[name]);
      }
      refOuts[run] = {};
    }
  } finally {
    await candSession.release();
  }
  const outputs = [...acc.values()].map((a) => a.result());
  return {
    ok: outputs.every((o) => o.ok),
    runs,
    provider,
    tolerance: options.tolerance ?? outputs.reduce((m, o) => Math.max(m, o.tolerance), 0),
    maxAbs: outputs.reduce((m, o) => Math.max(m, o.maxAbs), 0),
    maxRel: outputs.reduce((m, o) => Math.max(m, o.maxRel), 0),
    outputs,
    inputShapes,
    timeMs: performance.now() - start,
  };
}
