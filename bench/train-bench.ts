// Training throughput of the bundled trainer: images/s and peak tensor memory per training step,
// multi-branch against online (OREPA-style) on the same network and batch, on every tfjs backend
// that resolves (tfjs-node(-gpu) when installed, wasm with 1 and N data-parallel workers), and —
// only where `python3 -c 'import torch'` works — the same networks trained by PyTorch on the CPU,
// so the ratios come from one run on one machine. Each configuration runs in its own process.
//
//   npm run train-bench -- [--arch repvgg-mini,dbb-mini] [--batch 64] [--steps 30] [--warmup 5]
//                          [--workers 1,2] [--size 28] [--no-torch] [--json]
// Results: bench/out/train-results.json.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";

interface Config {
  arch: string;
  online: boolean;
  backend: "wasm" | "tfjs-node" | "tfjs-node-gpu";
  workers: number;
  batch: number;
  steps: number;
  warmup: number;
  size: number;
}

interface Result extends Partial<Config> {
  engine: string;
  imagesPerSec: number;
  stepMs: number;
  /** Peak bytes of tensors alive during one training step (tfjs: tf.profile; torch: not measured). */
  peakBytes?: number;
  /** Peak resident memory of the process (MiB). */
  maxRssMiB: number;
  params?: number;
  error?: string;
}

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");

async function child(cfg: Config): Promise<Result> {
  const { selectBackend, tf } = await import("../src/trainer/backend.js");
  const { syntheticData, batchOf } = await import("../src/trainer/data.js");
  const { resolveNet } = await import("../src/trainer/spec.js");
  const { Trainer } = await import("../src/trainer/train.js");
  const info = await selectBackend(cfg.backend);
  const n = cfg.batch * 8;
  const data = syntheticData(n, 16, 1, cfg.size);
  const spec = resolveNet({ arch: cfg.arch, input: data.train.shape, classes: 10 });
  const online = cfg.online || cfg.arch.startsWith("orepa");
  const tr = new Trainer(spec, data, {
    epochs: 1, batch: cfg.batch, seed: 1, online, evalTest: false, workers: cfg.workers,
    optimizer: { kind: "sgd", lr: 0.01, momentum: 0.9, weightDecay: 1e-4 },
  });
  // Peak tensor memory of one single-thread step (before the pool exists).
  const one = batchOf(data.train, Uint32Array.from({ length: cfg.batch }, (_, i) => i));
  await tr.step(one.x, one.y); // kernels initialised
  const prof = await tf.profile(async () => {
    await tr.step(one.x, one.y);
  });
  // Throughput: the real loop (with workers when configured), warm-up steps excluded.
  await tr.prepare(); // the worker pool
  const batches = Array.from({ length: 8 }, (_, b) => batchOf(data.train, Uint32Array.from({ length: cfg.batch }, (_, i) => (b * cfg.batch + i) % n)));
  for (let i = 0; i < cfg.warmup; i++) await tr.step(batches[i % 8]!.x, batches[i % 8]!.y);
  const t0 = performance.now();
  for (let i = 0; i < cfg.steps; i++) await tr.step(batches[i % 8]!.x, batches[i % 8]!.y);
  const ms = (performance.now() - t0) / cfg.steps;
  const params = tr.net.paramCount();
  await tr.dispose();
  return {
    ...cfg, online, engine: `tfjs ${info.label}${cfg.workers > 1 ? ` ×${cfg.workers} workers` : ""}`,
    imagesPerSec: (cfg.batch * 1000) / ms, stepMs: ms, peakBytes: prof.peakBytes, maxRssMiB: process.resourceUsage().maxRSS / 1024, params,
  };
}

// The same networks in PyTorch (CPU), mirroring src/trainer/model.ts: multi-branch blocks with a BN
// per branch (DBB BN-value padding), and online blocks (branch kernels composed every step, one conv).
const TORCH = String.raw`
import json, sys, time, resource
import torch, torch.nn as nn, torch.nn.functional as F
cfg = json.loads(sys.argv[1])
torch.manual_seed(0)
FAM = {
  "repvgg": lambda k, s, ci, co: ["kxk", "1x1"] + (["identity"] if s == 1 and ci == co else []),
  "acb": lambda k, s, ci, co: ["kxk", "1xk", "kx1"],
  "dbb": lambda k, s, ci, co: ["kxk", "1x1", "1x1_avg", "1x1_kxk"],
  "plain": lambda k, s, ci, co: ["kxk"],
}
class Block(nn.Module):
    def __init__(self, ci, co, s, kinds, online, k=3):
        super().__init__()
        self.ci, self.co, self.s, self.k, self.p, self.kinds, self.online = ci, co, s, k, k // 2, kinds, online
        self.w = nn.ParameterList(); self.bns = nn.ModuleList(); self.scales = nn.ParameterList()
        for kind in kinds:
            shapes = {"kxk": [(co, ci, k, k)], "1x1": [(co, ci, 1, 1)], "1xk": [(co, ci, 1, k)], "kx1": [(co, ci, k, 1)],
                      "identity": [], "1x1_avg": [(co, ci, 1, 1)], "1x1_kxk": [(ci, ci, 1, 1), (co, ci, k, k)]}[kind]
            ws = [nn.Parameter(torch.randn(*sh) * (2.0 / (sh[1] * sh[2] * sh[3])) ** 0.5) for sh in shapes]
            self.w.append(nn.ParameterList(ws))
            nb = {"kxk": 1, "1x1": 1, "1xk": 1, "kx1": 1, "identity": 1, "1x1_avg": 2, "1x1_kxk": 2}[kind]
            self.bns.append(nn.ModuleList([nn.BatchNorm2d(ci if (kind == "1x1_kxk" and i == 0) else co) for i in range(nb)]) if not online else nn.ModuleList())
            if online: self.scales.append(nn.Parameter(torch.ones(co)))
        if online: self.post = nn.BatchNorm2d(co)
        self.register_buffer("eye", torch.eye(ci).view(ci, ci, 1, 1))
    def padv(self, z, bn):
        t = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().view(1, -1, 1, 1)
        return F.pad(z - t, [self.p] * 4) + t
    def forward(self, x):
        k, p, s = self.k, self.p, self.s
        if self.online:
            K = 0
            for kind, ws, g in zip(self.kinds, self.w, self.scales):
                if kind == "kxk": ker = ws[0]
                elif kind == "1x1": ker = F.pad(ws[0], [p] * 4)
                elif kind == "1xk": ker = F.pad(ws[0], [0, 0, p, p])
                elif kind == "kx1": ker = F.pad(ws[0], [p, p, 0, 0])
                elif kind == "identity": ker = F.pad(self.eye, [p] * 4)
                elif kind == "1x1_avg": ker = ws[0].expand(-1, -1, k, k) / (k * k)
                elif kind == "1x1_kxk": ker = torch.einsum("mc,omhw->ochw", (ws[0] + self.eye).flatten(1), ws[1])
                K = K + ker * g.view(-1, 1, 1, 1)
            return F.relu(self.post(F.conv2d(x, K, None, s, p)))
        out = 0
        for kind, ws, bns in zip(self.kinds, self.w, self.bns):
            if kind == "kxk": y = bns[0](F.conv2d(x, ws[0], None, s, p))
            elif kind == "1x1": y = bns[0](F.conv2d(x, ws[0], None, s, 0))
            elif kind == "1xk": y = bns[0](F.conv2d(x, ws[0], None, s, (0, p)))
            elif kind == "kx1": y = bns[0](F.conv2d(x, ws[0], None, s, (p, 0)))
            elif kind == "identity": y = bns[0](x)
            elif kind == "1x1_avg": y = bns[1](F.avg_pool2d(self.padv(bns[0](F.conv2d(x, ws[0])), bns[0]), k, s))
            elif kind == "1x1_kxk": y = bns[1](F.conv2d(self.padv(bns[0](F.conv2d(x, ws[0] + self.eye)), bns[0]), ws[1], None, s, 0))
            out = out + y
        return F.relu(out)
fam = cfg["arch"].split("-")[0]
widths = [(16, 1), (32, 2), (32, 1), (64, 2)]
layers, ci = [], 1
for co, s in widths:
    layers.append(Block(ci, co, s, FAM[fam](3, s, ci, co), cfg["online"])); ci = co
net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ci, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
b, size = cfg["batch"], cfg["size"]
x = torch.rand(b, 1, size, size); y = torch.randint(0, 10, (b,))
def step():
    opt.zero_grad(); loss = F.cross_entropy(net(x), y); loss.backward(); opt.step()
for _ in range(cfg["warmup"]): step()
t0 = time.perf_counter()
for _ in range(cfg["steps"]): step()
ms = (time.perf_counter() - t0) * 1000 / cfg["steps"]
print(json.dumps({"imagesPerSec": b * 1000 / ms, "stepMs": ms, "maxRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "params": sum(p.numel() for p in net.parameters()), "threads": torch.get_num_threads(), "version": torch.__version__}))
`;

function torchAvailable(): boolean {
  const r = spawnSync("/usr/bin/python3", ["-c", "import torch"], { encoding: "utf8" });
  return r.status === 0;
}

function runTorch(cfg: Config): Result {
  const r = spawnSync("/usr/bin/python3", ["-c", TORCH, JSON.stringify(cfg)], { encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0) return { ...cfg, engine: "pytorch cpu", imagesPerSec: 0, stepMs: 0, maxRssMiB: 0, error: (r.stderr || r.stdout).trim().split("\n").at(-1) };
  const j = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Result & { threads: number; version: string };
  return { ...cfg, ...j, workers: j.threads, engine: `pytorch ${j.version} cpu (${j.threads} thread${j.threads === 1 ? "" : "s"})` };
}

function runChild(cfg: Config): Result {
  const script = fileURL();
  const r = spawnSync(process.execPath, [script, "--child", JSON.stringify(cfg)], { encoding: "utf8", timeout: 600_000, cwd: ROOT });
  const line = r.stdout.trim().split("\n").at(-1);
  if (r.status !== 0 || !line) return { ...cfg, engine: `tfjs ${cfg.backend}`, imagesPerSec: 0, stepMs: 0, maxRssMiB: 0, error: (r.stderr || r.stdout).trim().split("\n").at(-1) };
  return JSON.parse(line) as Result;
}

function fileURL(): string {
  return new URL(import.meta.url).pathname;
}

function nodeBackends(): Config["backend"][] {
  const out: Config["backend"][] = [];
  for (const pkg of ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"] as const) {
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", `await import("${pkg}")`], { cwd: ROOT, encoding: "utf8" });
    if (r.status === 0) out.push(pkg === "@tensorflow/tfjs-node" ? "tfjs-node" : "tfjs-node-gpu");
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      child: { type: "string" }, arch: { type: "string" }, batch: { type: "string" }, steps: { type: "string" }, warmup: { type: "string" },
      workers: { type: "string" }, size: { type: "string" }, "no-torch": { type: "boolean" }, json: { type: "boolean" },
    },
  });
  if (values.child) {
    const r = await child(JSON.parse(values.child) as Config);
    process.stdout.write(JSON.stringify(r) + "\n");
    process.exit(0); // worker threads and wasm are torn down with the process
  }
  const archs = (values.arch ?? "repvgg-mini,dbb-mini").split(",");
  const batch = Number(values.batch ?? 64), steps = Number(values.steps ?? 30), warmup = Number(values.warmup ?? 5), size = Number(values.size ?? 28);
  const workerCounts = (values.workers ?? "1,2").split(",").map(Number);
  const base = { batch, steps, warmup, size };
  const results: Result[] = [];
  const log = (r: Result) => {
    results.push(r);
    if (!values.json)
      process.stdout.write(`${(r.arch ?? "").padEnd(12)} ${(r.online ? "online" : "multi-branch").padEnd(13)} ${r.engine.padEnd(44)} ${r.error ? `error: ${r.error}` : `${r.imagesPerSec.toFixed(0).padStart(6)} img/s  ${r.stepMs.toFixed(1).padStart(7)} ms/step${r.peakBytes !== undefined ? `  peak tensors ${(r.peakBytes / 2 ** 20).toFixed(1)} MiB` : ""}  max RSS ${r.maxRssMiB.toFixed(0)} MiB`}\n`);
  };
  const torch = !values["no-torch"] && torchAvailable();
  const node = nodeBackends();
  if (!values.json) process.stdout.write(`train-bench: batch ${batch}, ${size}x${size}x1, ${steps} steps after ${warmup} warm-up; tfjs-node: ${node.length ? node.join(", ") : "not installed"}; pytorch: ${torch ? "yes" : "not available"}\n`);
  for (const arch of ["plain-mini", ...archs]) {
    for (const online of arch === "plain-mini" ? [false] : [false, true]) {
      for (const backend of node) log(runChild({ ...base, arch, online, backend, workers: 1 }));
      for (const workers of workerCounts) log(runChild({ ...base, arch, online, backend: "wasm", workers }));
      if (torch) log(runTorch({ ...base, arch, online, backend: "wasm", workers: 1 }));
    }
  }
  // Ratios measured in this run.
  const find = (arch: string, online: boolean, engine: (e: string) => boolean) => results.find((r) => r.arch === arch && !!r.online === online && engine(r.engine) && !r.error);
  const lines: string[] = [];
  const best = (arch: string, online: boolean) => results.filter((r) => r.arch === arch && !!r.online === online && r.engine.startsWith("tfjs wasm") && !r.error).sort((a, b) => b.imagesPerSec - a.imagesPerSec)[0];
  const plain = best("plain-mini", false);
  for (const arch of archs) {
    const m = best(arch, false), o = best(arch, true);
    const tm = find(arch, false, (e) => e.startsWith("pytorch")), to = find(arch, true, (e) => e.startsWith("pytorch"));
    if (m && o) lines.push(`${arch}: online / multi-branch (wasm, best worker count) = ${(o.imagesPerSec / m.imagesPerSec).toFixed(2)}x speed`);
    const m1 = find(arch, false, (e) => e.startsWith("tfjs wasm") && !e.includes("workers")), o1 = find(arch, true, (e) => e.startsWith("tfjs wasm") && !e.includes("workers"));
    const p1 = find("plain-mini", false, (e) => e.startsWith("tfjs wasm") && !e.includes("workers"));
    if (m1?.peakBytes && o1?.peakBytes && p1?.peakBytes) {
      const extraM = m1.peakBytes - p1.peakBytes, extraO = o1.peakBytes - p1.peakBytes;
      lines.push(`${arch}: peak step memory multi-branch ${(m1.peakBytes / 2 ** 20).toFixed(1)} MiB, online ${(o1.peakBytes / 2 ** 20).toFixed(1)} MiB, plain net ${(p1.peakBytes / 2 ** 20).toFixed(1)} MiB: online needs ${(100 * (1 - extraO / Math.max(1, extraM))).toFixed(0)}% less extra training memory`);
    }
    if (m && tm) lines.push(`${arch}: wasm multi-branch / pytorch cpu multi-branch = ${(m.imagesPerSec / tm.imagesPerSec).toFixed(3)}x`);
    if (o && to) lines.push(`${arch}: wasm online / pytorch cpu online = ${(o.imagesPerSec / to.imagesPerSec).toFixed(3)}x`);
    for (const b of node) {
      const n = find(arch, false, (e) => e.includes(b === "tfjs-node" ? "tfjs-node" : "tfjs-node-gpu"));
      if (n && tm) lines.push(`${arch}: ${b} multi-branch / pytorch cpu multi-branch = ${(n.imagesPerSec / tm.imagesPerSec).toFixed(3)}x`);
    }
  }
  if (plain) lines.push(`plain net (deploy structure) on wasm: ${plain.imagesPerSec.toFixed(0)} img/s`);
  const outDir = path.join(ROOT, "bench", "out");
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, "train-results.json"), JSON.stringify({ date: new Date().toISOString(), batch, size, steps, warmup, results, ratios: lines }, null, 2));
  if (values.json) process.stdout.write(JSON.stringify({ results, ratios: lines }, null, 2) + "\n");
  else process.stdout.write(lines.map((l) => `  ${l}`).join("\n") + `\nresults: bench/out/train-results.json\n`);
}

await main();
