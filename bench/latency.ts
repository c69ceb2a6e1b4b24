// Median latency of several models in onnxruntime, measured round-robin (one run of each in turn
// per round) so that load from other processes spreads evenly over the models being compared.
// Shared by `npm run bench` and `npm run bench:fixtures`.
import * as ort from "onnxruntime-node";

export interface LatencyOptions {
  rounds: number;
  warmup: number;
  /** One intra-op thread, sequential execution (the fixture benchmark); default: onnxruntime's. */
  oneThread?: boolean;
  /** The input is sin(i·phase)·amplitude. */
  phase: number;
  amplitude: number;
}

export async function medianLatencies(files: string[], shape: number[], o: LatencyOptions): Promise<number[]> {
  const threads = o.oneThread ? { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential" as const } : {};
  const sessions = await Promise.all(files.map((f) => ort.InferenceSession.create(f, { graphOptimizationLevel: "all", logSeverityLevel: 3, ...threads })));
  const x = new Float32Array(shape.reduce((a, b) => a * b, 1)).map((_, i) => Math.sin(i * o.phase) * o.amplitude);
  const feeds = sessions.map((s) => ({ [s.inputNames[0]!]: new ort.Tensor("float32", x, shape) }));
  for (let i = 0; i < o.warmup; i++) for (const [k, s] of sessions.entries()) await s.run(feeds[k]!);
  const times: number[][] = sessions.map(() => []);
  for (let i = 0; i < o.rounds; i++)
    for (const [k, s] of sessions.entries()) {
      const t = performance.now();
      await s.run(feeds[k]!);
      times[k]!.push(performance.now() - t);
    }
  for (const s of sessions) await s.release();
  return times.map((ts) => ts.sort((a, b) => a - b)[Math.floor(ts.length / 2)]!);
}
