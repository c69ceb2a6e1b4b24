// The in-memory graph. Nodes keep their original proto (doc strings, unknown fields, subgraph
// attributes) so that saving an untouched node writes it back unchanged; passes see names,
// op types, inputs, outputs and typed attribute accessors only.
import { copyWireInfo, onnx, toNumber, type AttributeProto, type GraphProto, type ModelProto, type NodeProto, type ValueInfoProto } from "./proto.js";
import { Tensor } from "./tensor.js";

export type AttrValue = number | string | number[] | string[] | Tensor;

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

  /** tensor name -> nodes consuming it (a node using a tensor twice appears twice). */
  consumers(): Map<string, Node[]> {
    const map = new Map<string, Node[]>();
    for (const n of this.nodes)
      for (const i of n.inputs) {
        if (!i) continue;
        let list = map.get(i);
        if (!list) map.set(i, (list = []));
        list.push(n);
      }
    return map;
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
  ) {}

  /** The opset version imported for a domain ("" = the default ONNX domain). */
  opset(domain = ""): number {
    const entry = (this.original.opsetImport ?? []).find((o) => (o.domain ?? "") === domain || (domain === "" && o.domain === "ai.onnx"));
    return entry ? toNumber(entry.version) : 0;
  }

  /** A copy that passes can mutate: nodes and lists are new, tensors (immutable) are shared. */
  clone(): Model {
    const g = this.graph;
    const nodes = g.nodes.map((n) => new Node(n.name, n.opType, [...n.inputs], [...n.outputs], [...n.attributes], n.domain, n.original));
    const copy = new Graph(g.original, nodes, new Map(g.initializers));
    copy.inputs = [...g.inputs];
    copy.outputs = [...g.outputs];
    copy.valueInfo = [...g.valueInfo];
    return new Model(this.original, copy, this.path);
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
    return new Model(original, this.graph, this.path);
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
