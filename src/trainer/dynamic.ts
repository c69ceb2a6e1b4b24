// DyRep-style dynamic re-parameterization (Huang et al., CVPR 2022) for multi-branch training.
// Every layer starts as its main k×k conv + BN. Every `every` epochs:
//   score   each branch by its gradient importance Σ|θ ⊙ ∂L/∂θ| (synflow-like saliency, over the
//           conv weights and BN affine parameters), accumulated over the last `window` steps;
//   Dep     fold branches whose score per parameter is below `prune` × the main conv's back into
//           the main conv (exact in inference form: W' = W + K_b·σ/γ, β' = β + b_b) and delete them;
//   Rep     give the `grow` fraction of layers whose main conv scores highest (and that still miss
//           some of their family's branches) the missing branches, initialised so the layer's output
//           is unchanged (the branch's last BN has γ = 0, β = 0: it outputs exactly 0).
// The exported model then has a different branch subset per layer; optimize folds each one.
import { tf } from "./backend.js";
import { BN_EPS, type BN, type Branch, type Layer, type Net } from "./model.js";

export interface DynamicConfig {
  /** Decision period in epochs. */
  every: number;
  /** Fraction of layers grown per decision (at least one). */
  grow?: number;
  /** A branch whose score per parameter is below prune × the main conv's is folded into it. */
  prune?: number;
  /** Steps at the end of a decision epoch over which scores are accumulated. */
  window?: number;
}

export interface DynamicState {
  /** Epoch each branch was added (key "layer/branch"). */
  born: Record<string, number>;
  events: string[];
}

interface BranchScore {
  layer: Layer;
  branch: Branch;
  score: number;
  vars: tf.Variable[];
}

/**
 * What the controller needs from the training loop: the network, the run's length, and the
 * optimizer (whose state of pruned parameters is dropped). train.ts implements it; this module
 * does not import train.ts (no cycle).
 */
export interface DynamicHost {
  readonly net: Net;
  readonly config: { readonly epochs: number };
  readonly opt: { retain(names: Set<string>): void };
}

export class DynamicController {
  private scores = new Map<string, BranchScore>();
  private readonly st: DynamicState;
  private readonly grow: number;
  private readonly prune: number;
  private readonly window: number;

  constructor(readonly trainer: DynamicHost, readonly config: DynamicConfig, state?: DynamicState) {
    this.st = state ?? { born: {}, events: [] };
    this.grow = config.grow ?? 0.25;
    this.prune = config.prune ?? 0.1;
    this.window = config.window ?? 20;
  }

  private get net(): Net {
    return this.trainer.net;
  }

  /** Decisions happen every `every` epochs, never after the last one (a grown branch would stay 0). */
  private decides(epoch: number): boolean {
    return epoch % this.config.every === 0 && epoch < this.trainer.config.epochs;
  }

  wantsGrads(epoch: number, step: number, steps: number): boolean {
    return this.decides(epoch) && step >= steps - this.window;
  }

  /** Adds |θ ⊙ g| of every branch's parameters to its score. */
  accumulate(grads: Record<string, tf.Tensor>): void {
    for (const layer of this.net.layers)
      for (const br of layer.branches) {
        const key = `${layer.spec.name}/${br.name}`;
        let s = this.scores.get(key);
        if (!s || s.branch !== br) {
          const vars = [...Object.values(br.weights), ...Object.values(br.bns).flatMap((b) => [b.gamma, b.beta])];
          s = { layer, branch: br, score: 0, vars };
          this.scores.set(key, s);
        }
        const terms = s.vars.filter((v) => grads[v.name]);
        if (!terms.length) continue;
        const t = tf.tidy(() => tf.addN(terms.map((v) => tf.sum(tf.abs(tf.mul(v, grads[v.name]!))))));
        s.score += t.dataSync()[0]!;
        t.dispose();
      }
  }

  endEpoch(epoch: number): string[] {
    if (!this.decides(epoch)) return [];
    const events: string[] = [];
    const scoreOf = (layer: Layer, br: Branch) => this.scores.get(`${layer.spec.name}/${br.name}`)?.score ?? 0;
    // Dep: fold weak branches into the main conv.
    for (const layer of this.net.layers) {
      const main = layer.branches.find((b) => b.kind === "kxk");
      if (!main) continue;
      const mainScore = scoreOf(layer, main);
      for (const br of [...layer.branches]) {
        if (br === main) continue;
        const born = this.st.born[`${layer.spec.name}/${br.name}`] ?? 0;
        if (born >= epoch) continue; // grown at this decision: no history yet
        // Per parameter: a 1×1 branch has 1/9 of a 3×3 conv's parameters, so its total saliency is
        // naturally ~1/9 of the main conv's even when it matters as much.
        const s = scoreOf(layer, br) / paramCount(br), sm = mainScore / paramCount(main);
        if (s >= this.prune * sm) continue;
        if (foldIntoMain(this.net, layer, br, main)) events.push(`${layer.spec.name}: folded ${br.name} into ${main.name} (score per parameter ${s.toExponential(2)} < ${this.prune} × ${sm.toExponential(2)})`);
      }
    }
    // Rep: grow the most important layers.
    const candidates = this.net.layers
      .map((layer) => ({ layer, missing: missingBranches(layer), score: scoreOf(layer, layer.branches.find((b) => b.kind === "kxk") ?? layer.branches[0]!) }))
      .filter((c) => c.missing.length > 0)
      .sort((a, b) => b.score - a.score);
    const count = Math.min(candidates.length, Math.max(1, Math.round(this.grow * this.net.layers.length)));
    for (const c of candidates.slice(0, count)) {
      const added = c.missing.map((kind) => this.net.addBranch(c.layer, kind, true));
      for (const br of added) this.st.born[`${c.layer.spec.name}/${br.name}`] = epoch;
      events.push(`${c.layer.spec.name}: grew ${added.map((b) => b.name).join(", ")} (main conv score ${c.score.toExponential(2)})`);
    }
    this.trainer.opt.retain(new Set(this.net.trainables().map((v) => this.net.nameOf(v))));
    this.scores.clear();
    this.st.events.push(...events.map((e) => `epoch ${epoch}: ${e}`));
    return events;
  }

  state(): DynamicState {
    return this.st;
  }
}

function paramCount(br: Branch): number {
  return [...Object.values(br.weights), ...Object.values(br.bns).flatMap((b) => [b.gamma, b.beta])].reduce((n, v) => n + v.size, 0) || 1;
}

/** The family's branches (spec.branches) a layer does not have (multiset difference). */
export function missingBranches(layer: Layer): Layer["spec"]["branches"] {
  const have = layer.branches.map((b) => b.kind);
  const out: Layer["spec"]["branches"] = [];
  for (const kind of layer.spec.branches) {
    const i = have.indexOf(kind);
    if (i >= 0) have.splice(i, 1);
    else out.push(kind);
  }
  return out;
}

function values(v: tf.Tensor): Float64Array {
  return Float64Array.from(v.dataSync());
}

function affine(bn: BN): { s: Float64Array; t: Float64Array } {
  const g = values(bn.gamma), b = values(bn.beta), m = values(bn.mean), v = values(bn.variance);
  const s = g.map((x, i) => x / Math.sqrt(v[i]! + BN_EPS));
  return { s, t: b.map((x, i) => x - m[i]! * s[i]!) };
}

/**
 * Inference-form kernel (HWIO k×k, depthwise [k,k,C,1]) and bias of one branch, in float64 —
 * docs/rules.md §7.1–§7.5 (DBB's BN-value padding makes the 1×1 → k×k and 1×1 → avg compositions
 * exact). Written out in the trainer's HWIO layout on purpose: it is an independent oracle of
 * src/algebra, and test/trainer-algebra.test.ts requires the two to agree on every branch kind.
 */
export function branchInference(layer: Layer, br: Branch, idKernel: (c: number) => Float64Array): { kernel: Float64Array; bias: Float64Array } {
  const { k, cin, cout, depthwise: dw } = layer.spec;
  const co = dw ? 1 : cout; // last axis of the HWIO kernel
  const kernel = new Float64Array(k * k * cin * co);
  const at = (a: number, b: number, c: number, o: number) => ((a * k + b) * cin + c) * co + o;
  const outCh = (c: number, o: number) => (dw ? c : o); // output channel of kernel entry (c, o)
  const embed = (w: Float64Array, kh: number, kw: number, s: Float64Array) => {
    const oh = (k - kh) >> 1, ow = (k - kw) >> 1;
    for (let a = 0; a < kh; a++) for (let b = 0; b < kw; b++) for (let c = 0; c < cin; c++) for (let o = 0; o < co; o++)
      kernel[at(a + oh, b + ow, c, o)]! += w[((a * kw + b) * cin + c) * co + o]! * s[outCh(c, o)]!;
  };
  const last = (name: string) => affine(br.bns[name]!);
  switch (br.kind) {
    case "kxk": case "1x1": case "1xk": case "kx1": {
      const w = br.weights.conv!;
      const { s, t } = last("bn");
      embed(values(w), w.shape[0]!, w.shape[1]!, s);
      return { kernel, bias: t };
    }
    case "identity": {
      const { s, t } = last("bn");
      embed(idKernel(cin), 1, 1, s);
      return { kernel, bias: t };
    }
    case "1x1_avg": {
      const w1 = values(br.weights.conv!);
      const { s: s1, t: t1 } = last("bn");
      const { s: s2, t: t2 } = last("avgbn");
      for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) for (let c = 0; c < cin; c++) for (let o = 0; o < co; o++) {
        const oc = outCh(c, o);
        kernel[at(a, b, c, o)] = (w1[c * co + o]! * s1[oc]! * s2[oc]!) / (k * k);
      }
      return { kernel, bias: t1.map((x, o) => x * s2[o]! + t2[o]!) };
    }
    case "1x1_kxk": {
      const w1 = values(br.weights.conv1!), id = idKernel(cin);
      const mid = dw ? 1 : cin;
      const { s: s1, t: t1 } = last("bn1");
      const w2 = values(br.weights.conv2!);
      const { s: s2, t: t2 } = last("bn2");
      const bias = new Float64Array(cout);
      for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) for (let m = 0; m < cin; m++) for (let o = 0; o < co; o++) {
        const w = w2[((a * k + b) * cin + m) * co + o]!;
        const oc = outCh(m, o);
        bias[oc]! += w * t1[m]! * s2[oc]!;
        if (dw) kernel[at(a, b, m, 0)]! += (w1[m]! + id[m]!) * s1[m]! * w * s2[oc]!;
        else for (let c = 0; c < cin; c++) kernel[at(a, b, c, o)]! += (w1[c * mid + m]! + id[c * mid + m]!) * s1[m]! * w * s2[oc]!;
      }
      return { kernel, bias: bias.map((x, o) => x + t2[o]!) };
    }
    case "dw_pw": {
      const wd = values(br.weights.dw!), wp = values(br.weights.pw!);
      const { s: s1, t: t1 } = last("bn1");
      const { s: s2, t: t2 } = last("bn2");
      const bias = new Float64Array(cout);
      for (let c = 0; c < cin; c++) for (let o = 0; o < cout; o++) {
        bias[o]! += t1[c]! * wp[c * cout + o]! * s2[o]!;
        for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) kernel[at(a, b, c, o)]! += wd[(a * k + b) * cin + c]! * s1[c]! * wp[c * cout + o]! * s2[o]!;
      }
      return { kernel, bias: bias.map((x, o) => x + t2[o]!) };
    }
  }
}

/** Dep: folds `br` into the main conv-BN (exact in inference form). False when γ of the main BN is ~0. */
export function foldIntoMain(net: Net, layer: Layer, br: Branch, main: Branch): boolean {
  const { cin, depthwise: dw } = layer.spec;
  const idKernel = (c: number) => {
    const t = net.idKernel(c, 1, dw);
    return values(t);
  };
  const { kernel, bias } = branchInference(layer, br, idKernel);
  const bn = main.bns.bn!;
  const g = values(bn.gamma), v = values(bn.variance);
  const sigmaOverGamma = g.map((x, i) => Math.sqrt(v[i]! + BN_EPS) / x);
  if (sigmaOverGamma.some((x) => !Number.isFinite(x) || Math.abs(x) > 1e6)) return false;
  const w = main.weights.conv!;
  const wv = values(w);
  const co = dw ? 1 : layer.spec.cout;
  for (let i = 0; i < wv.length; i++) {
    const o = i % co, c = Math.floor(i / co) % cin;
    wv[i]! += kernel[i]! * sigmaOverGamma[dw ? c : o]!;
  }
  const beta = values(bn.beta);
  tf.tidy(() => {
    w.assign(tf.tensor(Float32Array.from(wv), w.shape));
    bn.beta.assign(tf.tensor1d(Float32Array.from(beta.map((x, i) => x + bias[i]!))));
  });
  net.removeBranch(layer, br);
  return true;
}
