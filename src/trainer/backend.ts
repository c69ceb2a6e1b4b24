// TensorFlow.js backend selection: the fastest one that resolves at run time, in the order
// tfjs-node-gpu → tfjs-node → wasm → cpu. tfjs-node(-gpu) are optional (they download libtensorflow
// at install time and often cannot install): they are imported dynamically and skipped when absent.
// On wasm the missing gradient kernels are registered from forward kernels (./kernels.ts).
import * as tf from "@tensorflow/tfjs";
import { UsageError } from "../ir/errors.js";
import { registerTrainingKernels } from "./kernels.js";

export type BackendName = "tensorflow-gpu" | "tensorflow" | "wasm" | "cpu";
export const BACKEND_CHOICES = ["auto", "tfjs-node-gpu", "tfjs-node", "wasm", "cpu"] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export interface BackendInfo {
  /** tfjs backend name as tf.getBackend() reports it. */
  name: string;
  /** What the user sees: "tfjs-node-gpu", "tfjs-node", "wasm (SIMD, 1 thread)", "cpu". */
  label: string;
  /** Backends tried before this one and why they were skipped. */
  skipped: string[];
  /** Kernels registered by us on this backend. */
  registered: string[];
}

let current: BackendInfo | undefined;

async function tryNode(pkg: string): Promise<string | undefined> {
  try {
    await import(pkg);
    return undefined;
  } catch (e) {
    const msg = (e as Error).message.split("\n")[0] ?? String(e);
    return /Cannot find (package|module)/.test(msg) ? "not installed" : msg;
  }
}

/** Silences tfjs's one-time "install tfjs-node" notice of the cpu backend. */
function quietCpu(): void {
  const cpu = tf.findBackend("cpu") as unknown as { firstUse?: boolean } | null;
  if (cpu) cpu.firstUse = false;
}

async function useWasm(): Promise<string[]> {
  await import("@tensorflow/tfjs-backend-wasm");
  if (!(await tf.setBackend("wasm"))) throw new Error("the wasm backend failed to initialize");
  await tf.ready();
  return registerTrainingKernels("wasm");
}

/**
 * Selects and initializes a backend. "auto" tries tfjs-node-gpu, tfjs-node, wasm, cpu in that order;
 * naming one backend fails (UsageError) when it cannot be used. Idempotent for the same choice.
 */
export async function selectBackend(choice: BackendChoice = "auto"): Promise<BackendInfo> {
  if (current && (choice === "auto" || current.label.startsWith(choice))) {
    if (tf.getBackend() !== current.name) await tf.setBackend(current.name);
    return current;
  }
  const skipped: string[] = [];
  quietCpu();
  const nodeCandidates: [BackendChoice, string, string][] = [
    ["tfjs-node-gpu", "@tensorflow/tfjs-node-gpu", "tensorflow"],
    ["tfjs-node", "@tensorflow/tfjs-node", "tensorflow"],
  ];
  for (const [label, pkg, name] of nodeCandidates) {
    if (choice !== "auto" && choice !== label) continue;
    const why = await tryNode(pkg);
    if (!why && (await tf.setBackend(name))) {
      await tf.ready();
      return (current = { name, label, skipped, registered: [] });
    }
    const reason = why ?? "backend did not initialize";
    if (choice === label) throw new UsageError(`--backend ${label}: ${pkg} cannot be used (${reason}); install it with 'npm install ${pkg}' or use --backend wasm`);
    skipped.push(`${label}: ${reason}`);
  }
  if (choice === "auto" || choice === "wasm") {
    try {
      const registered = await useWasm();
      const simd = tf.env().getBool("WASM_HAS_SIMD_SUPPORT");
      return (current = { name: "wasm", label: `wasm (${simd ? "SIMD" : "no SIMD"}, 1 thread)`, skipped, registered });
    } catch (e) {
      if (choice === "wasm") throw new UsageError(`--backend wasm: ${(e as Error).message}`);
      skipped.push(`wasm: ${(e as Error).message}`);
    }
  }
  if (!(await tf.setBackend("cpu"))) throw new UsageError("no TensorFlow.js backend could be initialized");
  await tf.ready();
  quietCpu();
  return (current = { name: "cpu", label: "cpu (pure JS: very slow for training)", skipped, registered: [] });
}

export function backendChoice(value: string | undefined): BackendChoice {
  if (value === undefined) return "auto";
  if ((BACKEND_CHOICES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new UsageError(`--backend '${value}': expected one of ${BACKEND_CHOICES.join(", ")}`);
}

export { tf };
