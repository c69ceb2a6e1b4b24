// Model-level proof of a rewrite: run the original and the rewritten model in onnxruntime on the
// same inputs and compare every output (docs/rules.md §11). Inputs are deterministic and include
// sets with large-magnitude borders and per-channel offsets, because padding bugs only show at
// the border of an image and folded-BN bugs only show when channels have a non-zero mean.
import { GraphBuilder } from "../ir/builder.js";
import { DataType, bfloat16ToFloat, dtypeName, floatToHalf, halfToFloat } from "../ir/dtype.js";
import { ModelError, UsageError } from "../ir/errors.js";
import type { Model } from "../ir/graph.js";
import { modelToBytes } from "../ir/bytes.js";
import { toNumber, type ValueInfoProto } from "../ir/proto.js";
import { product, type Tensor } from "../ir/tensor.js";
// onnxruntime-node here, onnxruntime-web in the web app: nothing in this file needs Node itself.
import { cudaLibraries, ort, referenceFromFile, withModelFile } from "./runtime.js";
import { CONCLUSIVE_LIMIT, FLOOR_ULPS, NOISE_FACTOR, compareValues, perImage, sliceLayout, sliceSpread, type RunStats, type UserCriterion } from "./compare.js";
import { liftedModel, perturbInput, perturbableWeights, WeightFeeds, type FloatFeedData, type WeightFeed } from "./noise.js";
import { floorTolerance, outputPrecisions, unitRoundoff } from "./precision.js";
import { mix32, Rng } from "./rng.js";
import { planShapes, type ShapeSet } from "./shape-plan.js";

export type Provider = "cpu" | "cuda";

export type FeedData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array;

/** A user-provided input (e.g. read from .npy). `dtype` is onnxruntime's type name: float32, float16 (data = half bits), float64, int32, int64, uint8, bool. */
export interface Feed {
  dims: number[];
  data: FeedData;
  dtype: string;
  /** The file it was read from (named in every error about it). */
  source?: string;
}

export interface VerifyOptions {
  /** Input patterns per shape set (default 3: normal; large borders + channel offsets; uniform + large channel constants). */
  runs?: number;
  /**
   * The file the reference model was loaded from, unmodified since: the report names it,
   * runInputSets has onnxruntime read it itself (no serialized copy in memory), and verifyModels
   * proves against the model read again from it (runtime.ts referenceFromFile; in the browser, the
   * model as given), so nothing done in memory to the reference's tensors, which the candidate may
   * share, can change what the candidate is compared with.
   */
  referenceFile?: string;
  /** The same for the candidate model (verifyAgainstOutputs loads it from there). */
  candidateFile?: string;
  /** PRNG seed (default 1). */
  seed?: number;
  /**
   * Relative to each output's scale S (its largest finite reference magnitude): |Δ| ≤ tolerance·S.
   * Giving tolerance, atol or rtol replaces the default criterion (README "Guarantees": a floor
   * set by the output's lowest compute precision, raised to 8× the reference's own rounding noise
   * where that is larger) by exactly |Δ| ≤ atol + rtol·|ref| + tolerance·S for every element.
   */
  tolerance?: number;
  /** Absolute tolerance (see tolerance). */
  atol?: number;
  /** Elementwise relative tolerance, as numpy.isclose's rtol (see tolerance). */
  rtol?: number;
  provider?: Provider;
  /**
   * Concrete shapes for inputs (the first shape set). Dims that stay dynamic in both models are
   * also proven at a second size (odd batch > 1, other dims at the other parity: shape-plan.ts).
   */
  shapes?: Record<string, number[]>;
  /** User inputs: used instead of random data (inputs given for every input: one input set). */
  feeds?: Record<string, Feed>;
  /** When given, receives every input set's inputs and the reference's outputs on them (for --save-outputs). */
  record?: RecordedSet[];
}

export interface OutputComparison {
  name: string;
  /** The reference's shapes of this output, one per distinct input shape set. */
  shapes: number[][];
  /** Largest |ref − cand| over all input sets, where both are finite. */
  maxAbs: number;
  /** Worst per-set maxAbs / scale of that set (Infinity when the reference is all zero there and the candidate is not). */
  maxRel: number;
  /** Largest finite |ref| over all input sets. */
  scale: number;
  ok: boolean;
  /** Relative floor this output was judged with: its precision's default, or the user's tolerance. */
  tolerance: number;
  /** Lowest float precision the reference computes this output in (float16 inside float32 I/O: float16). */
  precision?: string;
  /** Largest allowance relative to scale on a conclusive input set (the floor, or raised by calibration). */
  allowedRel: number;
  /** Largest spread of the reference's re-rounded evaluations relative to scale (present when calibration ran). */
  noiseRel?: number;
  /** Input sets (each image of a packed set counting as one) on which the reference's own rounding noise was too large to prove anything. */
  inconclusiveSets?: number;
  /** Every input set was inconclusive: this output cannot be proven on these inputs (a failure, but no evidence against the candidate). */
  inconclusive?: boolean;
  /** Elements where the reference is finite and the candidate NaN/±Inf (a failure). */
  nonFiniteMismatches: number;
  /** The first of them. */
  nonFinite?: string;
  /** Elements where the reference is NaN/±Inf: outside the finite-value contract, not compared. */
  referenceNonFinite: number;
  /** Elements outside the user's atol/rtol/tolerance. */
  exceeding?: number;
  /** Missing output, different shape or different element type. */
  shapeMismatch?: string;
  /** Why it failed, in words (absent when ok). */
  reason?: string;
  /** Input set (0-based) with the largest relative error. */
  worstRun?: number;
}

/** Version tag of the verify report's shape (JSON Schema: docs/schema). */
export const VERIFY_SCHEMA = "reparam-onnx/verify-report/1";

/** Version tag of `verify A.onnx --save-outputs FILE.npz`'s report (one model run and recorded). */
export const RECORD_SCHEMA = "reparam-onnx/verify-record/1";

export interface VerifyReport {
  schema: typeof VERIFY_SCHEMA;
  ok: boolean;
  /** The files compared, where known (models built in memory: null). */
  reference: string | null;
  candidate: string | null;
  provider: Provider;
  /** "calibrated": the default criterion; "floor": the default floor alone (stored reference outputs, no model to measure noise on); "user": the tolerances given. */
  criterion: "calibrated" | "floor" | "user";
  /** The relative tolerance: the user's, or the loosest default floor over the outputs. */
  tolerance: number;
  atol?: number;
  rtol?: number;
  /** Whether the reference's rounding noise was measured (always, when a reference model is given). */
  calibrated: boolean;
  /**
   * Present and true when the only failures are outputs that cannot be proven on these inputs
   * (the reference's own noise too large): no evidence that the candidate is wrong.
   */
  inconclusive?: boolean;
  /** onnxruntime could not load or run the candidate (the reference ran): its one-line error. A failure of the candidate, not bad input. */
  candidateError?: string;
  /** Input patterns per shape set, as asked. */
  runs: number;
  /**
   * Input sets really run: per shape set, `runs` patterns; 1 when every input is given as data; 1 for
   * the second shape set when its batch carries the patterns as its images (a packed set, README "Guarantees").
   */
  inputSets: number;
  /** The input shapes of each shape set. */
  shapeSets: Record<string, number[]>[];
  /** The first shape set. */
  inputShapes: Record<string, number[]>;
  /** What the shape choice could not cover, in words. */
  notes: string[];
  maxAbs: number;
  maxRel: number;
  outputs: OutputComparison[];
  timeMs: number;
}

export interface InputOptions {
  seed?: number;
  shapes?: Record<string, number[]>;
  feeds?: Record<string, Feed>;
}

// --- deterministic random numbers -------------------------------------------------------------

export { mulberry32 } from "./rng.js";

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

function checkNames(specs: InputSpec[], names: string[], what: string, feeds?: Record<string, Feed>): void {
  const known = new Set(specs.map((s) => s.name));
  for (const n of names) {
    if (known.has(n)) continue;
    const source = feeds?.[n]?.source;
    throw new UsageError(`${source ? `${source}: data for '${n}'` : `${what} names '${n}'`}, which is not an input of the model (inputs: ${[...known].join(", ") || "none"})`);
  }
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
  try {
    return feedTensorOf(spec, feed);
  } catch (e) {
    if (e instanceof UsageError && feed.source && !e.message.startsWith(`${feed.source}:`)) throw new UsageError(`${feed.source}: ${e.message}`);
    throw e;
  }
}

function feedTensorOf(spec: InputSpec, feed: Feed): ort.Tensor {
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
  checkNames(specs, Object.keys(options.feeds ?? {}), "feeds", options.feeds);
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
        // A one-element bool is typically an If's condition: it alternates with the run, so both
        // branches are taken across the runs (random draws could take one branch in every run).
        const a = new Uint8Array(n);
        if (n === 1) a[0] = (run + index) % 2;
        else for (let i = 0; i < n; i++) a[i] = rng.uniform() < 0.5 ? 1 : 0;
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
  return errorLines(e)[0] ?? "unknown error";
}

/**
 * The whole text of an onnxruntime error on one line (its lines joined by "; "), without source
 * locations and C++ signatures: a shape error's "index: 2 Got: 9 Expected: 8" lines are the point.
 */
export function errorText(e: unknown): string {
  const lines = errorLines(e);
  return lines.length ? lines.join("; ") : "unknown error";
}

function errorLines(e: unknown): string[] {
  const msg = e instanceof Error ? e.message : String(e);
  // "/onnxruntime_src/.../reshape_helper.h:91 onnxruntime::ReshapeHelper::ReshapeHelper(const ...&, bool) " -> ""
  return msg.split(/\r?\n/).map((l) => l.replace(/\S*onnxruntime_src\/\S+:\d+\s+(?:[\w:~<>]+\([^()]*\)\s*(?:const\s+)?)?/g, "").trim()).filter((l) => l.length > 0);
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
 * onnxruntime's graph optimizations: "all" for running a model (eval, calibration), "disabled" for
 * proving one: the proof runs the models as written, not onnxruntime's rewrite of them.
 */
export type GraphOptimization = "disabled" | "all";

/**
 * An onnxruntime session for `model`; the caller releases it. Provider "cuda" runs every node on
 * CUDA or fails (UsageError); onnxruntime's complaints about the model become one-line ModelErrors.
 */
export async function createSession(model: Model, provider: Provider = "cpu", role = "", file?: string, level: GraphOptimization = "all"): Promise<ort.InferenceSession> {
  await requireProvider(provider);
  const options: ort.InferenceSession.SessionOptions =
    provider === "cuda" ? { ...strictCudaOptions(), graphOptimizationLevel: level } : { executionProviders: ["cpu"], graphOptimizationLevel: level, logSeverityLevel: 4 };
  // A model over protobuf's 2 GiB cannot be handed over as bytes: onnxruntime loads it from a file
  // with external data.
  const weights = [...model.graph.initializers.values()].reduce((n, t) => n + t.byteLength, 0);
  try {
    if (file) return await ort.InferenceSession.create(file, options);
    if (weights > LARGE_MODEL_BYTES) return await withModelFile(model, (f) => ort.InferenceSession.create(f, options));
    return await ort.InferenceSession.create(modelToBytes(model), options);
  } catch (e) {
    const line = errorText(e);
    if (provider === "cuda" && /fallback to CPU EP has been explicitly disabled/i.test(line))
      throw new UsageError(`${modelLabel(model, role)}: onnxruntime would run some nodes on CPU (no CUDA kernel, or a shape computation it keeps on CPU) and verify refuses CPU fallback with provider cuda (use provider cpu): ${line}`);
    throw new ModelError(`${modelLabel(model, role)}: onnxruntime cannot load it: ${line}`);
  }
}

/** Above this, sessions load from a temporary file with external data instead of bytes. */
const LARGE_MODEL_BYTES = 1.5 * 2 ** 30;

async function runSession(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, model: Model, role: string, weights?: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  try {
    return (await session.run(weights ? { ...feeds, ...weights } : feeds)) as Record<string, ort.Tensor>;
  } catch (e) {
    const shapes = Object.entries(feeds).map(([k, t]) => `${k}=${t.dims.join("x")}`).join(" ");
    throw new ModelError(`${modelLabel(model, role)}: onnxruntime failed to run it${shapes ? ` at ${shapes}` : ""}: ${errorText(e)}`);
  }
}

/**
 * `model` loaded once with its perturbable weights lifted to graph inputs (noise.ts): runs feed the
 * weights as written (the literal runs) or moved by one ulp (noise samples), without a second
 * session, a copy of the model or its serialized bytes. Optimizations disabled: run as written.
 */
class LiftedSession {
  private readonly weights: WeightFeeds;
  /** The weights fed with every run: onnxruntime tensors over the perturbed buffers, else (undefined) the values as written. */
  private tensors: Record<string, ort.Tensor> | undefined;

  private constructor(readonly session: ort.InferenceSession, private readonly model: Model, private readonly role: string, weights: readonly Tensor[], readonly asWritten?: string) {
    this.weights = new WeightFeeds(weights);
  }

  static async create(model: Model, provider: Provider, role: string): Promise<LiftedSession> {
    const weights = perturbableWeights(model);
    try {
      return new LiftedSession(await createSession(liftedModel(model, weights), provider, role, undefined, "disabled"), model, role, weights);
    } catch (e) {
      // onnxruntime refusing a weight as an input where it takes it as an initializer: the model as
      // written is loaded (its own error is the one reported when that fails too), nothing is lifted,
      // and the noise samples move the inputs only (asWritten says why, for the report's notes).
      if (!(e instanceof ModelError) || weights.length === 0) throw e;
      const session = await createSession(model, provider, role, undefined, "disabled");
      return new LiftedSession(session, model, role, [], e.message);
    }
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** Feed the weights each moved by one ulp (seeded) from now on. */
  usePerturbed(seed: number): void {
    this.tensors = undefined; // the values as written can go (a weight read from the file is a copy) before the buffers are made
    this.tensors = tensorsOf(this.weights.perturbed(seed));
  }

  /** The weights to feed: read as written at the first run when no sample is set. */
  private fed(): Record<string, ort.Tensor> {
    return (this.tensors ??= tensorsOf(this.weights.original()));
  }

  /** Run on `inputs` (the model's real inputs), a ModelError naming the model when onnxruntime fails. */
  run(inputs: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    return runSession(this.session, inputs, this.model, this.role, this.fed());
  }

  /** Run on `inputs`, onnxruntime's exception as it is. */
  async tryRun(inputs: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    return (await this.session.run({ ...inputs, ...this.fed() })) as Record<string, ort.Tensor>;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

function tensorsOf(feeds: readonly WeightFeed[]): Record<string, ort.Tensor> {
  return Object.fromEntries(feeds.map((f) => [f.name, new ort.Tensor(f.type as "float32", f.data as Float32Array, f.dims)]));
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

/** Default relative floor for an output of onnxruntime type `ortType` computed at its own precision. */
export function defaultTolerance(ortType: string): number {
  switch (ortType) {
    case "float32": return floorTolerance(DataType.FLOAT);
    case "float64": return floorTolerance(DataType.DOUBLE);
    case "float16": return floorTolerance(DataType.FLOAT16);
    case "bfloat16": return floorTolerance(DataType.BFLOAT16);
    default: return 0;
  }
}

const ORT_DTYPE: Record<string, number> = { float32: DataType.FLOAT, float64: DataType.DOUBLE, float16: DataType.FLOAT16, bfloat16: DataType.BFLOAT16 };

/** Seeds of input set k are offset by k times this (run r of every set has pattern r % 3). */
export const SET_SEED = 7919;

function checkSameInputs(reference: Model, candidate: Model): void {
  const ref = inputSpecs(reference);
  const cand = new Map(inputSpecs(candidate).map((s) => [s.name, s]));
  const refNames = ref.map((s) => s.name);
  const missing = refNames.filter((n) => !cand.has(n));
  const extra = [...cand.keys()].filter((n) => !refNames.includes(n));
  const who = candidate.path ? `${candidate.path}: its` : "candidate model's";
  const than = reference.path ? ` (${reference.path})` : "";
  if (missing.length || extra.length)
    throw new ModelError(
      `${who} inputs differ from the reference's${than}` +
        (missing.length ? `: missing ${missing.map((n) => `'${n}'`).join(", ")}` : "") +
        (extra.length ? `${missing.length ? ";" : ":"} extra ${extra.map((n) => `'${n}'`).join(", ")}` : ""),
    );
  for (const r of ref) {
    const c = cand.get(r.name)!;
    if (c.elemType !== r.elemType)
      throw new ModelError(`${who} input '${r.name}' is ${dtypeName(c.elemType)}, the reference's${than} is ${dtypeName(r.elemType)}`);
  }
}

function userCriterion(options: VerifyOptions): UserCriterion | undefined {
  for (const key of ["tolerance", "atol", "rtol"] as const) {
    const v = options[key];
    if (v !== undefined && !(v >= 0 && Number.isFinite(v))) throw new UsageError(`${key} must be a non-negative number, got ${v}`);
  }
  if (options.tolerance === undefined && options.atol === undefined && options.rtol === undefined) return undefined;
  return { atol: options.atol ?? 0, rtol: options.rtol ?? 0, tolerance: options.tolerance ?? 0 };
}

/** Checks given shapes and data against the model before any session is made. */
function checkGiven(specs: InputSpec[], options: InputOptions): void {
  checkNames(specs, Object.keys(options.shapes ?? {}), "shapes");
  checkNames(specs, Object.keys(options.feeds ?? {}), "feeds", options.feeds);
  for (const spec of specs) {
    const feed = options.feeds?.[spec.name];
    const shape = options.shapes?.[spec.name];
    if (feed) {
      if (shape && fmtDims(shape) !== fmtDims(feed.dims))
        throw new UsageError(`input '${spec.name}': shape ${fmtDims(shape)} conflicts with the given data's shape ${fmtDims(feed.dims)}`);
      feedTensor(spec, feed);
    } else if (shape) {
      checkAgainstDeclared(spec, shape, "shape");
      // A zero-size input compares no element: it would be reported as proven having proven nothing.
      if (shape.some((d) => d === 0)) throw new UsageError(`shape ${fmtDims(shape)} for input '${spec.name}' has no elements: a proof needs every dim ≥ 1`);
      const n = product(shape);
      if (n > MAX_GENERATED_ELEMENTS)
        throw new UsageError(`shape ${fmtDims(shape)} for input '${spec.name}' has ${n.toExponential(2)} elements: verify generates at most ${MAX_GENERATED_ELEMENTS.toExponential(2)} values per input (give a smaller shape)`);
    }
    else if (!spec.declared) throw new UsageError(`input '${spec.name}' has no declared shape in the model: give its shape explicitly`);
  }
}

/** One output on one input set, as compared. */
interface OutputRun {
  stats?: RunStats;
  /** Shape, type or presence differs. */
  mismatch?: string;
  shape: number[];
}

interface InputSetSpec {
  index: number;
  shapes: Record<string, number[]>;
  /** Pattern of this run (run r of a set uses pattern r % 3). */
  run: number;
  /** A packed set: its batch of `images` images carries the patterns, image b pattern b % 3 (runReference). */
  images: number;
}

/** How runReference runs the reference: `run` fails with a ModelError, `tryRun` with onnxruntime's own error. */
interface Runner {
  run(inputs: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
  tryRun(inputs: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
}

function plainRunner(session: ort.InferenceSession, model: Model, role: string): Runner {
  return {
    run: (inputs) => runSession(session, inputs, model, role),
    tryRun: async (inputs) => (await session.run(inputs)) as Record<string, ort.Tensor>,
  };
}

/** Generated inputs are kept for reuse (every set is run 5 times) up to this many bytes in all; larger ones are made again. */
const INPUT_CACHE_BYTES = 256 * 2 ** 20;

/**
 * The inputs of a packed set: `images` images along axis 0 of every input, image b made as run b
 * (pattern b % 3, its own seeded data) at batch 1, so that one run carries every pattern.
 */
function packedInputs(model: Model, images: number, options: InputOptions): Record<string, ort.Tensor> {
  const single: ShapeSet = Object.fromEntries(Object.entries(options.shapes ?? {}).map(([k, v]) => [k, [1, ...v.slice(1)]]));
  const parts = Array.from({ length: images }, (_, b) => makeInputs(model, b, { ...options, shapes: single }));
  const result: Record<string, ort.Tensor> = {};
  for (const name of Object.keys(parts[0]!)) {
    const first = parts[0]![name]!;
    const each = first.size;
    const data = new (first.data.constructor as new (n: number) => FeedData)(each * images);
    parts.forEach((p, b) => (data as Float32Array).set(p[name]!.data as Float32Array, b * each));
    result[name] = new ort.Tensor(first.type as "float32", data as Float32Array, [images, ...first.dims.slice(1)]);
  }
  return result;
}

/**
 * The input sets of a proof and the reference's outputs on them, from the literal reference
 * session: shapes planned (shape-plan.ts), then every pattern at every shape set; with `pack`, the
 * second shape set as one packed set where it can be (imagesOf).
 */
async function runReference(reference: Model, candidate: Model, session: Runner, options: VerifyOptions, runs: number, pack = false) {
  const seed = options.seed ?? 1;
  const specs = inputSpecs(reference);
  const candSpecs = new Map(inputSpecs(candidate).map((s) => [s.name, s]));
  const fed = new Set(Object.keys(options.feeds ?? {}));
  const given: ShapeSet = { ...(options.shapes ?? {}) };
  for (const [name, feed] of Object.entries(options.feeds ?? {})) given[name] = [...feed.dims];
  const cache = new Map<string, Record<string, ort.Tensor>>();
  let cachedBytes = 0;
  // The second shape set is packed when its batch can carry the patterns: every input has a batch
  // axis (dim 0 dynamic in both models) at the same size B, 2 ≤ runs ≤ B, and no input is given as data.
  const batchAxis = specs.length > 0 && specs.every((s) => s.declared && s.declared.length > 0 && typeof s.declared[0] === "string" && typeof candSpecs.get(s.name)?.declared?.[0] !== "number");
  const imagesOf = (set: number, shapes: ShapeSet): number => {
    if (!pack || set !== 1 || !batchAxis || fed.size > 0 || runs < 2) return 1;
    const batch = shapes[specs[0]!.name]?.[0] ?? 0;
    return batch >= runs && specs.every((s) => shapes[s.name]?.[0] === batch) ? batch : 1;
  };
  const inputsOf = (set: number, shapes: ShapeSet, run: number) => {
    const images = imagesOf(set, shapes);
    const key = `${set} ${images > 1 ? "packed" : run} ${JSON.stringify(shapes)}`;
    const hit = cache.get(key);
    if (hit) return hit;
    const inputs = images > 1
      ? packedInputs(reference, images, { seed: seed + SET_SEED * set, shapes })
      : makeInputs(reference, run, { seed: seed + SET_SEED * set, shapes, feeds: options.feeds });
    const bytes = Object.values(inputs).reduce((n, t) => n + (t.data as ArrayBufferView).byteLength, 0);
    if (cachedBytes + bytes <= INPUT_CACHE_BYTES) {
      cache.set(key, inputs);
      cachedBytes += bytes;
    }
    return inputs;
  };
  const trials = new Map<string, Record<string, ort.Tensor>>();
  const plan = await planShapes(
    specs.map((s) => ({ name: s.name, reference: s.declared, candidate: candSpecs.get(s.name)?.declared })),
    given, fed,
    async (shapes, set) => {
      let out: Record<string, ort.Tensor>;
      try {
        out = await session.tryRun(inputsOf(set, shapes, 0));
      } catch (e) {
        return errorText(e);
      }
      // A size at which an output is empty runs, but proves nothing about that output.
      const empty = Object.entries(out).find(([, t]) => t.size === 0);
      if (empty) return `output '${empty[0]}' is empty at ${describeShapes(shapes)}`;
      trials.set(`${set} ${JSON.stringify(shapes)}`, out);
      return undefined;
    },
  );
  if (plan.sets.length === 0) throw new ModelError(`${modelLabel(reference, "reference")}: ${plan.notes[0]}`);
  // Data given for every input (or no inputs at all): each run would repeat the same inputs.
  const allFed = specs.every((s) => fed.has(s.name));
  const sets: InputSetSpec[] = [];
  const outputs: Record<string, ort.Tensor>[] = [];
  for (let set = 0; set < plan.sets.length; set++) {
    const images = imagesOf(set, plan.sets[set]!);
    const perSet = allFed || images > 1 ? 1 : runs;
    for (let run = 0; run < perSet; run++) {
      const shapes = plan.sets[set]!;
      sets.push({ index: set, shapes, run, images });
      const cached = run === 0 ? trials.get(`${set} ${JSON.stringify(shapes)}`) : undefined;
      const out = cached ?? (await session.run(inputsOf(set, shapes, run)));
      outputs.push(out);
      options.record?.push({ inputs: inputsOf(set, shapes, run), outputs: out });
    }
  }
  return { plan, sets, outputs, inputsOf: (s: InputSetSpec) => inputsOf(s.index, s.shapes, s.run) };
}

const FLOAT_TYPES = new Set(["float16", "bfloat16", "float32", "float64"]);

/** `anyFloat`: a float reference may be compared with a float candidate of another type (stored outputs, e.g. numpy's float64). */
function compareOutput(name: string, ref: ort.Tensor, cand: ort.Tensor | undefined, user: UserCriterion | undefined, anyFloat = false, images = 1): OutputRun {
  const shape = ref.dims.map(Number);
  if (!cand) return { shape, mismatch: `candidate has no output named '${name}'` };
  if (ref.dims.length !== cand.dims.length || ref.dims.some((d, i) => d !== cand.dims[i]))
    return { shape, mismatch: `shape ${fmtDims(ref.dims)} in the reference, ${fmtDims(cand.dims)} in the candidate` };
  if (ref.type !== cand.type && !(anyFloat && FLOAT_TYPES.has(ref.type) && FLOAT_TYPES.has(cand.type))) return { shape, mismatch: `element type ${ref.type} in the reference, ${cand.type} in the candidate` };
  const r = tensorToFloat64(ref);
  const c = tensorToFloat64(cand);
  if (!r || !c) {
    const rs = ref.data as string[], cs = cand.data as string[];
    const differ = rs.findIndex((v, i) => v !== cs[i]);
    return differ < 0 ? { shape, stats: compareValues(new Float64Array(0), new Float64Array(0)) } : { shape, mismatch: `string element ${differ} differs` };
  }
  return { shape, stats: compareValues(r, c, user, sliceLayout(shape, images)) };
}

/** Spread of a re-rounded evaluation of the reference, per run and output, per slice (Infinity where no bound). */
type Spread = Map<number, Map<string, Float64Array>>;

/** Seeds of the noise samples (noise.ts): up to three re-rounded evaluations of the reference. */
const NOISE_SAMPLES = [1, 2, 3];

/**
 * One noise sample (noise.ts) on the input sets `sets`, in the reference's session: its lifted
 * weights and float inputs moved by one ulp (seeded by `sample`); the spread from the literal
 * outputs per output and channel. Undefined when onnxruntime cannot run it (the sample is left out).
 */
async function noiseSample(session: LiftedSession, options: VerifyOptions, ref: Awaited<ReturnType<typeof runReference>>, outputNames: readonly string[], sample: number, sets: readonly number[]): Promise<Spread | undefined> {
  const seed = options.seed ?? 1;
  session.usePerturbed(seed * 104729 + sample);
  const perturb = seed * 7 + sample * 65537;
  const spread: Spread = new Map();
  for (const k of sets) {
    const moved: Record<string, ort.Tensor> = {};
    let i = 0;
    for (const [name, t] of Object.entries(ref.inputsOf(ref.sets[k]!))) {
      const data = ORT_DTYPE[t.type] ? perturbInput(t.type, t.data as FloatFeedData, perturb + 31 * k + 1009 * i++) : undefined;
      moved[name] = data ? new ort.Tensor(t.type as "float32", data as Float32Array, t.dims) : t;
    }
    let out: Record<string, ort.Tensor>;
    try {
      out = await session.tryRun(moved);
    } catch {
      return undefined;
    }
    const perOutput = new Map<string, Float64Array>();
    for (const name of outputNames) {
      const a = ref.outputs[k]![name], b = out[name];
      const fa = a && tensorToFloat64(a), fb = b && tensorToFloat64(b);
      const layout = sliceLayout(a ? a.dims.map(Number) : [], ref.sets[k]!.images);
      perOutput.set(name, fa && fb && fa.length === fb.length ? sliceSpread(fa, fb, layout) : new Float64Array(layout.count).fill(Infinity));
    }
    spread.set(k, perOutput);
  }
  return spread;
}

/**
 * Each output's verdict from its per-set comparisons (README "Guarantees"): the user's criterion;
 * without a reference model (`samples` undefined: stored outputs) the floor of its precision;
 * otherwise the calibrated allowance, per slice c along axis 1 (channels) on each input set k:
 *   |Δ|_c ≤ max(8·N_c, 8·(N/S)·max(S_c, S/10), FLOOR_ULPS·ulp·S_c)
 * N_c the reference's measured spread in that slice, N and S the largest spread and magnitude
 * of the whole output, S_c the slice's largest magnitude, ulp that of the output's own type. On a
 * packed set each image (slices along axes 0 and 1) is judged as its own input set: N, S and the
 * conclusiveness test are the image's, and the floor's scale too. A slice whose measured spread is
 * exactly 0 on a set takes, as N_c there, the largest N_c/S_c of that channel or N/S of the output
 * measured on any set (or image), times its S_c on this one; a slice with a measured spread keeps its own.
 */
function judge(outputNames: readonly string[], compared: OutputRun[][], floors: number[], ulpFloors: number[], precisions: Map<string, number | undefined>, user: UserCriterion | undefined, samples: Spread[] | undefined, sets: { shapes: Record<string, number[]> }[]): OutputComparison[] {
  return outputNames.map((name, j) => {
    const calibrated = !user && samples !== undefined;
    const floor = user ? user.tolerance : calibrated ? ulpFloors[j]! : floors[j]!;
    const limit = Math.max(CONCLUSIVE_LIMIT, 10 * floors[j]!); // float16/bfloat16: 10%
    const result: OutputComparison = {
      name, shapes: [], maxAbs: 0, maxRel: 0, scale: 0, ok: true, tolerance: floor, allowedRel: floor,
      nonFiniteMismatches: 0, referenceNonFinite: 0, worstRun: 0,
    };
    const precision = precisions.get(name);
    if (precision !== undefined) result.precision = dtypeName(precision);
    let conclusive = 0, inconclusive = 0, comparedElements = 0, noiseRel = 0, leastInconclusiveNoise = Infinity;
    // The reference's spread per slice on set k: the largest over its re-rounded evaluations (undefined: none measured).
    const noiseOf = (k: number, count: number): Float64Array | undefined => {
      let noise: Float64Array | undefined;
      for (const sample of samples ?? []) {
        const v = sample.get(k)?.get(name);
        if (!v || v.length !== count) continue;
        noise ??= new Float64Array(count);
        for (let c = 0; c < count; c++) noise[c] = Math.max(noise[c]!, v[c]!);
      }
      return noise;
    };
    // What a channel whose spread measures exactly 0 on some set borrows there (judge's doc): per channel
    // (by channel count), the largest of its own N_c/S_c and of the output's N/S measured on any input set
    // (or image) with a spread.
    const borrowed = new Map<number, Float64Array>();
    let outputRel = 0;
    if (!user)
      compared.forEach((row, k) => {
        const st = row[j]!.stats;
        if (!st) return;
        const noise = noiseOf(k, st.sliceScale.length);
        if (!noise) return;
        const per = st.sliceScale.length / st.images;
        const rel = borrowed.get(per) ?? new Float64Array(per);
        borrowed.set(per, rel);
        const imageScale = perImage(st.sliceScale, st.images), imageNoise = perImage(noise, st.images);
        imageScale.forEach((scale, b) => {
          if (imageNoise[b]! > 0 && Number.isFinite(imageNoise[b]! / scale)) outputRel = Math.max(outputRel, imageNoise[b]! / scale);
        });
        for (let c = 0; c < noise.length; c++) {
          const r = noise[c]! / st.sliceScale[c]!;
          if (noise[c]! > 0 && Number.isFinite(r)) rel[c % per] = Math.max(rel[c % per]!, r);
        }
      });
    for (const rel of borrowed.values()) for (let c = 0; c < rel.length; c++) rel[c] = Math.max(rel[c]!, outputRel);
    compared.forEach((row, k) => {
      const o = row[j]!;
      if (!result.shapes.some((s) => fmtDims(s) === fmtDims(o.shape))) result.shapes.push(o.shape);
      if (o.mismatch) {
        result.shapeMismatch ??= `${o.mismatch} (input set ${k}: ${describeShapes(sets[k]!.shapes)})`;
        result.ok = false;
        return;
      }
      const st = o.stats!;
      comparedElements += st.compared;
      result.scale = Math.max(result.scale, st.scale);
      result.maxAbs = Math.max(result.maxAbs, st.maxAbs);
      // A packed set's images are judged each as its own input set: its own scale, noise and allowances.
      const images = st.images;
      const imageScale = images > 1 ? perImage(st.sliceScale, images) : [st.scale];
      const imageMaxAbs = images > 1 ? perImage(st.sliceMaxAbs, images) : [st.maxAbs];
      const where = (b: number) => (images > 1 ? `input set ${k} image ${b}` : `input set ${k}`);
      for (let b = 0; b < images; b++) {
        const rel = imageMaxAbs[b]! === 0 ? 0 : imageScale[b]! > 0 ? imageMaxAbs[b]! / imageScale[b]! : Infinity;
        if (rel > result.maxRel) [result.maxRel, result.worstRun] = [rel, k];
      }
      result.referenceNonFinite += st.referenceNonFinite;
      if (st.candidateNonFinite) {
        result.nonFiniteMismatches += st.candidateNonFinite;
        result.nonFinite ??= `input set ${k}, ${st.firstNonFinite}`;
      }
      if (user) {
        if (st.exceeding) {
          result.exceeding = (result.exceeding ?? 0) + st.exceeding;
          result.reason ??= `${st.exceeding} element(s) outside atol ${user.atol} + rtol ${user.rtol}·|ref| + tolerance ${user.tolerance}·max|ref|${images > 1 ? " of its image" : ""} (input set ${k}, first ${st.firstExceeding})`;
        }
        conclusive++;
        return;
      }
      const count = st.sliceScale.length;
      const measuredNoise = noiseOf(k, count);
      const measured = measuredNoise !== undefined;
      const noise = measuredNoise ?? new Float64Array(count);
      const per = count / images; // slices (channels) per image
      const borrow = borrowed.get(per);
      for (let b = 0; b < images; b++) {
        const scale = imageScale[b]!, maxAbs = imageMaxAbs[b]!;
        if (!measured) {
          // No model to measure (stored outputs), or no re-rounded evaluation could run: the floor alone.
          const allowed = floors[j]! * scale;
          conclusive++;
          if (!(maxAbs <= allowed)) result.reason ??= `max abs ${maxAbs.toExponential(2)} > allowed ${allowed.toExponential(2)} (${where(b)})`;
          continue;
        }
        let N = 0;
        for (let c = b * per; c < (b + 1) * per; c++) N = Math.max(N, noise[c]!);
        const relNoise = scale > 0 ? N / scale : N > 0 ? Infinity : 0;
        noiseRel = Math.max(noiseRel, relNoise);
        if (NOISE_FACTOR * relNoise > limit) {
          inconclusive++;
          leastInconclusiveNoise = Math.min(leastInconclusiveNoise, relNoise);
          continue;
        }
        conclusive++;
        for (let c = b * per; c < (b + 1) * per; c++) {
          const sc = st.sliceScale[c]!;
          // The channel's own scale, down to 1/LOCAL_RANGE of the output's: a channel that a Relu, a gate or a
          // cancellation made tiny still carries the rounding of the larger values it was computed from.
          // A spread of exactly 0 is the sample failing to move this channel's rounding (a value rounded to the
          // grid of a larger one it was computed beside: (k − x) + x at |x| ≫ k is k on the grid of x, whatever
          // ulp x and k move by), not its absence: the channel takes the largest relative spread measured on
          // the other sets (its own, or the output's), at its magnitude here.
          const Nc = noise[c]! === 0 && borrow ? borrow[c - b * per]! * sc : noise[c]!;
          const allowed = Math.max(NOISE_FACTOR * Nc, NOISE_FACTOR * relNoise * Math.max(sc, scale / LOCAL_RANGE), floor * sc);
          if (scale > 0) result.allowedRel = Math.max(result.allowedRel, allowed / scale);
          const d = st.sliceMaxAbs[c]!;
          if (!(d <= allowed))
            result.reason ??= `max abs ${d.toExponential(2)} > allowed ${allowed.toExponential(2)}${per > 1 ? ` in channel ${c - b * per} (its max |ref| ${sc.toExponential(2)})` : ""} (${where(b)}; the reference's own noise there ${noise[c]!.toExponential(2)}${Nc !== noise[c]! ? `, ${Nc.toExponential(2)} as measured on the other sets` : ""})`;
        }
      }
    });
    if (calibrated) result.noiseRel = noiseRel;
    if (inconclusive) result.inconclusiveSets = inconclusive;
    if (result.shapeMismatch) result.reason = result.shapeMismatch;
    else if (result.nonFiniteMismatches) result.reason = `${result.nonFiniteMismatches} NaN/Inf value(s) where the reference is finite (${result.nonFinite})`;
    else if (comparedElements === 0 && result.referenceNonFinite > 0) {
      // A property of the reference, not of the candidate: nothing can be proven, no rewrite is to blame.
      result.inconclusive = true;
      result.reason = "the reference output is NaN/Inf everywhere on every input set: nothing to compare";
    }
    else if (!user && conclusive === 0) {
      result.inconclusive = true;
      const share = Number.isFinite(leastInconclusiveNoise) ? `${(leastInconclusiveNoise * 100).toPrecision(2)}% of this output` : "not zero where this output is all zeros";
      result.reason = `cannot be proven on these inputs: the reference's own ${dtypeName(precision ?? DataType.FLOAT)} rounding noise is ${share} on every input set (its ${NOISE_FACTOR}x allowance must stay under ${(limit * 100).toPrecision(2)}%), so a wrong value could hide in it`;
    }
    result.ok = result.reason === undefined;
    return result;
  });
}

/** Channels are judged at their own scale down to this fraction of the output's largest magnitude. */
const LOCAL_RANGE = 10;

/** Each output's default floor: its lowest compute precision's, else its own type's. */
function floorsOf(outputNames: readonly string[], precisions: Map<string, number | undefined>, types: (name: string) => string | undefined): number[] {
  return outputNames.map((name) => {
    const p = precisions.get(name);
    return p !== undefined ? floorTolerance(p) : defaultTolerance(types(name) ?? "");
  });
}

function report(options: { referenceFile?: string; candidateFile?: string; provider?: Provider }, reference: string | null, candidate: string | null, user: UserCriterion | undefined, criterion: VerifyReport["criterion"], outputs: OutputComparison[], extra: { calibrated: boolean; runs: number; inputSets: number; shapeSets: Record<string, number[]>[]; notes: string[] }, start: number): VerifyReport {
  return {
    schema: VERIFY_SCHEMA,
    ok: outputs.every((o) => o.ok),
    reference,
    candidate,
    provider: options.provider ?? "cpu",
    criterion: user ? "user" : criterion,
    tolerance: user ? user.tolerance : outputs.reduce((m, o) => Math.max(m, o.tolerance), 0),
    ...(user ? { atol: user.atol, rtol: user.rtol } : {}),
    ...extra,
    inputShapes: extra.shapeSets[0] ?? {},
    maxAbs: outputs.reduce((m, o) => Math.max(m, o.maxAbs), 0),
    maxRel: outputs.reduce((m, o) => Math.max(m, o.maxRel), 0),
    outputs,
    ...(outputs.some((o) => !o.ok) && outputs.every((o) => o.ok || o.inconclusive) ? { inconclusive: true } : {}),
    timeMs: performance.now() - start,
  };
}

/** Run `reference` and `candidate` on the same inputs and compare every reference output. */
export async function verifyModels(reference: Model, candidate: Model, options: VerifyOptions = {}): Promise<VerifyReport> {
  const start = performance.now();
  if (options.referenceFile) reference = referenceFromFile(options.referenceFile) ?? reference;
  const runs = checkRuns(options.runs);
  const user = userCriterion(options);
  const provider = options.provider ?? "cpu";
  checkSameInputs(reference, candidate);
  checkGiven(inputSpecs(reference), options);
  await requireProvider(provider);

  // One session at a time (the reference's outputs are kept, not its weights): peak memory holds
  // one model's weights beside the models themselves, not two. Both run as written (no onnxruntime
  // graph optimizations); the reference's session also runs the noise samples (noise.ts): its
  // arithmetic weights are inputs, fed as written or moved by one ulp.
  // Default criterion: NOISE_FACTOR times the reference's own rounding spread, measured on every
  // input set, per channel: the first sample with the literal runs, the others after the candidate
  // ran, on the input sets where some output does not pass yet (a sample only raises allowances).
  let ref: Awaited<ReturnType<typeof runReference>>;
  let outputNames: readonly string[];
  const samples: Spread[] = [];
  const sample = async (session: LiftedSession, seed: number, sets: readonly number[]) => {
    const spread = await noiseSample(session, options, ref, outputNames, seed, sets);
    if (spread) samples.push(spread);
  };
  const refSession = await LiftedSession.create(reference, provider, "reference");
  try {
    outputNames = refSession.outputNames;
    // --save-outputs records sets as today (stored sets are judged whole, at the floor): no packing then.
    ref = await runReference(reference, candidate, refSession, options, runs, !options.record);
    if (!user) await sample(refSession, NOISE_SAMPLES[0]!, ref.sets.map((_, k) => k));
  } finally {
    await refSession.release();
  }
  const notes = [...ref.plan.notes];
  if (refSession.asWritten && !user)
    notes.push(`the noise samples moved the reference's inputs only, not its weights: onnxruntime cannot load it with its arithmetic weights as inputs (${refSession.asWritten})`);
  const compared: OutputRun[][] = []; // [input set][output]
  try {
    const candSession = await LiftedSession.create(candidate, provider, "candidate");
    try {
      for (let k = 0; k < ref.sets.length; k++) {
        const candOut = await candSession.run(ref.inputsOf(ref.sets[k]!));
        compared.push(outputNames.map((name) => compareOutput(name, ref.outputs[k]![name]!, candOut[name], user, false, ref.sets[k]!.images)));
      }
    } finally {
      await candSession.release();
    }
  } catch (e) {
    // The reference loads and runs on these inputs, the candidate does not: the candidate is wrong
    // (a broken rewrite), which is a failed proof, not bad input.
    if (!(e instanceof ModelError)) throw e;
    const reason = `onnxruntime cannot load or run the candidate: ${e.message}`;
    const outputs: OutputComparison[] = outputNames.map((name) => ({
      name, shapes: [], maxAbs: Infinity, maxRel: Infinity, scale: 0, ok: false, tolerance: 0, allowedRel: 0, nonFiniteMismatches: 0, referenceNonFinite: 0, reason,
    }));
    const r = report(options, options.referenceFile ?? reference.path ?? null, options.candidateFile ?? candidate.path ?? null, user, "calibrated", outputs, {
      calibrated: false, runs, inputSets: ref.sets.length, shapeSets: ref.plan.sets, notes,
    }, start);
    return { ...r, candidateError: e.message };
  }

  const precisions = outputPrecisions(reference);
  const floors = floorsOf(outputNames, precisions, (name) => ref.outputs[0]![name]?.type);
  const ulpFloors = outputNames.map((name) => FLOOR_ULPS * 2 * unitRoundoff(ORT_DTYPE[ref.outputs[0]![name]?.type ?? ""] ?? 0));
  if (!user) {
    // Where every output passes on a set, more samples could only raise its allowances: that set is
    // decided. The others (failing, inconclusive, or not yet sampled) are sampled again.
    const passes = (k: number) =>
      judge(outputNames, [compared[k]!], floors, ulpFloors, precisions, undefined, samples.map((s) => new Map(s.has(k) ? [[0, s.get(k)!]] : [])), [ref.sets[k]!]).every((o) => o.ok);
    let again: LiftedSession | undefined;
    try {
      for (const seed of NOISE_SAMPLES.slice(1)) {
        const open = ref.sets.map((_, k) => k).filter((k) => !passes(k));
        if (open.length === 0) break;
        again ??= await LiftedSession.create(reference, provider, "reference");
        await sample(again, seed, open);
      }
    } finally {
      await again?.release();
    }
  }
  ref.outputs.length = 0;
  const outputs = judge(outputNames, compared, floors, ulpFloors, precisions, user, user ? undefined : samples, ref.sets);
  return report(options, options.referenceFile ?? reference.path ?? null, options.candidateFile ?? candidate.path ?? null, user, "calibrated", outputs, {
    calibrated: samples.length > 0, runs, inputSets: ref.sets.length, shapeSets: ref.plan.sets, notes,
  }, start);
}

function checkRuns(runs = 3): number {
  if (!Number.isInteger(runs) || runs < 1) throw new UsageError(`runs must be a positive integer, got ${runs}`);
  return runs;
}

/** Largest input verify generates values for (2^28 elements: 1 GiB of float32, 2 GiB while generated in float64). */
const MAX_GENERATED_ELEMENTS = 2 ** 28;

/** One input set's inputs and a model's outputs on them (what --save-outputs writes). */
export interface RecordedSet {
  inputs: Record<string, ort.Tensor>;
  outputs: Record<string, ort.Tensor>;
}

/**
 * Run `model` (as written) on the input sets a proof would use (shapes planned as verifyModels
 * does), and return every set's inputs and outputs.
 */
export async function runInputSets(model: Model, options: Omit<VerifyOptions, "candidateFile" | "tolerance" | "atol" | "rtol"> = {}): Promise<{ sets: RecordedSet[]; shapeSets: Record<string, number[]>[]; notes: string[] }> {
  const runs = checkRuns(options.runs);
  checkGiven(inputSpecs(model), options);
  const session = await createSession(model, options.provider ?? "cpu", "", options.referenceFile, "disabled");
  try {
    const ref = await runReference(model, model, plainRunner(session, model, ""), options, runs);
    return { sets: ref.sets.map((s, k) => ({ inputs: ref.inputsOf(s), outputs: ref.outputs[k]! })), shapeSets: ref.plan.sets, notes: ref.plan.notes };
  } finally {
    await session.release();
  }
}

/** Reference data kept from an earlier run (loaded from .npz): inputs and outputs by name. */
export interface StoredReference {
  inputs: Record<string, Feed>;
  outputs: Record<string, Feed>;
}

/**
 * Compare `candidate` with stored reference outputs, each set run on its stored inputs. Without a
 * reference model the noise cannot be measured: the default criterion is the floor of each
 * output's precision (in the candidate) alone, and the report's criterion says "floor".
 */
export async function verifyAgainstOutputs(candidate: Model, stored: StoredReference[], options: Pick<VerifyOptions, "tolerance" | "atol" | "rtol" | "provider" | "candidateFile"> & { referenceFile?: string } = {}): Promise<VerifyReport> {
  const start = performance.now();
  const user = userCriterion(options);
  const provider = options.provider ?? "cpu";
  if (stored.length === 0) throw new UsageError(`${options.referenceFile ?? "stored outputs"}: no input sets`);
  const specs = inputSpecs(candidate);
  stored.forEach((set, k) => {
    const missing = specs.filter((s) => !set.inputs[s.name]).map((s) => `'${s.name}'`);
    if (missing.length) throw new UsageError(`${options.referenceFile ?? "stored outputs"}: input set ${k} has no data for input ${missing.join(", ")}`);
    if (Object.keys(set.outputs).length === 0) throw new UsageError(`${options.referenceFile ?? "stored outputs"}: input set ${k} has no outputs`);
    checkGiven(specs, { feeds: set.inputs });
  });
  await requireProvider(provider);
  const outputNames = Object.keys(stored[0]!.outputs);
  const compared: OutputRun[][] = [];
  const sets: { shapes: Record<string, number[]> }[] = [];
  const session = await createSession(candidate, provider, "candidate", options.candidateFile, "disabled");
  try {
    for (const set of stored) {
      const feeds: Record<string, ort.Tensor> = {};
      for (const spec of specs) feeds[spec.name] = feedTensor(spec, set.inputs[spec.name]!);
      sets.push({ shapes: Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, t.dims.map(Number)])) });
      const out = await runSession(session, feeds, candidate, "candidate");
      compared.push(outputNames.map((name) => {
        const f = set.outputs[name];
        if (!f) return { shape: [], mismatch: `the stored set has no output named '${name}'` };
        return compareOutput(name, new ort.Tensor(f.dtype as "float32", f.data as Float32Array, f.dims), out[name], user, true);
      }));
    }
  } finally {
    await session.release();
  }
  const precisions = outputPrecisions(candidate);
  const floors = floorsOf(outputNames, precisions, (name) => stored[0]!.outputs[name]?.dtype);
  const outputs = judge(outputNames, compared, floors, floors, precisions, user, undefined, sets);
  return report(options, options.referenceFile ?? null, options.candidateFile ?? candidate.path ?? null, user, "floor", outputs, {
    calibrated: false, runs: 1, inputSets: stored.length, shapeSets: sets.map((s) => s.shapes), notes: [],
  }, start);
}

function describeShapes(shapes: Record<string, number[]>): string {
  return Object.entries(shapes).map(([k, v]) => `${k}=${v.join("x")}`).join(" ");
}
