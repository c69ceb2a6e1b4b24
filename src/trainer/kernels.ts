// Training kernels the tfjs wasm backend lacks, built from its forward kernels:
//   Conv2DBackpropFilter                 dW = conv(xᵀ, dyᵀ) with dilation = stride (see below)
//   DepthwiseConv2dNativeBackpropFilter  the same per channel, as one depthwise conv over N·C channels
//   DepthwiseConv2dNativeBackpropInput   dx = depthwise conv of the zero-dilated dy with the flipped kernel
// and faster Conv2DBackpropInput / AvgPoolGrad (the backend's own are scalar loops): a conv of dy with the flipped,
// transposed kernel — at stride 1 directly, at stride s as s² polyphase convs (below). Every kernel
// here is checked against the cpu backend in
// test/trainer-kernels.test.ts (strides 1 and 2, explicit asymmetric pads, odd sizes).
//
// Filter gradient as a convolution (NHWC, filter HWIO, stride s, pads pt/pl):
//   dW[a,b,c,o] = Σ_{n,i,j} x_pad[n, i·s + a, j·s + b, c] · dy[n,i,j,o]
// Read with c as the batch, n as the input channel and (i,j) as the kernel taps: it is a conv of
// X' = x transposed to [C,H,W,N] with the filter F' = dy transposed to [OH,OW,N,O], at stride 1,
// dilation s, the same pads; the output is [C, ≥KH, ≥KW, O] (rows past KH exist when the forward
// conv dropped the last input rows) and is cropped, then transposed back to [KH,KW,C,O].
//
// Input gradient at stride s by phases (per axis; u = v·s + ρ indexes the padded input):
//   dx_pad[v·s + ρ] = Σ_t dy[v − t] · W[ρ + s·t]
// i.e. for each phase ρ a stride-1 conv of dy with the flipped sub-kernel W[ρ::s] (top pad T−1),
// s² convs whose taps add up to one forward conv (zero-dilating dy instead costs s² times that);
// the phases are interleaved by stacking on inner axes and reshaping, then the pads are cropped.
import * as tf from "@tensorflow/tfjs";

type Info = tf.TensorInfo;
type Attrs = Record<string, unknown>;
type Pads4 = [[number, number], [number, number], [number, number], [number, number]];

/** Runs a registered kernel of `backendName` directly (no tape, no engine bookkeeping). */
class KernelRunner {
  private readonly temps: Info[] = [];
  constructor(private readonly backend: tf.KernelBackend, private readonly backendName: string) {}

  run(name: string, inputs: Record<string, Info>, attrs: Attrs = {}, keep = false): Info {
    const k = tf.getKernel(name, this.backendName);
    if (!k) throw new Error(`${this.backendName} backend has no ${name} kernel`);
    const out = k.kernelFunc({ inputs: inputs as tf.NamedTensorInfoMap, backend: this.backend, attrs: attrs as tf.NamedAttrMap }) as Info;
    if (!keep) this.temps.push(out);
    return out;
  }

  /** Frees every intermediate; the result was produced with keep = true. */
  dispose(): void {
    for (const t of this.temps) this.backend.disposeData(t.dataId);
    this.temps.length = 0;
  }
}

interface ConvGeometry {
  kh: number; kw: number; sh: number; sw: number;
  top: number; left: number; bottom: number; right: number;
  inH: number; inW: number; outH: number; outW: number;
}

function geometry(xShape: number[], filterShape: number[], strides: unknown, pad: unknown, dimRoundingMode: unknown, dilations: unknown, depthwise: boolean, dataFormat?: unknown): ConvGeometry {
  const fmt = tf.backend_util.convertConv2DDataFormat((dataFormat as "NHWC" | "NCHW" | undefined) ?? "NHWC");
  if (fmt !== "channelsLast") throw new Error("trainer kernels support NHWC only");
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number], filterShape as [number, number, number, number],
    strides as [number, number] | number, (dilations ?? 1) as [number, number] | number,
    pad as "valid", dimRoundingMode as "floor" | undefined, depthwise,
  );
  if (info.dilationHeight !== 1 || info.dilationWidth !== 1) throw new Error("trainer kernels: dilated convolutions have no gradient kernel");
  return {
    kh: info.filterHeight, kw: info.filterWidth, sh: info.strideHeight, sw: info.strideWidth,
    top: info.padInfo.top, left: info.padInfo.left, bottom: info.padInfo.bottom, right: info.padInfo.right,
    inH: info.inHeight, inW: info.inWidth, outH: info.outHeight, outW: info.outWidth,
  };
}

/**
 * Stride-1 conv of dy that gives dx (stride-1 forward conv): the flipped kernel with pads (k−1−p) at the top/left;
 * bottom/right pads make the output exactly H×W. A negative one (the forward pad reaches past the last
 * window) is computed as pad 0 and the extra output rows/columns are cropped.
 */
function transposedPads(g: ConvGeometry, dh: number, dw: number): { pads: Pads4; cropH: number; cropW: number } {
  const top = g.kh - 1 - g.top, left = g.kw - 1 - g.left;
  const bottom = g.inH - dh - top + g.kh - 1, right = g.inW - dw - left + g.kw - 1;
  if (top < 0 || left < 0) throw new Error("trainer kernels: pads larger than the kernel are not supported");
  return { pads: [[0, 0], [top, Math.max(0, bottom)], [left, Math.max(0, right)], [0, 0]], cropH: Math.max(0, -bottom), cropW: Math.max(0, -right) };
}

/** Crops the [N, H+cropH, W+cropW, C] result of a transposed conv to H×W. */
function uncrop(r: KernelRunner, y: Info, cropH: number, cropW: number): Info {
  if (cropH === 0 && cropW === 0) return y;
  const [n, h, w, c] = y.shape as [number, number, number, number];
  return r.run("Slice", { x: y }, { begin: [0, 0, 0, 0], size: [n, h - cropH, w - cropW, c] }, true);
}

/**
 * dx for a strided conv (dense or depthwise) by polyphase decomposition; see the header. `filter` is
 * HWIO [KH,KW,C,O] (dense) or [KH,KW,C,1] (depthwise); dy is [N,OH,OW,O].
 */
function polyphaseBackpropInput(r: KernelRunner, dy: Info, filter: Info, g: ConvGeometry, inputShape: number[], depthwise: boolean): Info {
  const [n, h, w, c] = inputShape as [number, number, number, number];
  const hp = h + g.top + g.bottom, wp = w + g.left + g.right;
  const vh = Math.ceil(hp / g.sh), vw = Math.ceil(wp / g.sw);
  const rows: Info[] = [];
  for (let rh = 0; rh < g.sh; rh++) {
    const cols: Info[] = [];
    const th = Math.ceil(Math.max(0, g.kh - rh) / g.sh);
    for (let rw = 0; rw < g.sw; rw++) {
      const tw = Math.ceil(Math.max(0, g.kw - rw) / g.sw);
      if (th === 0 || tw === 0) {
        cols.push(r.run("Fill", {}, { shape: [n, vh, vw, c], value: 0, dtype: "float32" }));
        continue;
      }
      const sub = r.run("StridedSlice", { x: filter }, {
        begin: [rh, rw, 0, 0], end: [g.kh, g.kw, filter.shape[2]!, filter.shape[3]!], strides: [g.sh, g.sw, 1, 1],
        beginMask: 0, endMask: 0, ellipsisMask: 0, newAxisMask: 0, shrinkAxisMask: 0,
      }); // [th, tw, C, O]
      const flipped = r.run("Reverse", { x: sub }, { dims: [0, 1] });
      const pad: Pads4 = [[0, 0], [th - 1, vh - g.outH], [tw - 1, vw - g.outW], [0, 0]];
      cols.push(depthwise
        ? r.run("DepthwiseConv2dNative", { x: dy, filter: flipped }, { strides: [1, 1], dilations: [1, 1], pad })
        : r.run("Conv2D", { x: dy, filter: r.run("Transpose", { x: flipped }, { perm: [0, 1, 3, 2] }) }, { strides: [1, 1], dilations: [1, 1], pad, dataFormat: "NHWC" }));
    }
    const packed = g.sw === 1 ? cols[0]! : r.run("Pack", cols as unknown as Record<string, Info>, { axis: 3 }); // [N,vh,vw,sw,C]
    rows.push(r.run("Reshape", { x: packed }, { shape: [n, vh, vw * g.sw, c] }));
  }
  const packed = g.sh === 1 ? rows[0]! : r.run("Pack", rows as unknown as Record<string, Info>, { axis: 2 }); // [N,vh,sh,W',C]
  const full = r.run("Reshape", { x: packed }, { shape: [n, vh * g.sh, vw * g.sw, c] });
  return r.run("Slice", { x: full }, { begin: [0, g.top, g.left, 0], size: [n, h, w, c] }, true);
}

function conv2DBackpropFilter(backendName: string) {
  return (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): Info => {
    const { x, dy } = args.inputs as { x: Info; dy: Info };
    const a = (args.attrs ?? {}) as Attrs;
    const filterShape = a.filterShape as [number, number, number, number];
    const g = geometry(x.shape, filterShape, a.strides, a.pad, a.dimRoundingMode, 1, false, a.dataFormat);
    const r = new KernelRunner(args.backend as tf.KernelBackend, backendName);
    try {
      const [kh, kw, c, o] = filterShape;
      const xt = r.run("Transpose", { x }, { perm: [3, 1, 2, 0] }); // [C,H,W,N]
      const dyt = r.run("Transpose", { x: dy }, { perm: [1, 2, 0, 3] }); // [OH,OW,N,O]
      const full = r.run("Conv2D", { x: xt, filter: dyt }, {
        strides: [1, 1], dilations: [g.sh, g.sw], pad: [[0, 0], [g.top, g.bottom], [g.left, g.right], [0, 0]], dataFormat: "NHWC",
      }); // [C, ≥KH, ≥KW, O]
      const crop = full.shape[1] === kh && full.shape[2] === kw ? full : r.run("Slice", { x: full }, { begin: [0, 0, 0, 0], size: [c, kh, kw, o] });
      return r.run("Transpose", { x: crop }, { perm: [1, 2, 0, 3] }, true); // [KH,KW,C,O]
    } finally {
      r.dispose();
    }
  };
}

function conv2DBackpropInput(backendName: string) {
  return (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): Info => {
    const { dy, filter } = args.inputs as { dy: Info; filter: Info };
    const a = (args.attrs ?? {}) as Attrs;
    const inputShape = a.inputShape as number[];
    const g = geometry(inputShape, filter.shape, a.strides, a.pad, a.dimRoundingMode, 1, false, a.dataFormat);
    const r = new KernelRunner(args.backend as tf.KernelBackend, backendName);
    try {
      if (g.sh > 1 || g.sw > 1) return polyphaseBackpropInput(r, dy, filter, g, inputShape, false);
      const d = dy;
      const flipped = r.run("Reverse", { x: filter }, { dims: [0, 1] });
      const kt = r.run("Transpose", { x: flipped }, { perm: [0, 1, 3, 2] }); // [KH,KW,O,C]
      const { pads, cropH, cropW } = transposedPads(g, d.shape[1]!, d.shape[2]!);
      const y = r.run("Conv2D", { x: d, filter: kt }, { strides: [1, 1], dilations: [1, 1], pad: pads, dataFormat: "NHWC" }, cropH === 0 && cropW === 0);
      return uncrop(r, y, cropH, cropW);
    } finally {
      r.dispose();
    }
  };
}

function depthwiseBackpropFilter(backendName: string) {
  return (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): Info => {
    const { x, dy } = args.inputs as { x: Info; dy: Info };
    const a = (args.attrs ?? {}) as Attrs;
    const filterShape = a.filterShape as [number, number, number, number];
    if (filterShape[3] !== 1) throw new Error("trainer kernels: depthwise channel multiplier must be 1");
    const g = geometry(x.shape, filterShape, a.strides, a.pad, a.dimRoundingMode, a.dilations, true);
    const r = new KernelRunner(args.backend as tf.KernelBackend, backendName);
    try {
      const [n, h, w, c] = x.shape as [number, number, number, number];
      const [, oh, ow] = dy.shape as [number, number, number, number];
      const [kh, kw] = filterShape;
      // Channels (n, c) side by side: one depthwise conv over N·C channels whose kernel is dy.
      const xt = r.run("Reshape", { x: r.run("Transpose", { x }, { perm: [1, 2, 0, 3] }) }, { shape: [1, h, w, n * c] });
      const dyt = r.run("Reshape", { x: r.run("Transpose", { x: dy }, { perm: [1, 2, 0, 3] }) }, { shape: [oh, ow, n * c, 1] });
      const full = r.run("DepthwiseConv2dNative", { x: xt, filter: dyt }, {
        strides: [1, 1], dilations: [g.sh, g.sw], pad: [[0, 0], [g.top, g.bottom], [g.left, g.right], [0, 0]],
      }); // [1, ≥KH, ≥KW, N·C]
      const crop = full.shape[1] === kh && full.shape[2] === kw ? full : r.run("Slice", { x: full }, { begin: [0, 0, 0, 0], size: [1, kh, kw, n * c] });
      const perSample = r.run("Reshape", { x: crop }, { shape: [kh, kw, n, c] });
      const summed = r.run("Sum", { x: perSample }, { axis: [2], keepDims: false });
      return r.run("Reshape", { x: summed }, { shape: [kh, kw, c, 1] }, true);
    } finally {
      r.dispose();
    }
  };
}

/** dx of a depthwise conv (multiplier 1) with HWIO filter [KH,KW,C,1]. */
function depthwiseInputGrad(r: KernelRunner, dy: Info, filter: Info, g: ConvGeometry, inputShape: number[]): Info {
  if (g.sh > 1 || g.sw > 1) return polyphaseBackpropInput(r, dy, filter, g, inputShape, true);
  const flipped = r.run("Reverse", { x: filter }, { dims: [0, 1] });
  const { pads, cropH, cropW } = transposedPads(g, dy.shape[1]!, dy.shape[2]!);
  const y = r.run("DepthwiseConv2dNative", { x: dy, filter: flipped }, { strides: [1, 1], dilations: [1, 1], pad: pads }, cropH === 0 && cropW === 0);
  return uncrop(r, y, cropH, cropW);
}

function depthwiseBackpropInput(backendName: string) {
  return (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): Info => {
    const { dy, filter } = args.inputs as { dy: Info; filter: Info };
    const a = (args.attrs ?? {}) as Attrs;
    if (filter.shape[3] !== 1) throw new Error("trainer kernels: depthwise channel multiplier must be 1");
    const g = geometry(a.inputShape as number[], filter.shape, a.strides, a.pad, a.dimRoundingMode, a.dilations, true);
    const r = new KernelRunner(args.backend as tf.KernelBackend, backendName);
    try {
      return depthwiseInputGrad(r, dy, filter, g, a.inputShape as number[]);
    } finally {
      r.dispose();
    }
  };
}

/**
 * AvgPoolGrad for unpadded pools (the trainer's): the transposed depthwise conv with taps 1/(kh·kw).
 * Padded pools (whose divisor varies at the border) go to the backend's own kernel.
 */
function avgPoolGrad(backendName: string, fallback: tf.KernelFunc | undefined) {
  return (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): Info => {
    const { dy, input } = args.inputs as { dy: Info; input: Info };
    const a = (args.attrs ?? {}) as Attrs;
    const [kh, kw] = typeof a.filterSize === "number" ? [a.filterSize, a.filterSize] : (a.filterSize as [number, number]);
    const c = input.shape[3]!;
    const g = geometry(input.shape, [kh, kw, c, 1], a.strides, a.pad, a.dimRoundingMode, 1, true);
    if (g.top || g.left || g.bottom || g.right) {
      if (!fallback) throw new Error("AvgPoolGrad with padding is not supported");
      return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
    }
    const r = new KernelRunner(args.backend as tf.KernelBackend, backendName);
    try {
      const filter = r.run("Fill", {}, { shape: [kh, kw, c, 1], value: 1 / (kh * kw), dtype: "float32" });
      return depthwiseInputGrad(r, dy, filter, g, input.shape);
    } finally {
      r.dispose();
    }
  };
}

/** The kernels this module provides, by name. */
export const TRAINING_KERNELS = ["Conv2DBackpropFilter", "Conv2DBackpropInput", "DepthwiseConv2dNativeBackpropFilter", "DepthwiseConv2dNativeBackpropInput", "AvgPoolGrad"] as const;

/**
 * Registers the composed gradient kernels for `backendName` (wasm by default). Kernels the backend
 * already has are replaced only when `replace` lists them (Conv2DBackpropInput and AvgPoolGrad on
 * wasm: the backend's own are scalar loops, 5–20x slower than the composed XNNPACK convs).
 */
export function registerTrainingKernels(backendName = "wasm", replace: readonly string[] = ["Conv2DBackpropInput", "AvgPoolGrad"]): string[] {
  const impl: Record<string, (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }) => Info> = {
    Conv2DBackpropFilter: conv2DBackpropFilter(backendName),
    Conv2DBackpropInput: conv2DBackpropInput(backendName),
    DepthwiseConv2dNativeBackpropFilter: depthwiseBackpropFilter(backendName),
    DepthwiseConv2dNativeBackpropInput: depthwiseBackpropInput(backendName),
    AvgPoolGrad: avgPoolGrad(backendName, tf.getKernel("AvgPoolGrad", backendName)?.kernelFunc),
  };
  const registered: string[] = [];
  for (const name of TRAINING_KERNELS) {
    const existing = tf.getKernel(name, backendName);
    if (existing && !(existing as { composed?: boolean }).composed) {
      if (!replace.includes(name)) continue;
      tf.unregisterKernel(name, backendName);
    } else if (existing) continue; // already ours
    const config = { kernelName: name, backendName, kernelFunc: impl[name]! as unknown as tf.KernelFunc, composed: true };
    tf.registerKernel(config);
    registered.push(name);
  }
  return registered;
}
