// A small graph builder: used by tests, the trainer's exporter and the benchmark generator to
// make models through the IR (not by hand-writing protobuf).
import { attr, Model, Node, graphFromProto } from "./graph.js";
import { DataType } from "./dtype.js";
import { onnx, type AttributeProto, type ValueInfoProto } from "./proto.js";
import { Tensor } from "./tensor.js";

export type Dim = number | string;

export function valueInfo(name: string, elemType: number, dims?: Dim[]): ValueInfoProto {
  const shape = dims
    ? { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) }
    : undefined;
  return onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType, shape } } });
}

type AttrInput = number | number[] | string;

export class GraphBuilder {
  readonly nodes: Node[] = [];
  readonly initializers = new Map<string, Tensor>();
  readonly inputs: ValueInfoProto[] = [];
  readonly outputs: ValueInfoProto[] = [];
  private counter = 0;

  constructor(readonly opset = 13, readonly dtype: number = DataType.FLOAT) {}

  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  input(name: string, dims: Dim[], elemType = this.dtype): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, dims?: Dim[], elemType = this.dtype): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** An initializer from float64 values, stored in `dtype` (defaults to the builder's). */
  constant(prefix: string, dims: number[], values: ArrayLike<number>, dtype = this.dtype): string {
    const name = this.fresh(prefix);
    this.initializers.set(name, Tensor.fromFloat64(name, dtype, dims, Float64Array.from(values)));
    return name;
  }

  int64(prefix: string, values: number[]): string {
    const name = this.fresh(prefix);
    this.initializers.set(name, Tensor.fromData(name, DataType.INT64, [values.length], BigInt64Array.from(values.map(BigInt))));
    return name;
  }

  /** A 0-d int64 initializer (a Gather index, a divisor in shape arithmetic). */
  scalarInt64(prefix: string, value: number): string {
    const name = this.fresh(prefix);
    this.initializers.set(name, Tensor.fromData(name, DataType.INT64, [], BigInt64Array.of(BigInt(value))));
    return name;
  }

  node(opType: string, inputs: string[], attrs: Record<string, AttrInput> = {}, nOutputs = 1, name?: string): string[] {
    const nodeName = name ?? this.fresh(opType);
    const outputs = Array.from({ length: nOutputs }, (_, i) => (nOutputs === 1 ? `${nodeName}_out` : `${nodeName}_out${i}`));
    const attributes: AttributeProto[] = Object.entries(attrs).map(([k, v]) =>
      typeof v === "string" ? attr.string(k, v) : Array.isArray(v) ? attr.ints(k, v) : Number.isInteger(v) && !FLOAT_ATTRS.has(k) ? attr.int(k, v) : attr.float(k, v),
    );
    this.nodes.push(new Node(nodeName, opType, inputs, outputs, attributes));
    return outputs;
  }

  op(opType: string, inputs: string[], attrs: Record<string, AttrInput> = {}, name?: string): string {
    return this.node(opType, inputs, attrs, 1, name)[0]!;
  }

  build(): Model {
    const graph = onnx.GraphProto.create({ name: "g", input: this.inputs, output: this.outputs });
    const g = graphFromProto(graph, (t) => Tensor.fromProto(t));
    g.nodes = this.nodes;
    g.initializers = this.initializers;
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: "reparam-onnx-builder",
      opsetImport: [{ domain: "", version: this.opset }],
    });
    return new Model(model, g);
  }
}

const FLOAT_ATTRS = new Set(["epsilon", "momentum", "alpha", "beta", "gamma", "value"]);
