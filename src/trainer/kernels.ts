// Training kernels the tfjs wasm backend lacks, built from its forward kernels:
//   Conv2DBackpropFilter                 dW = conv(xᵀ, dyᵀ) with dilation = stride (see below)
//   DepthwiseConv2dNativeBackpropFilter  the same per channel, as one depthwise conv over N·C channels
//   DepthwiseConv2dNativeBackpropInput   dx = depthwise conv of the zero-dilated dy with the flipped kernel
// and a faster Conv2DBackpropInput (the backend's own is a scalar loop): dense conv of the dilated dy
// with the flipped, transposed kernel. Every kernel here is checked against the cpu backend in
// test/trainer-kernels.test.ts (strides 1 and 2, explicit asymmetric pads, odd sizes).
//
// Filter gradient as a convolution (NHWC, filter HWIO, stride s, pads pt/pl):
//   dW[a,b,c,o] = Σ_{n,i,j} x_pad[n, i·s + a, j·s + b, c] · dy[n,i,j,o]
// Read with c as the batch, n as the input channel and (i,j) as the kernel taps: it is a conv of
// X' = x transposed to [C,H,W,N] with the filter F' = dy transposed to [OH,OW,N,O], at stride 1,
// dilation s, the same pads; the output is [C, ≥KH, ≥KW, O] (rows past KH exist when the forward
// conv dropped the last input rows) and is cropped, then transposed back to [KH,KW,C,O].
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
 * dy [N,OH,OW,C] with (s−1) zeros between neighbours: [N,(OH−1)·sh+1,(OW−1)·sw+1,C]. Returns dy
 * itself when both strides are 1.
 */
function dilate(r: KernelRunner, dy: Info, sh: number, sw: number): Info {
  if (sh === 1 && sw === 1) return dy;
  const [n, oh, ow, c] = dy.shape as [number, number, number, number];
  const six = r.run("Reshape", { x: dy }, { shape: [n, oh, 1, ow, 1, c] });
  const padded = r.run("PadV2", { x: six }, { paddings: [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]], constantValue: 0 });
  const flat = r.run("Reshape", { x: padded }, { shape: [n, oh * sh, ow * sw, c] });
  return r.run("Slice", { x: flat }, { begin: [0, 0, 0, 0], size: [n, (oh - 1) * sh + 1, (ow - 1) * sw + 1, c] });
}

/**
 * Stride-1 conv of the dilated dy that gives dx: the flipped kernel with pads (k−1−p) at the top/left;
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
      const d = dilate(r, dy, g.sh, g.sw);
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

function depthwiseBackpropInput(backendName: string) {
  return (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): Info => {
    const { dy, filter } = args.inputs as { dy: Info; filter: Info };
    const a = (args.attrs ?? {}) as Attrs;
    if (filter.shape[3] !== 1) throw new Error("trainer kernels: depthwise channel multiplier must be 1");
    const g = geometry(a.inputShape as number[], filter.shape, a.strides, a.pad, a.dimRoundingMode, a.dilations, true);
    const r = new KernelRunner(args.backend as tf.KernelBackend, backendName);
    try {
      const d = dilate(r, dy, g.sh, g.sw);
      const flipped = r.run("Reverse", { x: filter }, { dims: [0, 1] });
      const { pads, cropH, cropW } = transposedPads(g, d.shape[1]!, d.shape[2]!);
      const y = r.run("DepthwiseConv2dNative", { x: d, filter: flipped }, { strides: [1, 1], dilations: [1, 1], pad: pads }, cropH === 0 && cropW === 0);
      return uncrop(r, y, cropH, cropW);
    } finally {
      r.dispose();
    }
  };
}

/** The kernels this module provides, by name. */
export const TRAINING_KERNELS = ["Conv2DBackpropFilter", "Conv2DBackpropInput", "DepthwiseConv2dNativeBackpropFilter", "DepthwiseConv2dNativeBackpropInput"] as const;

/**
 * Registers the composed gradient kernels for `backendName` (wasm by default). Kernels the backend
 * already has are replaced only when `replace` lists them (Conv2DBackpropInput on wasm: the
 * backend's own is a scalar loop, ~10x slower than the composed XNNPACK conv).
 */
export function registerTrainingKernels(backendName = "wasm", replace: readonly string[] = ["Conv2DBackpropInput"]): string[] {
  const impl: Record<string, (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }) => Info> = {
    Conv2DBackpropFilter: conv2DBackpropFilter(backendName),
    Conv2DBackpropInput: conv2DBackpropInput(backendName),
    DepthwiseConv2dNativeBackpropFilter: depthwiseBackpropFilter(backendName),
    DepthwiseConv2dNativeBackpropInput: depthwiseBackpropInput(backendName),
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
