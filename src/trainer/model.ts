// The trainable network (tfjs, NHWC): re-parameterizable layers built from branches, BatchNorm with
// running statistics, an optional constant-attention (ASR) scale per layer, and a GAP → FC head.
//
// Two training forms per layer (see spec.ts for the branch kinds):
//   multi-branch  y = act(ASR ⊙ Σ_b BN_b(branch_b(x)))        — what PyTorch's RepVGG/DBB/… train
//   online        y = act(ASR ⊙ BN(conv(x, Σ_b γ_b ⊙ K_b)))   — OREPA: branch kernels K_b composed
//                 from the branch parameters every step, one conv in the forward pass
// Weights are HWIO (tfjs); export.ts writes OIHW.
import { tf } from "./backend.js";
import { batchNormTrain } from "./ops.js";
import type { BranchKind, LayerSpec, NetSpec } from "./spec.js";

export const BN_EPS = 1e-5;
export const BN_MOMENTUM = 0.1;

export { Rng } from "./rng.js";
import { Rng } from "./rng.js";

export interface BN {
  name: string;
  channels: number;
  gamma: tf.Variable;
  beta: tf.Variable;
  mean: tf.Variable;
  variance: tf.Variable;
}

export interface Branch {
  kind: BranchKind;
  /** Unique within the layer: the kind, then "kxk_1", "kxk_2"… for repeats. */
  name: string;
  weights: Record<string, tf.Variable>;
  bns: Record<string, BN>;
  /** Online form: per-channel scale at the end of the branch. */
  scale?: tf.Variable;
}

export interface Asr {
  psi: tf.Variable;
  fc1w: tf.Variable;
  fc1b: tf.Variable;
  fc2w: tf.Variable;
  fc2b: tf.Variable;
}

export interface Layer {
  spec: LayerSpec;
  branches: Branch[];
  /** Online form: the BN after the branch sum. */
  post?: BN;
  asr?: Asr;
}

/** Batch statistics of one BN in a training step, applied to the running stats after the step. */
interface BnUpdate {
  bn: BN;
  mean: tf.Tensor;
  variance: tf.Tensor;
  count: number;
}

export interface ForwardOptions {
  training: boolean;
}

let netCounter = 0;

export class Net {
  readonly layers: Layer[] = [];
  fcW!: tf.Variable;
  fcB!: tf.Variable;
  /** Variables by logical (export) name. */
  readonly vars = new Map<string, tf.Variable>();
  private readonly uid = `net${netCounter++}`;
  private readonly rng: Rng;
  private pending: BnUpdate[] = [];
  private readonly constants = new Map<string, tf.Tensor>();
  /** DBB BN-value padding: t = β − μγ/σ from the running stats, constant within a step. */
  private padValues = new Map<BN, tf.Tensor>();

  /**
   * `mainOnly`: every layer starts with its main k×k conv only (DyRep grows the other branches of
   * spec.branches during training).
   */
  constructor(readonly spec: NetSpec, readonly online: boolean, seed = 1, mainOnly = false) {
    this.rng = new Rng(seed);
    for (const ls of spec.layers) {
      const layer: Layer = { spec: ls, branches: [] };
      (mainOnly ? ls.branches.slice(0, 1) : ls.branches).forEach((kind) => this.addBranch(layer, kind));
      if (online) layer.post = this.bn(`${ls.name}.bn`, ls.cout);
      if (ls.asr) layer.asr = this.makeAsr(ls.name, ls.cout);
      this.layers.push(layer);
    }
    const c = spec.layers[spec.layers.length - 1]!.cout;
    this.fcW = this.variable("fc.weight", [c, spec.classes], this.rng.uniform(c * spec.classes, 1 / Math.sqrt(c)));
    this.fcB = this.variable("fc.bias", [spec.classes], new Float32Array(spec.classes));
  }

  // --- parameters --------------------------------------------------------------------------------

  variable(name: string, shape: number[], values: Float32Array, trainable = true): tf.Variable {
    if (this.vars.has(name)) throw new Error(`duplicate parameter ${name}`);
    const v = tf.variable(tf.tensor(values, shape), trainable, `${this.uid}/${name}`);
    this.vars.set(name, v);
    return v;
  }

  private disposeVar(v: tf.Variable): void {
    for (const [k, x] of this.vars) if (x === v) this.vars.delete(k);
    v.dispose();
  }

  bn(name: string, c: number, gamma = 1): BN {
    return {
      name, channels: c,
      gamma: this.variable(`${name}.weight`, [c], new Float32Array(c).fill(gamma)),
      beta: this.variable(`${name}.bias`, [c], new Float32Array(c)),
      mean: this.variable(`${name}.running_mean`, [c], new Float32Array(c), false),
      variance: this.variable(`${name}.running_var`, [c], new Float32Array(c).fill(1), false),
    };
  }

  private convWeight(name: string, kh: number, kw: number, cin: number, cout: number, depthwise: boolean, zero = false): tf.Variable {
    const shape = depthwise ? [kh, kw, cin, 1] : [kh, kw, cin, cout];
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = (depthwise ? 1 : cin) * kh * kw;
    return this.variable(name, shape, zero ? new Float32Array(n) : this.rng.uniform(n, Math.sqrt(6 / fanIn)));
  }

  /**
   * Adds a branch to a layer. `zeroInit` (DyRep growth) makes the branch output exactly zero at
   * first: γ = 0 of its last BN (multi-branch) or scale 0 (online), so the layer's function is unchanged.
   */
  addBranch(layer: Layer, kind: BranchKind, zeroInit = false, name?: string): Branch {
    const { k, cin, cout, depthwise } = layer.spec;
    if (!name) {
      name = kind;
      for (let i = 1; layer.branches.some((b) => b.name === name); i++) name = `${kind}_${i}`;
    }
    const p = `${layer.spec.name}.${name}`;
    const br: Branch = { kind, name, weights: {}, bns: {} };
    const lastGamma = zeroInit ? 0 : 1;
    const online = this.online;
    const bn = (suffix: string, c: number, last: boolean) => {
      if (!online) br.bns[suffix] = this.bn(`${p}.${suffix}`, c, last ? lastGamma : 1);
    };
    switch (kind) {
      case "kxk": br.weights.conv = this.convWeight(`${p}.conv.weight`, k, k, cin, cout, depthwise); bn("bn", cout, true); break;
      case "1x1": br.weights.conv = this.convWeight(`${p}.conv.weight`, 1, 1, cin, cout, depthwise); bn("bn", cout, true); break;
      case "1xk": br.weights.conv = this.convWeight(`${p}.conv.weight`, 1, k, cin, cout, depthwise); bn("bn", cout, true); break;
      case "kx1": br.weights.conv = this.convWeight(`${p}.conv.weight`, k, 1, cin, cout, depthwise); bn("bn", cout, true); break;
      case "identity": bn("bn", cout, true); break;
      case "1x1_avg": br.weights.conv = this.convWeight(`${p}.conv.weight`, 1, 1, cin, cout, depthwise); bn("bn", cout, false); bn("avgbn", cout, true); break;
      case "1x1_kxk":
        // DBB's IdentityBasedConv1x1: the kernel is weight + I with weight initialised to 0.
        br.weights.conv1 = this.convWeight(`${p}.conv1.weight`, 1, 1, cin, cin, depthwise, true);
        bn("bn1", cin, false);
        br.weights.conv2 = this.convWeight(`${p}.conv2.weight`, k, k, cin, cout, depthwise);
        bn("bn2", cout, true);
        break;
      case "dw_pw":
        if (depthwise) throw new Error("dw_pw branch in a depthwise layer");
        br.weights.dw = this.convWeight(`${p}.dw.weight`, k, k, cin, cin, true);
        bn("bn1", cin, false);
        br.weights.pw = this.convWeight(`${p}.pw.weight`, 1, 1, cin, cout, false);
        bn("bn2", cout, true);
        break;
    }
    if (online) br.scale = this.variable(`${p}.scale`, [cout], new Float32Array(cout).fill(zeroInit ? 0 : 1));
    layer.branches.push(br);
    return br;
  }

  /** Removes a branch and frees its variables. */
  removeBranch(layer: Layer, br: Branch): void {
    layer.branches = layer.branches.filter((b) => b !== br);
    for (const v of Object.values(br.weights)) this.disposeVar(v);
    for (const bn of Object.values(br.bns)) for (const v of [bn.gamma, bn.beta, bn.mean, bn.variance]) this.disposeVar(v);
    if (br.scale) this.disposeVar(br.scale);
  }

  private makeAsr(name: string, c: number): Asr {
    const hidden = Math.max(4, c >> 2);
    return {
      psi: this.variable(`${name}.asr.psi`, [1, c], this.rng.uniform(c, 1)),
      fc1w: this.variable(`${name}.asr.fc1.weight`, [c, hidden], this.rng.uniform(c * hidden, 1 / Math.sqrt(c))),
      fc1b: this.variable(`${name}.asr.fc1.bias`, [hidden], new Float32Array(hidden)),
      fc2w: this.variable(`${name}.asr.fc2.weight`, [hidden, c], this.rng.uniform(c * hidden, 1 / Math.sqrt(hidden))),
      // σ(2) ≈ 0.88: the attention starts close to a pass-through.
      fc2b: this.variable(`${name}.asr.fc2.bias`, [c], new Float32Array(c).fill(2)),
    };
  }

  allBns(): BN[] {
    const out: BN[] = [];
    for (const l of this.layers) {
      for (const b of l.branches) out.push(...Object.values(b.bns));
      if (l.post) out.push(l.post);
    }
    return out;
  }

  trainables(): tf.Variable[] {
    return [...this.vars.values()].filter((v) => v.trainable);
  }

  /** Logical name of a variable. */
  nameOf(v: tf.Variable): string {
    return v.name.slice(this.uid.length + 1);
  }

  paramCount(): number {
    return this.trainables().reduce((s, v) => s + v.size, 0);
  }

  dispose(): void {
    this.endStep();
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
    for (const t of this.constants.values()) t.dispose();
    this.constants.clear();
  }

  // --- forward -------------------------------------------------------------------------------------

  private constant(key: string, make: () => tf.Tensor): tf.Tensor {
    let t = this.constants.get(key);
    if (!t) {
      t = tf.tidy(make);
      this.constants.set(key, tf.keep(t));
    }
    return t;
  }

  /** Call before a forward pass outside the gradient tape: computes step constants (pad values). */
  beginStep(): void {
    this.disposePadValues();
    tf.tidy(() => {
      for (const layer of this.layers)
        for (const br of layer.branches) {
          const bn = br.bns.bn ?? br.bns.bn1;
          if (!bn || (br.kind !== "1x1_avg" && br.kind !== "1x1_kxk")) continue;
          const t = tf.sub(bn.beta, tf.div(tf.mul(bn.mean, bn.gamma), tf.sqrt(tf.add(bn.variance, BN_EPS))));
          this.padValues.set(bn, tf.keep(t));
        }
    });
  }

  private disposePadValues(): void {
    for (const t of this.padValues.values()) t.dispose();
    this.padValues.clear();
  }

  /** After a training step: running statistics (PyTorch semantics: unbiased variance, momentum 0.1). */
  endStep(applyStats = true): void {
    const pending = this.pending;
    this.pending = [];
    if (applyStats && pending.length) {
      tf.tidy(() => {
        for (const u of pending) {
          const m = BN_MOMENTUM;
          u.bn.mean.assign(tf.add(tf.mul(u.bn.mean, 1 - m), tf.mul(u.mean, m)));
          const unbiased = tf.mul(u.variance, u.count / Math.max(1, u.count - 1));
          u.bn.variance.assign(tf.add(tf.mul(u.bn.variance, 1 - m), tf.mul(unbiased, m)));
        }
      });
    }
    for (const u of pending) {
      u.mean.dispose();
      u.variance.dispose();
    }
    this.disposePadValues();
  }

  /** Pending batch statistics (data-parallel workers average them before applying). */
  takePendingStats(): { name: string; mean: Float32Array; variance: Float32Array; count: number }[] {
    const out = this.pending.map((u) => ({ name: u.bn.name, mean: u.mean.dataSync() as Float32Array, variance: u.variance.dataSync() as Float32Array, count: u.count }));
    return out;
  }

  private applyBn(bn: BN, x: tf.Tensor4D, o: ForwardOptions): tf.Tensor4D {
    const g = bn.gamma as tf.Tensor1D, b = bn.beta as tf.Tensor1D;
    if (!o.training) return tf.batchNorm4d(x, bn.mean as tf.Tensor1D, bn.variance as tf.Tensor1D, b, g, BN_EPS);
    const count = x.shape[0] * x.shape[1] * x.shape[2];
    return batchNormTrain(x, g, b, BN_EPS, (s) => this.pending.push({ bn, mean: s.mean, variance: s.variance, count }));
  }

  private conv(x: tf.Tensor4D, w: tf.Tensor4D, stride: number, pads: [number, number, number, number], depthwise: boolean): tf.Tensor4D {
    const [t, l, b, r] = pads;
    const pad: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [t, b], [l, r], [0, 0]];
    return depthwise ? tf.depthwiseConv2d(x, w, stride, pad) : tf.conv2d(x, w, stride, pad);
  }

  /** DBB BN-value padding: pad(z − t) + t, t = BN(0) from the running statistics. */
  private padWithValue(z: tf.Tensor4D, bn: BN, p: number): tf.Tensor4D {
    if (p === 0) return z;
    let t = this.padValues.get(bn);
    if (!t) throw new Error("Net.beginStep() was not called before the forward pass");
    return tf.add(tf.pad(tf.sub(z, t), [[0, 0], [p, p], [p, p], [0, 0]]), t);
  }

  private branchForward(layer: Layer, br: Branch, x: tf.Tensor4D, o: ForwardOptions): tf.Tensor4D {
    const { k, stride: s, depthwise: dw } = layer.spec;
    const p = k >> 1;
    const w = br.weights as Record<string, tf.Tensor4D>;
    const bn = (name: string, z: tf.Tensor4D) => this.applyBn(br.bns[name]!, z, o);
    switch (br.kind) {
      case "kxk": return bn("bn", this.conv(x, w.conv!, s, [p, p, p, p], dw));
      case "1x1": return bn("bn", this.conv(x, w.conv!, s, [0, 0, 0, 0], dw));
      case "1xk": return bn("bn", this.conv(x, w.conv!, s, [0, p, 0, p], dw));
      case "kx1": return bn("bn", this.conv(x, w.conv!, s, [p, 0, p, 0], dw));
      case "identity": return bn("bn", x);
      case "1x1_avg": {
        const z = this.padWithValue(bn("bn", this.conv(x, w.conv!, 1, [0, 0, 0, 0], dw)), br.bns.bn!, p);
        return bn("avgbn", tf.avgPool(z, k, s, "valid"));
      }
      case "1x1_kxk": {
        const w1 = tf.add(w.conv1!, this.idKernel(layer.spec.cin, 1, dw)) as tf.Tensor4D;
        const z = this.padWithValue(bn("bn1", this.conv(x, w1, 1, [0, 0, 0, 0], dw)), br.bns.bn1!, p);
        return bn("bn2", this.conv(z, w.conv2!, s, [0, 0, 0, 0], dw));
      }
      case "dw_pw": {
        const z = bn("bn1", this.conv(x, w.dw!, s, [p, p, p, p], true));
        return bn("bn2", this.conv(z, w.pw!, 1, [0, 0, 0, 0], false));
      }
    }
  }

  /** Identity kernel k×k (centre tap): [k,k,C,C] dense or [k,k,C,1] depthwise. */
  idKernel(c: number, k: number, depthwise: boolean): tf.Tensor4D {
    return this.constant(`id/${c}/${k}/${depthwise}`, () => {
      const shape = depthwise ? [k, k, c, 1] : [k, k, c, c];
      const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
      const centre = (k >> 1) * k + (k >> 1);
      for (let i = 0; i < c; i++) data[depthwise ? centre * c + i : (centre * c + i) * c + i] = 1;
      return tf.tensor4d(data, shape as [number, number, number, number]);
    }) as tf.Tensor4D;
  }

  /**
   * The k×k kernel of one online branch, γ included (HWIO): the composition rules of
   * docs/rules.md §7.1–§7.5 on tensors, differentiable, so the forward runs one conv per layer.
   */
  branchKernel(layer: Layer, br: Branch): tf.Tensor4D {
    const { k, cin, cout, depthwise: dw } = layer.spec;
    const w = br.weights as Record<string, tf.Tensor4D>;
    const embed = (x: tf.Tensor4D): tf.Tensor4D => {
      const [kh, kw] = x.shape;
      if (kh === k && kw === k) return x;
      const ph = (k - kh) >> 1, pw = (k - kw) >> 1;
      return tf.pad(x, [[ph, ph], [pw, pw], [0, 0], [0, 0]]);
    };
    let kernel: tf.Tensor4D;
    switch (br.kind) {
      case "kxk": kernel = w.conv!; break;
      case "1x1": case "1xk": case "kx1": kernel = embed(w.conv!); break;
      case "identity": kernel = this.idKernel(cin, k, dw); break;
      case "1x1_avg": kernel = tf.mul(tf.tile(w.conv!, [k, k, 1, 1]), 1 / (k * k)); break;
      case "1x1_kxk": {
        const w1 = tf.add(w.conv1!, this.idKernel(cin, 1, dw)) as tf.Tensor4D;
        if (dw) {
          kernel = tf.mul(w1, w.conv2!);
        } else {
          // K[a,b,c,o] = Σ_m W1[c,m] · W2[a,b,m,o]
          const m1 = tf.reshape(w1, [cin, cin]);
          const w2 = tf.reshape(tf.transpose(w.conv2!, [2, 0, 1, 3]), [cin, k * k * cout]);
          kernel = tf.transpose(tf.reshape(tf.matMul(m1, w2), [cin, k, k, cout]), [1, 2, 0, 3]);
        }
        break;
      }
      case "dw_pw": kernel = tf.mul(w.dw!, tf.reshape(w.pw!, [1, 1, cin, cout])); break;
    }
    const scale = dw ? tf.reshape(br.scale!, [1, 1, cout, 1]) : br.scale!;
    return tf.mul(kernel, scale);
  }

  /** Σ of the online branch kernels: the layer's one conv kernel in this step. */
  layerKernel(layer: Layer): tf.Tensor4D {
    const ks = layer.branches.map((b) => this.branchKernel(layer, b));
    return ks.length === 1 ? ks[0]! : (tf.addN(ks) as tf.Tensor4D);
  }

  asrVector(a: Asr): tf.Tensor2D {
    const h = tf.relu(tf.add(tf.matMul(a.psi, a.fc1w), a.fc1b));
    return tf.sigmoid(tf.add(tf.matMul(h, a.fc2w), a.fc2b)) as tf.Tensor2D;
  }

  layerForward(layer: Layer, x: tf.Tensor4D, o: ForwardOptions): tf.Tensor4D {
    const { k, stride } = layer.spec;
    const p = k >> 1;
    let y: tf.Tensor4D;
    if (this.online) {
      y = this.applyBn(layer.post!, this.conv(x, this.layerKernel(layer), stride, [p, p, p, p], layer.spec.depthwise), o);
    } else {
      const outs = layer.branches.map((b) => this.branchForward(layer, b, x, o));
      y = outs.length === 1 ? outs[0]! : (tf.addN(outs) as tf.Tensor4D);
    }
    if (layer.asr) y = tf.mul(y, tf.reshape(this.asrVector(layer.asr), [1, 1, 1, layer.spec.cout]));
    return layer.spec.act === "relu" ? tf.relu(y) : y;
  }

  /** Logits [N, classes] for x [N, H, W, C]. Call beginStep() first (outside any gradient tape). */
  forward(x: tf.Tensor4D, o: ForwardOptions): tf.Tensor2D {
    let h = x;
    for (const layer of this.layers) h = this.layerForward(layer, h, o);
    const pooled = tf.mean(h, [1, 2]) as tf.Tensor2D;
    return tf.add(tf.matMul(pooled, this.fcW), this.fcB);
  }

  /** Inference-mode logits, batched, as a Float32Array [N·classes]. */
  predict(images: Float32Array, n: number, batch = 256): Float32Array {
    const [c, hh, ww] = this.spec.input;
    const out = new Float32Array(n * this.spec.classes);
    this.beginStep();
    try {
      for (let i = 0; i < n; i += batch) {
        const m = Math.min(batch, n - i);
        const logits = tf.tidy(() => {
          const x = toNhwc(images.subarray(i * c * hh * ww, (i + m) * c * hh * ww), m, c, hh, ww);
          return this.forward(x, { training: false });
        });
        out.set(logits.dataSync(), i * this.spec.classes);
        logits.dispose();
      }
    } finally {
      this.endStep(false);
    }
    return out;
  }

  // --- state (checkpoints) -------------------------------------------------------------------------

  /** Branch kinds/names per layer: what a checkpoint needs to rebuild a dynamic network. */
  structure(): Record<string, { kind: BranchKind; name: string }[]> {
    return Object.fromEntries(this.layers.map((l) => [l.spec.name, l.branches.map((b) => ({ kind: b.kind, name: b.name }))]));
  }

  /** Rebuilds branches to match `structure` (fresh variables; values are set by the caller). */
  restructure(structure: Record<string, { kind: BranchKind; name: string }[]>): void {
    for (const layer of this.layers) {
      const want = structure[layer.spec.name];
      if (!want) continue;
      for (const br of [...layer.branches]) if (!want.some((w) => w.name === br.name && w.kind === br.kind)) this.removeBranch(layer, br);
      for (const w of want) {
        if (layer.branches.some((b) => b.name === w.name)) continue;
        this.addBranch(layer, w.kind, false, w.name);
      }
      layer.branches.sort((a, b) => want.findIndex((w) => w.name === a.name) - want.findIndex((w) => w.name === b.name));
    }
  }
}

/** NCHW float32 images → NHWC tensor. */
export function toNhwc(data: Float32Array, n: number, c: number, h: number, w: number): tf.Tensor4D {
  const t = tf.tensor4d(data, [n, c, h, w]);
  if (c === 1) return tf.reshape(t, [n, h, w, 1]);
  return tf.transpose(t, [0, 2, 3, 1]);
}
