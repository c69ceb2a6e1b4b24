// Training data: MNIST-format IDX files (Fashion-MNIST from Debian's dataset-fashion-mnist, MNIST,
// any folder holding the four files, gzipped or not), a folder of PNG images (ImageFolder layout),
// and a tiny synthetic set for tests and demos.
// Images stay as bytes; batches are converted to float32 pixel/255, NCHW (the exported model's input).
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { PNG } from "pngjs";
import { UsageError } from "../ir/errors.js";
import { Rng } from "./rng.js";

export interface Dataset {
  images: Uint8Array;
  labels: Uint8Array;
  n: number;
  /** [C, H, W] */
  shape: [number, number, number];
}

export interface DataSplits {
  name: string;
  /** Where the data came from (a folder, or "generated"). */
  source: string;
  train: Dataset;
  test: Dataset;
  classes: number;
  classNames?: string[];
}

export const FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/** Where Debian's dataset packages put their files; REPARAM_DATASETS overrides (tests). */
export function datasetsRoot(): string {
  return process.env.REPARAM_DATASETS ?? "/usr/share/datasets";
}

const FILES = {
  trainImages: "train-images-idx3-ubyte",
  trainLabels: "train-labels-idx1-ubyte",
  testImages: "t10k-images-idx3-ubyte",
  testLabels: "t10k-labels-idx1-ubyte",
};

function findFile(dir: string, base: string): string | undefined {
  for (const name of [base, `${base}.gz`, base.replace(/-idx(\d)-/, ".idx$1-"), `${base.replace(/-idx(\d)-/, ".idx$1-")}.gz`]) {
    const p = path.join(dir, name);
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

/** Parses an IDX file (gzipped or raw): unsigned-byte data only, as MNIST uses. */
export function readIdx(file: string): { dims: number[]; data: Uint8Array } {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new UsageError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = zlib.gunzipSync(bytes);
    } catch (e) {
      throw new UsageError(`${file}: corrupt gzip data (${(e as Error).message})`);
    }
  }
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw new UsageError(`${file}: not an IDX file (bad magic number)`);
  if (bytes[2] !== 0x08) throw new UsageError(`${file}: IDX element type 0x${bytes[2]!.toString(16)} is not supported (only unsigned bytes)`);
  const rank = bytes[3]!;
  if (rank < 1 || bytes.length < 4 + 4 * rank) throw new UsageError(`${file}: truncated IDX header`);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(bytes.readUInt32BE(4 + 4 * i));
  const size = dims.reduce((a, b) => a * b, 1);
  const offset = 4 + 4 * rank;
  if (bytes.length < offset + size) throw new UsageError(`${file}: truncated (header says ${size} bytes of data, file has ${bytes.length - offset})`);
  return { dims, data: new Uint8Array(bytes.buffer, bytes.byteOffset + offset, size) };
}

function readSplit(dir: string, imagesBase: string, labelsBase: string): Dataset {
  const imgFile = findFile(dir, imagesBase), lblFile = findFile(dir, labelsBase);
  if (!imgFile || !lblFile) throw new UsageError(`${dir}: missing ${!imgFile ? imagesBase : labelsBase}[.gz]`);
  const img = readIdx(imgFile), lbl = readIdx(lblFile);
  if (img.dims.length !== 3) throw new UsageError(`${imgFile}: expected images [N, H, W], got [${img.dims.join(", ")}]`);
  if (lbl.dims.length !== 1 || lbl.dims[0] !== img.dims[0]) throw new UsageError(`${lblFile}: ${lbl.dims[0]} labels for ${img.dims[0]} images`);
  return { images: img.data, labels: lbl.data, n: img.dims[0]!, shape: [1, img.dims[1]!, img.dims[2]!] };
}

function installHint(name: string): string {
  if (name === "fashion-mnist")
    return `install it with 'sudo apt-get install dataset-fashion-mnist' (Debian/Ubuntu: gzipped IDX files in ${path.join("/usr/share/datasets", name)}), or download the four IDX files from https://github.com/zalandoresearch/fashion-mnist into a folder and pass --data FOLDER`;
  return `download the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into a folder and pass --data FOLDER`;
}

/**
 * `spec`: "fashion-mnist" | "mnist" (from /usr/share/datasets/NAME), "synthetic[:N]" (generated), or a
 * folder holding the four IDX files.
 */
export function loadData(spec: string, options: { limit?: number; seed?: number } = {}): DataSplits {
  let splits: DataSplits;
  const syn = /^synthetic(?::(\d+))?$/.exec(spec);
  if (syn) {
    const n = syn[1] ? Number(syn[1]) : 512;
    splits = syntheticData(n, Math.max(64, n >> 2), options.seed ?? 1);
  } else {
    let dir = spec;
    let name = path.basename(path.resolve(spec));
    if (spec === "fashion-mnist" || spec === "mnist") {
      name = spec;
      dir = path.join(datasetsRoot(), spec);
      if (!fs.existsSync(dir)) throw new UsageError(`--data ${spec}: ${dir} not found; ${installHint(spec)}`);
    } else if (!fs.existsSync(spec) || !fs.statSync(spec).isDirectory()) {
      throw new UsageError(`--data '${spec}': expected fashion-mnist, mnist, synthetic[:N], a folder with IDX files (${Object.values(FILES).join(", ")}, optionally .gz) or a folder of PNG images (CLASS/*.png, or train/CLASS and test/CLASS)`);
    }
    if (!findFile(dir, FILES.trainImages) && !findFile(dir, FILES.testImages) && isImageFolder(dir)) {
      splits = loadImageFolder(dir);
      if (options.limit) {
        splits.train = take(splits.train, options.limit);
        splits.test = take(splits.test, options.limit);
      }
      return splits;
    }
    if (!findFile(dir, FILES.trainImages) && !findFile(dir, FILES.testImages)) throw new UsageError(`--data ${spec}: no IDX files in ${dir}; ${installHint(name)}`);
    const train = readSplit(dir, FILES.trainImages, FILES.trainLabels);
    const test = readSplit(dir, FILES.testImages, FILES.testLabels);
    let classes = 0;
    for (const l of [train.labels, test.labels]) for (let i = 0; i < l.length; i++) classes = Math.max(classes, l[i]! + 1);
    splits = { name, source: dir, train, test, classes, classNames: name === "fashion-mnist" ? FASHION_CLASSES : undefined };
  }
  if (options.limit) {
    splits.train = take(splits.train, options.limit);
    splits.test = take(splits.test, options.limit);
  }
  return splits;
}

// --- a folder of PNG images ------------------------------------------------------------------

const classDirs = (dir: string) =>
  fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
const pngs = (dir: string) => fs.readdirSync(dir).filter((f) => f.toLowerCase().endsWith(".png")).sort();

function isImageFolder(dir: string): boolean {
  const sub = classDirs(dir);
  if (sub.includes("train") && sub.includes("test")) return classDirs(path.join(dir, "train")).some((c) => pngs(path.join(dir, "train", c)).length > 0);
  return sub.some((c) => pngs(path.join(dir, c)).length > 0);
}

interface Decoded { pixels: Uint8Array; width: number; height: number; gray: boolean }

function decodePng(file: string): Decoded {
  let png: PNG;
  try {
    png = PNG.sync.read(fs.readFileSync(file));
  } catch (e) {
    throw new UsageError(`${file}: not a readable PNG (${(e as Error).message})`);
  }
  const rgba = png.data;
  let gray = true;
  for (let i = 0; i < rgba.length && gray; i += 4) if (rgba[i] !== rgba[i + 1] || rgba[i] !== rgba[i + 2]) gray = false;
  return { pixels: Uint8Array.from(rgba), width: png.width, height: png.height, gray };
}

/**
 * An ImageFolder-style data set: `DIR/train/CLASS/*.png` + `DIR/test/CLASS/*.png`, or `DIR/CLASS/*.png`
 * split deterministically (every fifth image of a class is a test image). Classes are the sorted
 * folder names; every image must have the same size (no resizing: the network's input is that size);
 * all-gray images give one channel, otherwise RGB.
 */
export function loadImageFolder(dir: string): DataSplits {
  const split = classDirs(dir).includes("train") && classDirs(dir).includes("test");
  const classes = classDirs(split ? path.join(dir, "train") : dir);
  if (classes.length < 2) throw new UsageError(`${dir}: an image folder needs at least two class folders`);
  const collect = (root: string, keep: (i: number) => boolean) => {
    const items: { file: string; label: number }[] = [];
    classes.forEach((c, label) => {
      const folder = path.join(root, c);
      if (!fs.existsSync(folder)) return;
      pngs(folder).forEach((f, i) => keep(i) && items.push({ file: path.join(folder, f), label }));
    });
    return items;
  };
  const trainItems = split ? collect(path.join(dir, "train"), () => true) : collect(dir, (i) => i % 5 !== 4);
  const testItems = split ? collect(path.join(dir, "test"), () => true) : collect(dir, (i) => i % 5 === 4);
  if (trainItems.length === 0 || testItems.length === 0) throw new UsageError(`${dir}: no PNG images for ${trainItems.length === 0 ? "training" : "testing"}`);
  const decoded = [...trainItems, ...testItems].map((it) => ({ ...it, img: decodePng(it.file) }));
  const { width, height } = decoded[0]!.img;
  const odd = decoded.find((d) => d.img.width !== width || d.img.height !== height);
  if (odd) throw new UsageError(`${odd.file}: ${odd.img.width}x${odd.img.height}, but the first image is ${width}x${height} (all images must have one size)`);
  const channels = decoded.every((d) => d.img.gray) ? 1 : 3;
  const toDataset = (items: typeof decoded): Dataset => {
    const size = channels * height * width;
    const images = new Uint8Array(items.length * size);
    const labels = new Uint8Array(items.length);
    items.forEach((d, n) => {
      labels[n] = d.label;
      for (let c = 0; c < channels; c++)
        for (let p = 0; p < height * width; p++) images[n * size + c * height * width + p] = d.img.pixels[p * 4 + c]!;
    });
    return { images, labels, n: items.length, shape: [channels, height, width] };
  };
  return {
    name: path.basename(path.resolve(dir)), source: dir,
    train: toDataset(decoded.slice(0, trainItems.length)), test: toDataset(decoded.slice(trainItems.length)),
    classes: classes.length, classNames: classes,
  };
}

function take(d: Dataset, n: number): Dataset {
  if (n >= d.n) return d;
  const size = d.shape[0] * d.shape[1] * d.shape[2];
  return { ...d, n, images: d.images.subarray(0, n * size), labels: d.labels.subarray(0, n) };
}

/**
 * Ten texture classes on 16×16 grayscale (stripes of two periods and three orientations,
 * checkerboard, disk, ring, cross), random phase, contrast and noise: learnable by a small conv net in
 * a few hundred steps, with no position cue a global average pool would lose.
 */
export function syntheticData(nTrain: number, nTest: number, seed = 1, size = 16): DataSplits {
  const rng = new Rng(seed * 7919 + 17);
  const make = (n: number): Dataset => {
    const images = new Uint8Array(n * size * size);
    const labels = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const c = i % 10;
      labels[i] = c;
      const phase = Math.floor(rng.next() * 8), contrast = 0.6 + 0.4 * rng.next();
      const cx = size / 2 - 0.5 + (rng.next() - 0.5) * 3, cy = size / 2 - 0.5 + (rng.next() - 0.5) * 3;
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const r = Math.hypot(x - cx, y - cy);
          let v: number;
          switch (c) {
            case 0: v = ((y + phase) >> 1) & 1; break;
            case 1: v = ((x + phase) >> 1) & 1; break;
            case 2: v = ((x + y + phase) >> 1) & 1; break;
            case 3: v = ((x - y + 64 + phase) >> 1) & 1; break;
            case 4: v = (((x + phase) >> 1) ^ ((y + phase) >> 1)) & 1; break;
            case 5: v = r < size / 4 ? 1 : 0; break;
            case 6: v = Math.abs(r - size / 3.2) < 1.2 ? 1 : 0; break;
            case 7: v = Math.abs(x - cx) < 1.5 || Math.abs(y - cy) < 1.5 ? 1 : 0; break;
            case 8: v = ((y + phase) >> 2) & 1; break;
            default: v = ((x + phase) >> 2) & 1; break;
          }
          const noisy = v * contrast * 255 + (rng.next() - 0.5) * 60 + 30;
          images[i * size * size + y * size + x] = Math.max(0, Math.min(255, Math.round(noisy)));
        }
    }
    return { images, labels, n, shape: [1, size, size] };
  };
  return { name: "synthetic", source: "generated", train: make(nTrain), test: make(nTest), classes: 10 };
}

/** Images [start, start+n) of `order` (or in order) as float32 NCHW pixel/255, and their labels. */
export function batchOf(d: Dataset, indices: ArrayLike<number>): { x: Float32Array; y: Int32Array } {
  const size = d.shape[0] * d.shape[1] * d.shape[2];
  const x = new Float32Array(indices.length * size);
  const y = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i]!;
    const src = d.images.subarray(j * size, (j + 1) * size);
    for (let k = 0; k < size; k++) x[i * size + k] = src[k]! / 255;
    y[i] = d.labels[j]!;
  }
  return { x, y };
}

/** A permutation of 0..n-1 that depends only on (seed, epoch): resumed runs see the same order. */
export function epochOrder(n: number, seed: number, epoch: number): Uint32Array {
  const rng = new Rng((seed * 1_000_003 + epoch * 7_919 + 12_345) >>> 0);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order;
}
