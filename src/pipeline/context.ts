// What a pass sees: the graph through cheap derived views (producers, consumers, shapes,
// constants), a rewriter through which all mutation goes, and a place to record refusals.
import type { Graph, Model, Node } from "../ir/graph.js";
import { inferShapes, type ShapeMap } from "../ir/shapes.js";
import { Tensor } from "../ir/tensor.js";
import { Rewriter } from "./rewriter.js";

export interface RefusalRecord {
  pass: string;
  node: string;
  op: string;
  reason: string;
}

export interface PassOptions {
  /** Concrete input shapes (from --shape). */
  shapes?: Record<string, number[]>;
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

export class PassContext {
  readonly rewriter: Rewriter;
  readonly refusals: RefusalRecord[] = [];
  private cache: { producers?: Map<string, Node>; consumers?: Map<string, Node[]>; shapes?: ShapeMap; outputs?: Set<string> } = {};
  currentPass = "";
  /** A pass read a layer whose weights other nodes share, allowed because every use is the same layer. */
  readSharedWeights = false;

  constructor(readonly model: Model, readonly options: PassOptions = {}) {
    this.rewriter = new Rewriter(model.graph, () => (this.cache = {}));
  }

  get graph(): Graph {
    return this.model.graph;
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

  shapes(): ShapeMap {
    return (this.cache.shapes ??= inferShapes(this.graph, {
      overrides: this.options.shapes,
      constant: (name) => {
        const t = this.constant(name);
        return t ? Array.from(t.toFloat64()) : undefined;
      },
    }));
  }

  /** A tensor whose value is fixed: an initializer no graph input can override, or a Constant's output. */
  constant(name: string): Tensor | undefined {
    const init = this.graph.initializers.get(name);
    if (init) return this.graph.inputs.some((i) => i.name === name) ? undefined : init;
    const producer = this.producers().get(name);
    if (producer?.opType === "Constant" && producer.isDefaultDomain) {
      const t = producer.tensor("value");
      if (t) return t;
      const f = producer.attr("value_float"), fs = producer.attr("value_floats");
      if (f) return Tensor.fromFloat64(name, 1, [], Float64Array.of(Number(f.f)));
      if (fs) return Tensor.fromFloat64(name, 1, [fs.floats!.length], Float64Array.from(fs.floats!));
    }
    return undefined;
  }

  /** Nodes other than `except` that read `tensor`. */
  otherUsers(tensor: string, except: Node): Node[] {
    return this.consumers(tensor).filter((n) => n !== except);
  }

  refuse(node: Node, reason: string): void {
    const name = node.name || `${node.opType}(${node.outputs[0]})`;
    if (!this.refusals.some((r) => r.node === name && r.reason === reason))
      this.refusals.push({ pass: this.currentPass, node: name, op: node.opType, reason });
  }
}
