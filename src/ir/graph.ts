// The in-memory graph. Nodes keep their original proto (doc strings, unknown fields, subgraph
// attributes) so that saving an untouched node writes it back unchanged; passes see names,
// op types, inputs, outputs and typed attribute accessors only.
import { copyWireInfo, onnx, shallowCopy, toNumber, type AttributeProto, type GraphProto, type ModelProto, type NodeProto, type ValueInfoProto } from "./proto.js";
import { Tensor } from "./tensor.js";

export type AttrValue = number | string | number[] | string[] | Tensor;

const NONE: readonly string[] = Object.freeze([]);

/** The graphs an attribute holds (GRAPH and GRAPHS attributes). */
export function attributeGraphs(a: AttributeProto): GraphProto[] {
  if (a.g) return a.graphs && a.graphs.length > 0 ? [a.g, ...a.graphs] : [a.g];
  return a.graphs ?? [];
}

/** Names a subgraph defines: its inputs, initializers and node outputs. */
function definedIn(g: GraphProto): Set<string> {
  const defined = new Set<string>();
  for (const i of g.input ?? []) defined.add(i.name ?? "");
  for (const t of g.initializer ?? []) defined.add(t.name ?? "");
  for (const t of g.sparseInitializer ?? []) defined.add(t.values?.name ?? "");
  for (const n of g.node ?? []) for (const o of n.output ?? []) if (o) defined.add(o);
  return defined;
}

// Subgraph protos are never mutated (a rename makes new ones), so their outer reads are computed once.
const outerReadsCache = new WeakMap<GraphProto, readonly string[]>();

/**
 * The names a subgraph reads that it does not define (free names): node inputs, the outer reads of
 * its own nested subgraphs, and outputs that name an outer tensor. Recursion follows the nesting
 * of subgraphs (bounded by protobuf's own decoding depth), never the length of a graph.
 */
export function outerReads(g: GraphProto): readonly string[] {
  const cached = outerReadsCache.get(g);
  if (cached) return cached;
  const defined = definedIn(g);
  const free = new Set<string>();
  const read = (name: string | null | undefined) => {
    if (name && !defined.has(name)) free.add(name);
  };
  for (const n of g.node ?? []) {
    for (const i of n.input ?? []) read(i);
    for (const a of n.attribute ?? []) for (const sub of attributeGraphs(a)) for (const name of outerReads(sub)) read(name);
  }
  for (const o of g.output ?? []) read(o.name);
  const result = Object.freeze([...free]);
  outerReadsCache.set(g, result);
  return result;
}

/** Every name defined anywhere inside `g` (its own and its nested subgraphs'), for fresh-name choice. */
export function namesDefinedIn(g: GraphProto, into = new Set<string>()): Set<string> {
  for (const name of definedIn(g)) into.add(name);
  for (const n of g.node ?? []) {
    if (n.name) into.add(n.name);
    for (const a of n.attribute ?? []) for (const sub of attributeGraphs(a)) namesDefinedIn(sub, into);
  }
  return into;
}

/**
 * The attributes with every subgraph reading outer `from` replaced by a copy reading `to` (others
 * kept as they are); undefined if one of those subgraphs defines `to`.
 */
function renameInAttributes(attributes: AttributeProto[], from: string, to: string): AttributeProto[] | undefined {
  const out: AttributeProto[] = [];
  for (const a of attributes) {
    if (!attributeGraphs(a).some((g) => outerReads(g).includes(from))) {
      out.push(a);
      continue;
    }
    const copy = shallowCopy(a);
    if (a.g) {
      const g = renameOuterRead(a.g, from, to);
      if (!g) return undefined;
      copy.g = g;
    }
    if (a.graphs && a.graphs.length > 0) {
      const gs = a.graphs.map((g) => renameOuterRead(g, from, to));
      if (gs.some((g) => !g)) return undefined;
      copy.graphs = gs as GraphProto[];
    }
    out.push(copy);
  }
  return out;
}

/** A copy of subgraph `g` reading `to` wherever it read outer tensor `from`; undefined if `g` defines `to`. */
function renameOuterRead(g: GraphProto, from: string, to: string): GraphProto | undefined {
  if (!outerReads(g).includes(from)) return g;
  if (definedIn(g).has(to)) return undefined;
  const copy = shallowCopy(g);
  const nodes: NodeProto[] = [];
  for (const n of g.node ?? []) {
    const readsInput = (n.input ?? []).includes(from);
    const readsInBody = (n.attribute ?? []).some((a) => attributeGraphs(a).some((sub) => outerReads(sub).includes(from)));
    if (!readsInput && !readsInBody) {
      nodes.push(n);
      continue;
    }
    const nc = shallowCopy(n);
    if (readsInput) nc.input = n.input!.map((i) => (i === from ? to : i));
    if (readsInBody) {
      const attributes = renameInAttributes(n.attribute ?? [], from, to);
      if (!attributes) return undefined;
      nc.attribute = attributes;
    }
    nodes.push(nc);
  }
  copy.node = nodes;
  copy.output = (g.output ?? []).map((o) => {
    if (o.name !== from) return o;
    const oc = shallowCopy(o);
    oc.name = to;
    return oc;
  });
  return copy;
}

export class Node {
  constructor(
    public name: string,
    public opType: string,
    public inputs: string[],
    public outputs: string[],
    public attributes: AttributeProto[] = [],
    public domain = "",
    /** Original proto (for fields we do not model); undefined for nodes created by a pass. */
    readonly original?: NodeProto,
  ) {}

  /** An op of the default ONNX domain ("" or "ai.onnx"), whose semantics the standard defines. */
  get isDefaultDomain(): boolean {
    return this.domain === "" || this.domain === "ai.onnx";
  }

  attr(name: string): AttributeProto | undefined {
    return this.attributes.find((a) => a.name === name);
  }

  int(name: string, fallback: number): number;
  int(name: string): number | undefined;
  int(name: string, fallback?: number): number | undefined {
    const a = this.attr(name);
    return a ? toNumber(a.i) : fallback;
  }

  ints(name: string, fallback: number[]): number[];
  ints(name: string): number[] | undefined;
  ints(name: string, fallback?: number[]): number[] | undefined {
    const a = this.attr(name);
    return a ? (a.ints ?? []).map((v) => toNumber(v)) : fallback;
  }

  float(name: string, fallback: number): number {
    const a = this.attr(name);
    return a ? Number(a.f ?? 0) : fallback;
  }

  string(name: string, fallback: string): string {
    const a = this.attr(name);
    return a?.s ? new TextDecoder().decode(a.s) : fallback;
  }

  tensor(name: string): Tensor | undefined {
    const a = this.attr(name);
    return a?.t ? Tensor.fromProto(a.t) : undefined;
  }

  hasSubgraph(): boolean {
    return this.attributes.some((a) => a.g || (a.graphs && a.graphs.length > 0));
  }

  /**
   * Tensors of the enclosing graphs that this node's subgraphs (If branches, Loop/Scan bodies, at
   * any nesting depth) read by name. ONNX lets a body read any outer tensor without listing it
   * as an input: those reads are uses of the tensor by this node, like its inputs.
   */
  subgraphReads(): readonly string[] {
    if (!this.hasSubgraph()) return NONE;
    const reads = new Set<string>();
    for (const a of this.attributes) for (const g of attributeGraphs(a)) for (const name of outerReads(g)) reads.add(name);
    return [...reads];
  }

  /** Every tensor this node reads: its (non-empty) inputs, then what its subgraphs read from outside. */
  reads(): string[] {
    const inputs = this.inputs.filter((i) => i);
    if (!this.hasSubgraph()) return inputs;
    return [...inputs, ...this.subgraphReads()];
  }

  /** Whether renameSubgraphReads(from, to) would succeed (it changes nothing here). */
  canRenameSubgraphReads(from: string, to: string): boolean {
    return renameInAttributes(this.attributes, from, to) !== undefined;
  }

  /**
   * Make this node's subgraphs read `to` where they read the outer tensor `from`. Returns false,
   * changing nothing, when a body defines `to` itself (the renamed read would be captured there).
   */
  renameSubgraphReads(from: string, to: string): boolean {
    if (!this.subgraphReads().includes(from)) return true;
    const attributes = renameInAttributes(this.attributes, from, to);
    if (!attributes) return false;
    this.attributes = attributes;
    return true;
  }

  toProto(): NodeProto {
    const p = this.original ? onnx.NodeProto.fromObject({}) : onnx.NodeProto.create();
    if (this.original) {
      // Shallow copy keeps unknown fields (non-enumerable) by copying them explicitly.
      Object.assign(p, this.original);
      copyWireInfo(this.original, p);
    }
    // Only write a default-valued field where the original had it: keeps round trips byte-stable.
    const had = (key: string) => this.original !== undefined && Object.prototype.hasOwnProperty.call(this.original, key);
    if (this.name || had("name")) p.name = this.name;
    p.opType = this.opType;
    p.input = [...this.inputs];
    p.output = [...this.outputs];
    p.attribute = this.attributes;
    if (this.domain || had("domain")) p.domain = this.domain;
    return p;
  }
}

export const attr = {
  int: (name: string, i: number): AttributeProto => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i }),
  ints: (name: string, ints: number[]): AttributeProto => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INTS, ints }),
  float: (name: string, f: number): AttributeProto => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.FLOAT, f }),
  string: (name: string, s: string): AttributeProto => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(s) }),
};

export class Graph {
  nodes: Node[];
  initializers: Map<string, Tensor>;
  inputs: ValueInfoProto[];
  outputs: ValueInfoProto[];
  valueInfo: ValueInfoProto[];

  constructor(readonly original: GraphProto, nodes: Node[], initializers: Map<string, Tensor>) {
    this.nodes = nodes;
    this.initializers = initializers;
    this.inputs = [...(original.input ?? [])];
    this.outputs = [...(original.output ?? [])];
    this.valueInfo = [...(original.valueInfo ?? [])];
  }

  get name(): string {
    return this.original.name ?? "";
  }

  /** Inputs that are real model inputs (not initializer overrides, as IR < 4 exporters write). */
  realInputs(): ValueInfoProto[] {
    return this.inputs.filter((v) => !this.initializers.has(v.name ?? ""));
  }

  outputNames(): Set<string> {
    return new Set(this.outputs.map((o) => o.name ?? ""));
  }

  /**
   * tensor name -> nodes consuming it (a node using a tensor twice appears twice). A node whose
   * subgraphs read a tensor of this graph consumes it too (Node.reads).
   */
  consumers(): Map<string, Node[]> {
    const map = new Map<string, Node[]>();
    for (const n of this.nodes)
      for (const i of n.reads()) {
        let list = map.get(i);
        if (!list) map.set(i, (list = []));
        list.push(n);
      }
    return map;
  }

  /**
   * A node whose subgraphs read `from` but define a tensor named `to` themselves: renaming `from`
   * to `to` (replaceUses) would be captured there, so a rule must not ask for it.
   */
  renameCapturedBy(from: string, to: string): Node | undefined {
    return this.nodes.find((n) => n.subgraphReads().includes(from) && !n.canRenameSubgraphReads(from, to));
  }

  /** tensor name -> producing node. */
  producers(): Map<string, Node> {
    const map = new Map<string, Node>();
    for (const n of this.nodes) for (const o of n.outputs) if (o) map.set(o, n);
    return map;
  }

  toProto(): GraphProto {
    const p = onnx.GraphProto.fromObject({});
    Object.assign(p, this.original);
    copyWireInfo(this.original, p);
    p.node = this.nodes.map((n) => n.toProto());
    p.initializer = [...this.initializers.values()].map((t) => t.toProto());
    p.input = this.inputs;
    p.output = this.outputs;
    p.valueInfo = this.valueInfo;
    return p;
  }
}

export class Model {
  constructor(
    readonly original: ModelProto,
    public graph: Graph,
    /** Where it was loaded from (error messages, external data). */
    readonly path?: string,
    /**
     * Every file its data comes from (absolute): the model file and its external data files. Copies
     * keep the list, so a model written from a copy is never written over a file it still reads.
     */
    readonly sources: readonly string[] = [],
  ) {}

  /** The opset version imported for a domain ("" = the default ONNX domain). */
  opset(domain = ""): number {
    const entry = (this.original.opsetImport ?? []).find((o) => (o.domain ?? "") === domain || (domain === "" && o.domain === "ai.onnx"));
    return entry ? toNumber(entry.version) : 0;
  }

  /**
   * A copy that passes can mutate: nodes and lists are new, tensors (immutable) are shared. It has
   * no path: it is not the file it came from, and errors about it must not name that file.
   */
  clone(): Model {
    const g = this.graph;
    const nodes = g.nodes.map((n) => new Node(n.name, n.opType, [...n.inputs], [...n.outputs], [...n.attributes], n.domain, n.original));
    const copy = new Graph(g.original, nodes, new Map(g.initializers));
    copy.inputs = [...g.inputs];
    copy.outputs = [...g.outputs];
    copy.valueInfo = [...g.valueInfo];
    return new Model(this.original, copy, undefined, this.sources);
  }

  /**
   * The same graph under a copy of the model proto whose metadata_props has `entries` set (other
   * keys kept, in order): the proto is shared with clones, so it is never edited in place.
   */
  withMetadata(entries: Record<string, string>): Model {
    const original = onnx.ModelProto.fromObject({});
    Object.assign(original, this.original);
    copyWireInfo(this.original, original);
    const kept = (this.original.metadataProps ?? []).filter((e) => !Object.prototype.hasOwnProperty.call(entries, e.key ?? ""));
    original.metadataProps = [...kept, ...Object.entries(entries).map(([key, value]) => onnx.StringStringEntryProto.create({ key, value }))];
    return new Model(original, this.graph, this.path, this.sources);
  }

  toProto(): ModelProto {
    const p = onnx.ModelProto.fromObject({});
    Object.assign(p, this.original);
    copyWireInfo(this.original, p);
    p.graph = this.graph.toProto();
    return p;
  }
}

export function graphFromProto(g: GraphProto, tensorFromProto: (t: import("./proto.js").TensorProto) => Tensor): Graph {
  const nodes = (g.node ?? []).map(
    (n) => new Node(n.name ?? "", n.opType ?? "", [...(n.input ?? [])], [...(n.output ?? [])], [...(n.attribute ?? [])], n.domain ?? "", n),
  );
  const inits = new Map<string, Tensor>();
  for (const t of g.initializer ?? []) inits.set(t.name ?? "", tensorFromProto(t));
  return new Graph(g, nodes, inits);
}
