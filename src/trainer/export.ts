// ONNX export of a trained Net through the project's IR: every layer as the explicit multi-branch
// graph PyTorch's exporter produces for the same module (Conv, BatchNormalization in inference mode
// with the running statistics, Add, Mul, AveragePool, Sub/Pad/Add BN-value padding, Gemm/Relu/
// Sigmoid for ASR), opset 13, dynamic batch "N", NCHW. `optimize` folds it to one Conv per layer.
import { GraphBuilder } from "../ir/builder.js";
import { DataType } from "../ir/dtype.js";
import type { Model } from "../ir/graph.js";
import { Tensor } from "../ir/tensor.js";
import { BN_EPS, type BN, type Branch, type Layer, type Net } from "./model.js";
import { tf } from "./backend.js";

export const INPUT_NAME = "input";
export const OUTPUT_NAME = "logits";

class Exporter {
  readonly g = new GraphBuilder(13, DataType.FLOAT);
  constructor(private readonly net: Net) {}

  values(v: tf.Tensor): Float32Array {
    return v.dataSync() as Float32Array;
  }

  init(name: string, dims: number[], data: Float32Array): string {
    if (this.g.initializers.has(name)) throw new Error(`duplicate initializer ${name}`);
    this.g.initializers.set(name, Tensor.fromData(name, DataType.FLOAT, dims, data));
    return name;
  }

  int64(name: string, values: number[]): string {
    this.g.initializers.set(name, Tensor.fromData(name, DataType.INT64, [values.length], BigInt64Array.from(values.map(BigInt))));
    return name;
  }

  /** HWIO (tfjs) → OIHW; depthwise [kh,kw,C,1] → [C,1,kh,kw]. `add` is added first (identity-based 1×1). */
  convWeight(name: string, v: tf.Tensor, depthwise: boolean, add?: tf.Tensor): string {
    const t = add ? tf.tidy(() => tf.add(v, add)) : v;
    const [kh, kw, ci, co] = t.shape as [number, number, number, number];
    const src = this.values(t);
    if (add) t.dispose();
    const o = depthwise ? ci : co, i = depthwise ? 1 : ci;
    const out = new Float32Array(src.length);
    for (let a = 0; a < kh; a++)
      for (let b = 0; b < kw; b++)
        for (let c = 0; c < ci; c++)
          for (let d = 0; d < co; d++) {
            const oo = depthwise ? c : d, ii = depthwise ? 0 : c;
            out[((oo * i + ii) * kh + a) * kw + b] = src[((a * kw + b) * ci + c) * co + d]!;
          }
    return this.init(name, [o, i, kh, kw], out);
  }

  conv(name: string, x: string, w: string, k: [number, number], stride: number, pads: [number, number, number, number], group: number): string {
    return this.g.op("Conv", [x, w], { dilations: [1, 1], group, kernel_shape: k, pads, strides: [stride, stride] }, name);
  }

  bn(x: string, bn: BN): string {
    const names = ["weight", "bias", "running_mean", "running_var"].map((s, i) =>
      this.init(`${bn.name}.${s}`, [bn.channels], this.values([bn.gamma, bn.beta, bn.mean, bn.variance][i]!)),
    );
    return this.g.op("BatchNormalization", [x, ...names], { epsilon: BN_EPS, momentum: 0.9 }, bn.name);
  }

  /** Per-channel constant [1,C,1,1] (as PyTorch's `view(1,-1,1,1)` exports it). */
  channelConst(name: string, values: Float32Array): string {
    return this.init(name, [1, values.length, 1, 1], values);
  }

  mulScale(prefix: string, x: string, scale: tf.Tensor): string {
    return this.g.op("Mul", [x, this.channelConst(`${prefix}.scale`, this.values(scale))], {}, `${prefix}.mul`);
  }

  /** DBB BN-value padding as `F.pad(y − t, [p]*4) + t` exports: Sub → Pad (constant 0) → Add. */
  padWithValue(prefix: string, x: string, bn: BN, p: number): string {
    if (p === 0) return x;
    const g = this.values(bn.gamma), b = this.values(bn.beta), m = this.values(bn.mean), v = this.values(bn.variance);
    const t = new Float32Array(bn.channels);
    for (let c = 0; c < bn.channels; c++) t[c] = b[c]! - (m[c]! * g[c]!) / Math.sqrt(v[c]! + BN_EPS);
    const tName = this.channelConst(`${prefix}.pad_value`, t);
    const sub = this.g.op("Sub", [x, tName], {}, `${prefix}.pad_sub`);
    const pads = this.int64(`${prefix}.pads`, [0, 0, p, p, 0, 0, p, p]);
    const padded = this.g.op("Pad", [sub, pads], { mode: "constant" }, `${prefix}.pad`);
    return this.g.op("Add", [padded, tName], {}, `${prefix}.pad_add`);
  }

  branch(layer: Layer, br: Branch, x: string): string {
    const { k, stride: s, depthwise: dw, cin } = layer.spec;
    const p = k >> 1;
    const pre = `${layer.spec.name}.${br.name}`;
    const group = dw ? cin : 1;
    const w = br.weights;
    const online = this.net.online;
    const bn = (z: string, name: string) => (online ? z : this.bn(z, br.bns[name]!));
    const end = (z: string) => (online ? this.mulScale(pre, z, br.scale!) : z);
    switch (br.kind) {
      case "kxk": return end(bn(this.conv(`${pre}.conv`, x, this.convWeight(`${pre}.conv.weight`, w.conv!, dw), [k, k], s, [p, p, p, p], group), "bn"));
      case "1x1": return end(bn(this.conv(`${pre}.conv`, x, this.convWeight(`${pre}.conv.weight`, w.conv!, dw), [1, 1], s, [0, 0, 0, 0], group), "bn"));
      case "1xk": return end(bn(this.conv(`${pre}.conv`, x, this.convWeight(`${pre}.conv.weight`, w.conv!, dw), [1, k], s, [0, p, 0, p], group), "bn"));
      case "kx1": return end(bn(this.conv(`${pre}.conv`, x, this.convWeight(`${pre}.conv.weight`, w.conv!, dw), [k, 1], s, [p, 0, p, 0], group), "bn"));
      case "identity": return online ? this.mulScale(pre, x, br.scale!) : this.bn(x, br.bns.bn!);
      case "1x1_avg": {
        const wName = this.convWeight(`${pre}.conv.weight`, w.conv!, dw);
        if (online) {
          // No BN inside: the 1×1 carries the padding (its border output is 0, as zero-padding gives).
          const c = this.conv(`${pre}.conv`, x, wName, [1, 1], 1, [p, p, p, p], group);
          return end(this.g.op("AveragePool", [c], { kernel_shape: [k, k], strides: [s, s], pads: [0, 0, 0, 0] }, `${pre}.avg`));
        }
        const z = this.padWithValue(`${pre}.bn`, this.bn(this.conv(`${pre}.conv`, x, wName, [1, 1], 1, [0, 0, 0, 0], group), br.bns.bn!), br.bns.bn!, p);
        return this.bn(this.g.op("AveragePool", [z], { kernel_shape: [k, k], strides: [s, s], pads: [0, 0, 0, 0] }, `${pre}.avg`), br.bns.avgbn!);
      }
      case "1x1_kxk": {
        const w1 = this.convWeight(`${pre}.conv1.weight`, w.conv1!, dw, this.net.idKernel(cin, 1, dw));
        const w2 = this.convWeight(`${pre}.conv2.weight`, w.conv2!, dw);
        if (online) {
          const c1 = this.conv(`${pre}.conv1`, x, w1, [1, 1], 1, [p, p, p, p], group);
          return end(this.conv(`${pre}.conv2`, c1, w2, [k, k], s, [0, 0, 0, 0], group));
        }
        const z = this.padWithValue(`${pre}.bn1`, this.bn(this.conv(`${pre}.conv1`, x, w1, [1, 1], 1, [0, 0, 0, 0], group), br.bns.bn1!), br.bns.bn1!, p);
        return this.bn(this.conv(`${pre}.conv2`, z, w2, [k, k], s, [0, 0, 0, 0], group), br.bns.bn2!);
      }
      case "dw_pw": {
        const c1 = bn(this.conv(`${pre}.dw`, x, this.convWeight(`${pre}.dw.weight`, w.dw!, true), [k, k], s, [p, p, p, p], cin), "bn1");
        return end(bn(this.conv(`${pre}.pw`, c1, this.convWeight(`${pre}.pw.weight`, w.pw!, false), [1, 1], 1, [0, 0, 0, 0], 1), "bn2"));
      }
    }
  }

  layer(layer: Layer, x: string): string {
    const name = layer.spec.name;
    const outs = layer.branches.map((b) => this.branch(layer, b, x));
    let y = outs[0]!;
    for (let i = 1; i < outs.length; i++) y = this.g.op("Add", [y, outs[i]!], {}, `${name}.add${i}`);
    if (this.net.online) y = this.bn(y, layer.post!);
    if (layer.asr) {
      // Constant attention: a subgraph of initializers only, as torch.onnx exports an SE head fed by
      // a learned parameter. fold-constants evaluates it; the Mul then folds into the conv.
      const a = layer.asr;
      const tr = (v: tf.Tensor) => { const t = tf.tidy(() => tf.transpose(v)); const d = this.values(t); const s = t.shape; t.dispose(); return [d, s] as const; };
      const psi = this.init(`${name}.asr.psi`, [1, layer.spec.cout], this.values(a.psi));
      const [w1, s1] = tr(a.fc1w), [w2, s2] = tr(a.fc2w);
      const h = this.g.op("Gemm", [psi, this.init(`${name}.asr.fc1.weight`, [...s1], w1), this.init(`${name}.asr.fc1.bias`, [a.fc1b.size], this.values(a.fc1b))], { transB: 1 }, `${name}.asr.fc1`);
      const r = this.g.op("Relu", [h], {}, `${name}.asr.relu`);
      const o = this.g.op("Gemm", [r, this.init(`${name}.asr.fc2.weight`, [...s2], w2), this.init(`${name}.asr.fc2.bias`, [a.fc2b.size], this.values(a.fc2b))], { transB: 1 }, `${name}.asr.fc2`);
      const sig = this.g.op("Sigmoid", [o], {}, `${name}.asr.sigmoid`);
      const att = this.g.op("Reshape", [sig, this.int64(`${name}.asr.shape`, [1, layer.spec.cout, 1, 1])], {}, `${name}.asr.view`);
      y = this.g.op("Mul", [y, att], {}, `${name}.asr.mul`);
    }
    return layer.spec.act === "relu" ? this.g.op("Relu", [y], {}, `${name}.relu`) : y;
  }

  run(metadata: Record<string, string>): Model {
    const [c, h, w] = this.net.spec.input;
    let x = this.g.input(INPUT_NAME, ["N", c, h, w]);
    for (const layer of this.net.layers) x = this.layer(layer, x);
    const pooled = this.g.op("GlobalAveragePool", [x], {}, "gap");
    const flat = this.g.op("Flatten", [pooled], { axis: 1 }, "flatten");
    const [wt, ws] = tf.tidy(() => { const t = tf.transpose(this.net.fcW); return [t.dataSync() as Float32Array, t.shape] as const; });
    const logits = this.g.node("Gemm", [flat, this.init("fc.weight", [...ws], wt), this.init("fc.bias", [this.net.spec.classes], this.values(this.net.fcB))], { transB: 1 }, 1, "fc")[0]!;
    // The graph output gets its conventional name.
    const fc = this.g.nodes[this.g.nodes.length - 1]!;
    fc.outputs[0] = OUTPUT_NAME;
    void logits;
    this.g.output(OUTPUT_NAME, ["N", this.net.spec.classes]);
    const model = this.g.build();
    model.original.producerName = "reparam-onnx-trainer";
    model.original.docString = `${this.net.spec.name}: ${this.net.online ? "online (OREPA-style linearized)" : "multi-branch"} training form`;
    model.original.metadataProps = Object.entries(metadata).map(([key, value]) => ({ key, value }));
    return model;
  }
}

export function exportNet(net: Net, metadata: Record<string, string> = {}): Model {
  return new Exporter(net).run({
    "reparam-onnx.arch": net.spec.name,
    "reparam-onnx.form": net.online ? "online" : "multi-branch",
    "reparam-onnx.preprocess": "float32 NCHW, pixel / 255",
    ...metadata,
  });
}
