// What a rule sees: the graph through cheap derived views (producers, consumers, shapes,
// constants), the run's options, and fresh names for what it creates. Nothing here changes the
// graph: rules describe changes in a Replacement and the Rewriter applies them.
import { constantTensor, shapeValues } from "../ir/constants.js";
import type { Graph, Model, Node } from "../ir/graph.js";
import { inferShapes, ShapeInference, type ShapeInfo, type ShapeMap, type ShapeOptions } from "../ir/shapes.js";
import type { Tensor } from "../ir/tensor.js";

/** What one applied rewrite changed (the Rewriter reports it to its listeners). */
export interface Change {
  /** Nodes no longer in the graph (replaced, or collected as dead). */
  removed: Node[];
  /** Nodes added by the replacement. */
  added: Node[];
  /** Kept nodes whose inputs changed. */
  rewired: Node[];
  /** Tensors whose producer, value or recorded shape changed (initializers added or dropped included). */
  tensors: Set<string>;
}

/** The part of the Rewriter a context reads: names, the run's initializers, and change notices. */
export interface RewriterView {
  uniqueName(base: string): string;
  readonly created: ReadonlySet<string>;
  listen(listener: (change: Change) => void): void;
}

export interface RuleOptions {
  /**
   * Concrete input shapes (from --shape). Rules rely on them only with `fixShapes`; without it
   * they serve verification and statistics, and rules see the shapes the model declares.
   */
  shapes?: Record<string, number[]>;
  /**
   * Write `shapes` into the output's declared input shapes (--fix-shapes), so that rewrites may
   * depend on the dims they fix (explicit pads for auto_pad SAME at stride 2, spatial Slice ends,
   * Reshape targets): the output then accepts those shapes only, and says so.
   */
  fixShapes?: boolean;
  /** Skip compositions that increase multiply-accumulates (default: do them, as the authors' deploy code does). */
  noCostlier?: boolean;
  /** Largest factor by which a composition may raise multiply-accumulates (default 2). */
  maxMacGrowth?: number;
  /** Allow folds that need a private copy of an initializer shared with other nodes. */
  duplicateShared?: boolean;
  /** Refuse every fold that touches a shared initializer (the driver's fallback when sharing would grow the model). */
  strictSharing?: boolean;
  /**
   * TESTS ONLY: fold across borders as naive tools do (zero-padded intermediates, count_include_pad=0),
   * so tests can show that the folds this tool refuses would really change the outputs.
   */
  unsafeIgnoreBorderRule?: boolean;
}

/** A shape inference and the changes it has not caught up with yet (applied when next read). */
class LiveShapes {
  private readonly inference: ShapeInference;
  private readonly tensors = new Set<string>();
  private readonly nodes = new Set<Node>();
  /** Nodes inferred again after changes (for tests and benchmarks). */
  reinferred = 0;

  constructor(private readonly graph: Graph, private readonly options: ShapeOptions) {
    this.inference = new ShapeInference(graph, options);
  }

  changed(change: Change): void {
    for (const t of change.tensors) this.tensors.add(t);
    for (const n of [...change.added, ...change.rewired]) this.nodes.add(n);
  }

  get shapes(): ShapeMap {
    if (this.tensors.size > 0 || this.nodes.size > 0) {
      this.reinferred += this.inference.update(this.tensors, this.nodes);
      this.tensors.clear();
      this.nodes.clear();
      if (checkShapes()) checkAgainstFullInference(this.inference.shapes, inferShapes(this.graph, this.options));
    }
    return this.inference.shapes;
  }
}

/** REPARAM_ONNX_CHECK_SHAPES=1 (read without a Node import: this module also runs in a browser). */
const checkShapes = () => (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.REPARAM_ONNX_CHECK_SHAPES === "1";

/** Debug aid (REPARAM_ONNX_CHECK_SHAPES=1): the incremental facts must equal a full inference's. */
function checkAgainstFullInference(live: ShapeMap, full: ShapeMap): void {
  const show = (i: ShapeInfo | undefined) => JSON.stringify(i && { dims: i.dims, dtype: i.dtype, symbols: i.symbols });
  for (const name of new Set([...live.keys(), ...full.keys()]))
    if (show(live.get(name)) !== show(full.get(name))) throw new Error(`incremental shape inference differs at '${name}': ${show(live.get(name))} vs ${show(full.get(name))}`);
}

export class RuleContext {
  private cache: {
    producers?: Map<string, Node>;
    consumers?: Map<string, Node[]>;
    outputs?: Set<string>;
  } = {};
  /** Shape facts, kept up to date incrementally (LiveShapes): at --shape, as declared, at each cost probe size. */
  private readonly live = new Map<string, LiveShapes>();
  /** Per-graph-version results of whole-graph analyses (dropped at every change). */
  private memos = new Map<string, unknown>();
  private scratchMemos = new Map<string, unknown>();
  /** A rule read a layer whose weights other nodes share, allowed because every use is the same layer. */
  readSharedWeights = false;

  constructor(readonly model: Model, readonly options: RuleOptions, private readonly rewriter: RewriterView) {
    rewriter.listen((change) => this.changed(change));
  }

  get graph(): Graph {
    return this.model.graph;
  }

  opset(domain = ""): number {
    return this.model.opset(domain);
  }

  /** A name no node, tensor or initializer uses yet (reserved for this run). */
  uniqueName(base: string): string {
    return this.rewriter.uniqueName(base);
  }

  /** Initializers this run created (the model's own ones are never merged or rewritten in place). */
  get created(): ReadonlySet<string> {
    return this.rewriter.created;
  }

  producers(): Map<string, Node> {
    return (this.cache.producers ??= this.graph.producers());
  }

  consumers(tensor: string): Node[] {
    return (this.cache.consumers ??= this.graph.consumers()).get(tensor) ?? [];
  }

  isGraphOutput(tensor: string): boolean {
    return (this.cache.outputs ??= this.graph.outputNames()).has(tensor);
  }

  /**
   * The shapes every rule reads (the one door: docs/rules.md §4). A rewrite may depend on a dim's
   * value only if the written model declares that value; so --shape values count only when
   * --fix-shapes writes them into the model (src/app/optimize.ts), and otherwise a dim the model
   * leaves dynamic stays unknown here and a rule that needs it refuses.
   */
  shapes(): ShapeMap {
    if (!this.options.fixShapes || !this.options.shapes) return this.declaredShapes();
    return this.liveShapes("fixed", { overrides: this.options.shapes, constant: this.constantValues });
  }

  /**
   * The rules' shapes with every input dim still unknown taken as `size`: cost bounds compare
   * multiply-accumulates per output position with H and W dynamic (rules/policy.ts).
   */
  costShapes(size: number): ShapeMap {
    return this.liveShapes(`cost:${size}`, { overrides: this.options.fixShapes ? this.options.shapes : undefined, symbolicDim: size, constant: this.constantValues });
  }

  /** Shapes as the model declares them (--shape must not specialise a dynamic graph silently). */
  declaredShapes(): ShapeMap {
    return this.liveShapes("declared", { constant: this.constantValues });
  }

  private liveShapes(key: string, options: ShapeOptions): ShapeMap {
    let live = this.live.get(key);
    if (!live) this.live.set(key, (live = new LiveShapes(this.graph, options)));
    return live.shapes;
  }

  /** Nodes whose shapes were inferred again after changes (a full inference after each would be every node). */
  get reinferredNodes(): number {
    let n = 0;
    for (const live of this.live.values()) n += live.reinferred;
    return n;
  }

  private readonly constantValues = (name: string): number[] | undefined => {
    const t = this.constant(name);
    return t ? shapeValues(t) : undefined;
  };

  /** A tensor whose value is fixed: an initializer no graph input can override, or a Constant's output. */
  constant(name: string): Tensor | undefined {
    return constantTensor(this.graph, this.producers(), name);
  }

  /** Nodes other than `except` that read `tensor`. */
  otherUsers(tensor: string, except: Node): Node[] {
    return this.consumers(tensor).filter((n) => n !== except);
  }

  /** The result of a whole-graph analysis, computed once per graph version. */
  memo<T>(key: string, compute: () => T): T {
    if (this.memos.has(key)) return this.memos.get(key) as T;
    const value = compute();
    this.memos.set(key, value);
    return value;
  }

  /**
   * As memo(), for results that hold arrays from the scratch arena (a rule with `scratch: true`):
   * dropped also when the driver recycles the arena before the next candidate, whose arrays would
   * otherwise overwrite them (a part's kernel computed for one candidate, then read by the next).
   */
  scratchMemo<T>(key: string, compute: () => T): T {
    if (this.scratchMemos.has(key)) return this.scratchMemos.get(key) as T;
    const value = compute();
    this.scratchMemos.set(key, value);
    return value;
  }

  /** The driver recycled the scratch arena: forget what lives in it. */
  recycled(): void {
    this.scratchMemos.clear();
  }

  /**
   * After a rewrite: producers, consumers and memoized analyses are recomputed when next read (one
   * pass over the nodes); shape facts are inferred again only from the first node the change
   * affects (LiveShapes), not for the whole graph.
   */
  private changed(change: Change): void {
    this.cache = {};
    this.memos.clear();
    this.scratchMemos.clear();
    for (const live of this.live.values()) live.changed(change);
  }
}
