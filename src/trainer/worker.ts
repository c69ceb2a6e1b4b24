// A data-parallel training worker (worker_threads): holds a replica of the network, receives the
// current parameters and a slice of the batch each step, returns the gradient of its slice's mean
// loss and the BN batch statistics. The main thread (parallel.ts) averages and applies them.
import { parentPort, workerData } from "node:worker_threads";
import { selectBackend, tf, type BackendChoice } from "./backend.js";
import { Net, toNhwc } from "./model.js";
import type { NetSpec } from "./spec.js";

interface Init {
  spec: NetSpec;
  online: boolean;
  backend: BackendChoice;
}

export interface StepRequest {
  type: "step";
  /** Variable names in the order of `params` (sent when the structure changed, else reused). */
  names?: string[];
  structure?: Record<string, { kind: import("./spec.js").BranchKind; name: string }[]>;
  params: Float32Array;
  x: Float32Array;
  y: Int32Array;
}

export interface StepReply {
  type: "step";
  loss: number;
  correct: number;
  /** Gradients of the trainable variables, in `names` order, concatenated (absent: zeros). */
  grads: Float32Array;
  stats: { name: string; mean: Float32Array; variance: Float32Array; count: number }[];
  /** Live tensors in the worker after the step (a leak check). */
  tensors: number;
}

const init = workerData as Init;
await selectBackend(init.backend);
const net = new Net(init.spec, init.online, 1);
let names: string[] = [];

function setParams(params: Float32Array): void {
  let off = 0;
  tf.tidy(() => {
    for (const name of names) {
      const v = net.vars.get(name);
      if (!v) throw new Error(`worker: unknown parameter ${name}`);
      v.assign(tf.tensor(params.subarray(off, off + v.size), v.shape));
      off += v.size;
    }
  });
}

function step(req: StepRequest): StepReply {
  if (req.structure) net.restructure(req.structure);
  if (req.names) names = req.names;
  setParams(req.params);
  const [c, h, w] = net.spec.input;
  const n = req.y.length;
  net.beginStep();
  let pred: tf.Tensor | undefined;
  const vars = net.trainables();
  const { value, grads } = tf.variableGrads(() => {
    const logits = net.forward(toNhwc(req.x, n, c, h, w), { training: true });
    pred = tf.keep(tf.argMax(logits, 1));
    return tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d(req.y, "int32"), net.spec.classes), logits) as tf.Scalar;
  }, vars);
  const stats = net.takePendingStats();
  net.endStep(false);
  const trainable = names.filter((nm) => net.vars.get(nm)!.trainable);
  const total = trainable.reduce((s, nm) => s + net.vars.get(nm)!.size, 0);
  const flat = new Float32Array(total);
  let off = 0;
  for (const nm of trainable) {
    const v = net.vars.get(nm)!;
    const g = grads[v.name];
    if (g) flat.set(g.dataSync() as Float32Array, off);
    off += v.size;
  }
  const loss = value.dataSync()[0]!;
  const p = pred!.dataSync();
  let correct = 0;
  for (let i = 0; i < n; i++) if (p[i] === req.y[i]) correct++;
  value.dispose();
  pred!.dispose();
  for (const g of Object.values(grads)) g.dispose();
  return { type: "step", loss, correct, grads: flat, stats, tensors: tf.memory().numTensors };
}

parentPort!.on("message", (req: StepRequest | { type: "close" }) => {
  if (req.type === "close") {
    net.dispose();
    parentPort!.close();
    return;
  }
  try {
    const reply = step(req);
    parentPort!.postMessage(reply, [reply.grads.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ type: "error", message: (e as Error).message, stack: (e as Error).stack });
  }
});
parentPort!.postMessage({ type: "ready" });
