// Contractions and windows: MatMul, Gemm, Einsum, Conv, ConvTranspose, pooling, BatchNormalization.
// Sums run in float64; integer inputs are accepted only where every partial sum provably stays
// below 2^53 (so the result is exact).
import { DataType, dtypeName } from "../ir/dtype.js";
import { gemmAccumulateParallel as gemmAccumulate, gemmWorkspace } from "../algebra/gemm-parallel.js";
import type { Node } from "../ir/graph.js";
import {
  alloc, broadcastDims, broadcastStrides, checkWork, expandData, isBool, isFloat, isInt, newData, offsets, product, notEvaluated, recycle, sameDims,
  sizeOf, stridedBinary, stridesOf, takeOverwritable, value, type Value,
} from "./value.js";

function need(v: Value | undefined, op: string, i = 0): Value {
  if (!v) notEvaluated(`${op} input ${i} is missing`);
  return v;
}

function maxAbs(v: Value): number {
  let m = 0;
  for (let i = 0; i < v.data.length; i++) {
    const a = Math.abs(v.data[i]!);
    if (a > m) m = a;
  }
  return m;
}

/** Integer contractions: refuse unless every partial sum stays exact. */
function checkIntBound(op: string, vs: Value[], terms: number): void {
  if (!isInt(vs[0]!.dtype)) return;
  let bound = terms;
  for (const v of vs) bound *= maxAbs(v);
  if (!(bound <= Number.MAX_SAFE_INTEGER)) notEvaluated(`integer ${op} could exceed 2^53 in its sums`);
}

function numeric(op: string, ...vs: Value[]): number {
  const t = vs[0]!.dtype;
  for (const v of vs) {
    if (v.dtype !== t) notEvaluated(`${op} mixes ${dtypeName(t)} and ${dtypeName(v.dtype)}`);
    if (isBool(v.dtype)) notEvaluated(`${op} on bool`);
  }
  return t;
}

/** C[co + i*N + j] += sum_k A[ao + i*ars + k*acs] * B[bo + k*brs + j*bcs]. */
function mm(A: Float64Array, ao: number, ars: number, acs: number, B: Float64Array, bo: number, brs: number, bcs: number, C: Float64Array, co: number, M: number, K: number, N: number): void {
  for (let i = 0; i < M; i++) {
    const cRow = co + i * N;
    for (let k = 0; k < K; k++) {
      const aik = A[ao + i * ars + k * acs]!;
      const bRow = bo + k * brs;
      if (bcs === 1) for (let j = 0; j < N; j++) C[cRow + j] += aik * B[bRow + j]!;
      else for (let j = 0; j < N; j++) C[cRow + j] += aik * B[bRow + j * bcs]!;
    }
  }
}

export function evalMatMul(ins: (Value | undefined)[]): Value[] {
  const a = need(ins[0], "MatMul", 0);
  const b = need(ins[1], "MatMul", 1);
  const t = numeric("MatMul", a, b);
  if (a.dims.length === 0 || b.dims.length === 0) notEvaluated("MatMul of a scalar");
  const A = a.dims.length === 1 ? [1, a.dims[0]!] : a.dims;
  const B = b.dims.length === 1 ? [b.dims[0]!, 1] : b.dims;
  const M = A[A.length - 2]!;
  const K = A[A.length - 1]!;
  const N = B[B.length - 1]!;
  if (B[B.length - 2] !== K) notEvaluated(`MatMul of [${a.dims}] and [${b.dims}]`);
  const batchA = A.slice(0, -2);
  const batchB = B.slice(0, -2);
  const batch = broadcastDims([batchA, batchB]);
  const dims = [...batch];
  if (a.dims.length !== 1) dims.push(M);
  if (b.dims.length !== 1) dims.push(N);
  const out = alloc(t, dims);
  const nb = product(batch);
  checkWork(nb * M * N * K, "MatMul", MAX_MATMUL_WORK);
  checkIntBound("MatMul", [a, b], K);
  const offA = offsets(batch, broadcastStrides(batchA, batch, M * K));
  const offB = offsets(batch, broadcastStrides(batchB, batch, K * N));
  for (let i = 0; i < nb; i++) gemmAccumulate(a.data, offA[i]!, b.data, offB[i]!, out.data, i * M * N, M, K, N);
  return [out];
}

export function evalGemm(node: Node, ins: (Value | undefined)[]): Value[] {
  const a = need(ins[0], "Gemm", 0);
  const b = need(ins[1], "Gemm", 1);
  const c = ins[2];
  const t = numeric("Gemm", a, b, ...(c ? [c] : []));
  if (a.dims.length !== 2 || b.dims.length !== 2) notEvaluated("Gemm needs 2-D A and B");
  const ta = node.int("transA", 0) !== 0;
  const tb = node.int("transB", 0) !== 0;
  const [M, K] = ta ? [a.dims[1]!, a.dims[0]!] : [a.dims[0]!, a.dims[1]!];
  const [K2, N] = tb ? [b.dims[1]!, b.dims[0]!] : [b.dims[0]!, b.dims[1]!];
  if (K !== K2) notEvaluated(`Gemm of [${a.dims}] and [${b.dims}] (transA=${+ta}, transB=${+tb})`);
  const alpha = node.float("alpha", 1);
  const beta = node.float("beta", 1);
  const out = alloc(t, [M, N]);
  checkWork(M * N * K, "Gemm");
  if (isInt(t) && (alpha !== 1 || beta !== 1)) notEvaluated("integer Gemm with alpha/beta");
  checkIntBound("Gemm", [a, b], K + 1);
  mm(a.data, 0, ta ? 1 : K, ta ? M : 1, b.data, 0, tb ? 1 : N, tb ? K : 1, out.data, 0, M, K, N);
  const d = out.data;
  if (alpha !== 1) for (let i = 0; i < d.length; i++) d[i] = alpha * d[i]!;
  if (c && beta !== 0) {
    if (!sameDims(broadcastDims([c.dims, [M, N]]), [M, N])) notEvaluated(`Gemm C of shape [${c.dims}] does not broadcast to [${M},${N}]`);
    const cd = expandData(c, [M, N]);
    for (let i = 0; i < d.length; i++) d[i] = d[i]! + beta * cd[i]!;
  }
  return [out];
}

// --- Einsum ----------------------------------------------------------------------------------

/**
 * Einsum without ellipsis or repeated indices. An operand's size-1 axis broadcasts against the
 * index's size elsewhere (as PyTorch and onnxruntime do: OREPA writes `oihw,hw->oihw` with h = 1
 * on one side). Every output element is Σ over the summed indices, row-major in the order they
 * first appear, of the operands' product taken left to right; two operands run as batched matrix
 * products (gemm.ts: the same sums in the same order), others as an index loop.
 */
export function evalEinsum(node: Node, ins: (Value | undefined)[]): Value[] {
  const eq = node.string("equation", "").replace(/\s+/g, "");
  if (!eq) notEvaluated("Einsum without an equation");
  if (eq.includes(".")) notEvaluated("Einsum equation with ellipsis");
  const vs = ins.map((v, i) => need(v, "Einsum", i));
  if (vs.length === 0) notEvaluated("Einsum with no inputs");
  const t = numeric("Einsum", ...vs);
  const arrow = eq.indexOf("->");
  const terms = (arrow >= 0 ? eq.slice(0, arrow) : eq).split(",");
  if (terms.length !== vs.length) notEvaluated(`Einsum equation '${eq}' names ${terms.length} operands, got ${vs.length}`);
  const size = new Map<string, number>();
  const count = new Map<string, number>();
  terms.forEach((term, k) => {
    if (!/^[A-Za-z]*$/.test(term)) notEvaluated(`Einsum term '${term}'`);
    const v = vs[k]!;
    if (term.length !== v.dims.length) notEvaluated(`Einsum term '${term}' for an operand of rank ${v.dims.length}`);
    if (new Set(term).size !== term.length) notEvaluated(`Einsum term '${term}' repeats an index (diagonal)`);
    [...term].forEach((l, i) => {
      const d = v.dims[i]!;
      const known = size.get(l);
      if (known !== undefined && known !== d && known !== 1 && d !== 1) notEvaluated(`Einsum index '${l}' has sizes ${known} and ${d}`);
      size.set(l, known === undefined || known === 1 ? d : known);
      count.set(l, (count.get(l) ?? 0) + 1);
    });
  });
  let outLetters: string[];
  if (arrow >= 0) {
    const rhs = eq.slice(arrow + 2);
    if (!/^[A-Za-z]*$/.test(rhs) || new Set(rhs).size !== rhs.length) notEvaluated(`Einsum output '${rhs}'`);
    outLetters = [...rhs];
    for (const l of outLetters) if (!size.has(l)) notEvaluated(`Einsum output index '${l}' is in no input`);
  } else {
    outLetters = [...count.entries()].filter(([, c]) => c === 1).map(([l]) => l);
    if (outLetters.some((l) => l === l.toUpperCase()) && outLetters.some((l) => l === l.toLowerCase()))
      notEvaluated("Einsum implicit output mixing upper and lower case (order differs between implementations)");
    outLetters.sort();
  }
  const sumLetters = [...size.keys()].filter((l) => !outLetters.includes(l));
  const outDims = outLetters.map((l) => size.get(l)!);
  // Not zero-filled: each path below writes every element (zeros where it sums nothing). A product
  // with nothing summed may write over an operand laid out as the output (read for the last time),
  // unless the other operand reads the same data in another order (X·Xᵀ as `ij,ji->ij`: an element
  // written would be read again).
  const inPlace = vs.length === 2 && sumLetters.length === 0 && vs[0]!.data.buffer !== vs[1]!.data.buffer
    ? terms.findIndex((term) => term === outLetters.join("")) : -1;
  const out = value(t, outDims, (inPlace >= 0 ? takeOverwritable(vs[inPlace]!, outDims) : undefined) ?? newData(sizeOf(outDims), false));
  const S = product(sumLetters.map((l) => size.get(l)!));
  checkIntBound("Einsum", vs, S);
  // stride(k, l): how far operand k moves when index l advances (0 when it does not carry l, or
  // carries it with size 1: broadcast).
  const stride = (k: number, l: string): number => {
    const i = terms[k]!.indexOf(l);
    return i < 0 || vs[k]!.dims[i] === 1 ? 0 : stridesOf(vs[k]!.dims)[i]!;
  };
  if (vs.length === 2) einsumAsMatMul(vs, terms, outLetters, sumLetters, size, stride, out);
  else einsumLoop(vs, outLetters, sumLetters, size, stride, out);
  return [out];
}

/** Elements of one slice of B or C when a product runs in slices of the output's first index. */
const SLICE_ELEMENTS = 1 << 19;

/** Largest number of multiply-adds one Einsum or MatMul run as matrix products may take (~1 s of gemm.ts). */
export const MAX_MATMUL_WORK = 2 ** 31;

/**
 * A[batch, m, k] · B[batch, k, n]: batch = output indices both operands carry, m / n = output
 * indices of one operand only, k = the summed indices in their order (an index only one operand
 * carries is read with stride 0 by the other). C comes out as [batch, m, n] and is moved into the
 * output's index order. With nothing summed it is a broadcast product, 0 + a·b per element.
 */
function einsumAsMatMul(
  vs: Value[], terms: string[], outLetters: string[], sumLetters: string[], size: Map<string, number>,
  stride: (k: number, l: string) => number, out: Value,
): void {
  const [ta, tb] = [terms[0]!, terms[1]!];
  const sizes = (ls: string[]) => ls.map((l) => size.get(l)!);
  if (out.data.length === 0) return;
  if (sumLetters.length === 0) {
    // Rounded to float32 as it is written (evaluateNode's finalize then skips it).
    const round = out.dtype === DataType.FLOAT;
    stridedBinary(out.data, out.dims, vs[0]!.data, outLetters.map((l) => stride(0, l)), vs[1]!.data, outLetters.map((l) => stride(1, l)), "zeroPlusProduct", round);
    return;
  }
  const batch = outLetters.filter((l) => ta.includes(l) && tb.includes(l));
  const mL = outLetters.filter((l) => ta.includes(l) && !tb.includes(l));
  const nL = outLetters.filter((l) => !ta.includes(l) && tb.includes(l));
  const nb = product(sizes(batch)), M = product(sizes(mL)), N = product(sizes(nL)), K = product(sizes(sumLetters));
  checkWork(nb * M * N * K, "Einsum", MAX_MATMUL_WORK);
  const aLetters = [...batch, ...mL, ...sumLetters], bLetters = [...batch, ...sumLetters, ...nL];
  const cLetters = [...batch, ...mL, ...nL];
  const inOrder = cLetters.every((l, i) => outLetters[i] === l);
  // When C must be moved into the output's order and the output's first index is one of B's own
  // (OREPA's `ti,othw->oihw`: o), the product runs in slices of that index: the copies of B and C
  // are slices too, moved into their contiguous part of the output (the same sums, in the same
  // order, for every element; slices of a few MB instead of two more kernel-sized copies).
  const lead = outLetters[0];
  const sliced = !inOrder && nL.length > 0 && nL[0] === lead;
  const leadSize = lead === undefined ? 1 : size.get(lead)!;
  const perLead = sliced ? N / leadSize : N;
  const step = sliced ? Math.max(1, Math.floor(SLICE_ELEMENTS / (Math.max(M, K) * perLead))) : leadSize;
  const outRow = out.data.length / leadSize;
  const aDims = sizes(aLetters), aStrides = aLetters.map((l) => stride(0, l));
  // Without a batch, one product per slice in the matrix product's workspace: A moved straight in,
  // B handed over row-major (the workspace packs it), C read from there (gemm-parallel.ts).
  const inWorkspace = nb === 1;
  const A = inWorkspace ? undefined : gatherStrided(vs[0]!.data, aDims, aStrides, "Einsum operand 0");
  if (inOrder) out.data.fill(0);
  for (let p0 = 0; p0 < leadSize; p0 += step) {
    const p = Math.min(step, leadSize - p0);
    const sz = (l: string) => (sliced && l === lead ? p : size.get(l)!);
    const Ns = sliced ? p * perLead : N;
    const bSlice = vs[1]!.data.subarray(sliced ? p0 * stride(1, lead) : 0);
    const into = sliced ? out.data.subarray(p0 * outRow, (p0 + p) * outRow) : out.data;
    const cStrides = stridesOf(cLetters.map(sz));
    const cToOut = outLetters.map((l) => cStrides[cLetters.indexOf(l)]!);
    if (!A) {
      const w = gemmWorkspace(M, K, Ns);
      gatherStrided(vs[0]!.data, aDims, aStrides, "Einsum operand 0", w.A);
      const B = gatherStrided(bSlice, bLetters.map(sz), bLetters.map((l) => stride(1, l)), "Einsum operand 1");
      w.setB(B, 0);
      if (B.buffer !== vs[1]!.data.buffer) recycle(B);
      w.C.fill(0);
      w.run();
      gatherStrided(w.C, outLetters.map(sz), cToOut, "Einsum output", into);
      continue;
    }
    const B = gatherStrided(bSlice, bLetters.map(sz), bLetters.map((l) => stride(1, l)), "Einsum operand 1");
    const C = inOrder ? out.data : newData(nb * M * Ns);
    for (let i = 0; i < nb; i++) gemmAccumulate(A, i * M * K, B, i * K * Ns, C, i * M * Ns, M, K, Ns);
    // Gathered copies are private to this product (a view of an operand's own data is not).
    if (B.buffer !== vs[1]!.data.buffer) recycle(B);
    if (inOrder) continue;
    gatherStrided(C, outLetters.map(sz), cToOut, "Einsum output", into);
    recycle(C);
  }
  if (A && A.buffer !== vs[0]!.data.buffer) recycle(A);
}

/**
 * data read at Σ idx·strides over `dims` in row-major order, as a contiguous array (read-only: the
 * data itself when that is already its layout, unless `into` is given: then written there). Axes
 * that are contiguous in `strides` are merged first, so copies run over long stretches.
 */
function gatherStrided(data: Float64Array, dims: number[], strides: number[], what: string, into?: Float64Array): Float64Array {
  const n = sizeOf(dims, what);
  const d: number[] = [], st: number[] = [];
  for (let i = 0; i < dims.length; i++) {
    if (dims[i] === 1) continue;
    if (d.length > 0 && st[st.length - 1] === strides[i]! * dims[i]!) {
      d[d.length - 1]! *= dims[i]!;
      st[st.length - 1] = strides[i]!;
    } else {
      d.push(dims[i]!);
      st.push(strides[i]!);
    }
  }
  if (d.length === 0 || (d.length === 1 && st[0] === 1)) {
    if (!into) return data.subarray(0, n);
    into.set(data.subarray(0, n));
    return into;
  }
  const out = into ?? newData(n, false);
  if (n === 0) return out;
  // The two innermost axes run as nested loops (rows of a few elements are common: 3x3 kernels);
  // the odometer advances the others once per block of them.
  if (d.length < 2) {
    d.unshift(1);
    st.unshift(0);
  }
  const r = d.length;
  const idx = new Array<number>(r).fill(0);
  const inner = d[r - 1]!, innerStride = st[r - 1]!, mid = d[r - 2]!, midStride = st[r - 2]!;
  let off = 0;
  for (let o = 0; o < n; ) {
    for (let m = 0, p = off; m < mid; m++, p += midStride) {
      if (innerStride === 1) for (let j = 0; j < inner; j++) out[o++] = data[p + j]!;
      else for (let j = 0, q = p; j < inner; j++, q += innerStride) out[o++] = data[q]!;
    }
    for (let ax = r - 3; ax >= 0; ax--) {
      idx[ax]++;
      off += st[ax]!;
      if (idx[ax]! < d[ax]!) break;
      off -= st[ax]! * d[ax]!;
      idx[ax] = 0;
    }
  }
  return out;
}

/** The general form: one output element at a time, the product over the operands per summed index. */
function einsumLoop(vs: Value[], outLetters: string[], sumLetters: string[], size: Map<string, number>, stride: (k: number, l: string) => number, out: Value): void {
  const letters = [...outLetters, ...sumLetters];
  const dims = letters.map((l) => size.get(l)!);
  const total = product(dims);
  checkWork(total * vs.length, "Einsum");
  if (total === 0) {
    out.data.fill(0);
    return;
  }
  const S = product(dims, outLetters.length);
  const nl = letters.length;
  const strides = vs.map((_, k) => letters.map((l) => stride(k, l)));
  const nk = vs.length;
  const offs = new Array<number>(nk).fill(0);
  const idx = new Array<number>(nl).fill(0);
  const datas = vs.map((v) => v.data);
  const outSize = out.data.length;
  for (let o = 0; o < outSize; o++) {
    let acc = 0;
    for (let s = 0; s < S; s++) {
      let p = 1;
      for (let k = 0; k < nk; k++) p *= datas[k]![offs[k]!]!;
      acc += p;
      for (let l = nl - 1; l >= 0; l--) {
        idx[l]++;
        for (let k = 0; k < nk; k++) offs[k] += strides[k]![l]!;
        if (idx[l]! < dims[l]!) break;
        for (let k = 0; k < nk; k++) offs[k] -= strides[k]![l]! * dims[l]!;
        idx[l] = 0;
      }
    }
    out.data[o] = acc;
  }
}

// --- convolution and pooling geometry --------------------------------------------------------

interface Window {
  inSp: number[];
  kSp: number[];
  outSp: number[];
  /** For each output position and kernel position: flat input spatial offset, or -1 (padding). */
  table: Int32Array;
}

function spatialAttrs(node: Node, nsp: number, name: string, dflt: number): number[] {
  const v = node.ints(name) ?? new Array<number>(nsp).fill(dflt);
  if (v.length !== nsp || v.some((x) => !Number.isSafeInteger(x) || x < 1)) notEvaluated(`${node.opType} ${name} [${v}] for ${nsp} spatial dims`);
  return v;
}

function windowGeometry(node: Node, inSp: number[], kSp: number[], useDilations: boolean): { outSp: number[]; begin: number[]; strides: number[]; dil: number[] } {
  const nsp = inSp.length;
  const strides = spatialAttrs(node, nsp, "strides", 1);
  const dil = useDilations ? spatialAttrs(node, nsp, "dilations", 1) : new Array<number>(nsp).fill(1);
  const autoPad = node.string("auto_pad", "NOTSET");
  const pads = node.ints("pads") ?? new Array<number>(2 * nsp).fill(0);
  if (pads.length !== 2 * nsp || pads.some((p) => !Number.isSafeInteger(p) || p < 0)) notEvaluated(`${node.opType} pads [${pads}]`);
  if (node.int("ceil_mode", 0) !== 0) notEvaluated(`${node.opType} with ceil_mode`);
  const outSp: number[] = [];
  const begin: number[] = [];
  for (let i = 0; i < nsp; i++) {
    const dk = (kSp[i]! - 1) * dil[i]! + 1;
    const s = strides[i]!;
    const n = inSp[i]!;
    let o: number;
    let pb: number;
    switch (autoPad) {
      case "NOTSET":
        pb = pads[i]!;
        o = Math.floor((n + pads[i]! + pads[i + nsp]! - dk) / s) + 1;
        break;
      case "VALID":
        pb = 0;
        o = Math.floor((n - dk) / s) + 1;
        break;
      case "SAME_UPPER":
      case "SAME_LOWER": {
        o = Math.ceil(n / s);
        const total = Math.max(0, (o - 1) * s + dk - n);
        pb = autoPad === "SAME_UPPER" ? Math.floor(total / 2) : total - Math.floor(total / 2);
        break;
      }
      default:
        notEvaluated(`${node.opType} auto_pad ${autoPad}`);
    }
    if (o < 1) notEvaluated(`${node.opType} output would be empty along spatial axis ${i}`);
    outSp.push(o);
    begin.push(pb);
  }
  return { outSp, begin, strides, dil };
}

function buildWindow(node: Node, inSp: number[], kSp: number[], useDilations: boolean, work: (outSize: number) => number): Window {
  const { outSp, begin, strides, dil } = windowGeometry(node, inSp, kSp, useDilations);
  const outSize = product(outSp);
  const kSize = product(kSp);
  checkWork(work(outSize), node.opType);
  sizeOf([outSize, kSize], `${node.opType} window table`);
  const nsp = inSp.length;
  const inSt = stridesOf(inSp);
  const table = new Int32Array(outSize * kSize);
  const oc = new Array<number>(nsp).fill(0);
  const kc = new Array<number>(nsp).fill(0);
  for (let o = 0; o < outSize; o++) {
    let r = o;
    for (let a = nsp - 1; a >= 0; a--) {
      oc[a] = r % outSp[a]!;
      r = Math.floor(r / outSp[a]!);
    }
    for (let k = 0; k < kSize; k++) {
      let q = k;
      for (let a = nsp - 1; a >= 0; a--) {
        kc[a] = q % kSp[a]!;
        q = Math.floor(q / kSp[a]!);
      }
      let off = 0;
      for (let a = 0; a < nsp; a++) {
        const ii = oc[a]! * strides[a]! - begin[a]! + kc[a]! * dil[a]!;
        if (ii < 0 || ii >= inSp[a]!) {
          off = -1;
          break;
        }
        off += ii * inSt[a]!;
      }
      table[o * kSize + k] = off;
    }
  }
  return { inSp, kSp, outSp, table };
}

function checkKernelShape(node: Node, kSp: number[]): void {
  const ks = node.ints("kernel_shape");
  if (ks && !sameDims(ks, kSp)) notEvaluated(`${node.opType} kernel_shape [${ks}] differs from the weight's [${kSp}]`);
}

export function evalConv(node: Node, ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], "Conv", 0);
  const w = need(ins[1], "Conv", 1);
  const bias = ins[2];
  const t = numeric("Conv", x, w, ...(bias ? [bias] : []));
  if (!isFloat(t)) notEvaluated(`Conv on ${dtypeName(t)}`);
  const r = x.dims.length;
  if (r < 3 || w.dims.length !== r) notEvaluated(`Conv of [${x.dims}] with weight [${w.dims}]`);
  const [N, C] = [x.dims[0]!, x.dims[1]!];
  const [M, Cg] = [w.dims[0]!, w.dims[1]!];
  const g = node.int("group", 1);
  if (g < 1 || C !== Cg * g || M % g !== 0) notEvaluated(`Conv group ${g} with ${C} input channels and weight [${w.dims}]`);
  if (bias && (bias.dims.length !== 1 || bias.dims[0] !== M)) notEvaluated(`Conv bias of shape [${bias.dims}]`);
  const kSp = w.dims.slice(2);
  checkKernelShape(node, kSp);
  const inSp = x.dims.slice(2);
  const kSize = product(kSp);
  const win = buildWindow(node, inSp, kSp, true, (o) => N * M * Cg * o * kSize);
  const outSize = product(win.outSp);
  const inSize = product(inSp);
  const out = alloc(t, [N, M, ...win.outSp]);
  const Mg = M / g;
  const tab = win.table;
  const xd = x.data;
  const wd = w.data;
  const od = out.data;
  if (outSize === 1 && kSize === 1 && inSize === 1 && tab[0] === 0) {
    // A 1x1 conv on 1x1 maps is a grouped matrix product (an FC on vectors): one tight dot per output.
    for (let n = 0; n < N; n++)
      for (let m = 0; m < M; m++) {
        const xb = (n * C + Math.floor(m / Mg) * Cg) | 0, wb = (m * Cg) | 0;
        let s = bias ? bias.data[m]! : 0;
        for (let c = 0; c < Cg; c++) s += xd[xb + c]! * wd[wb + c]!;
        od[n * M + m] = s;
      }
    return [out];
  }
  for (let n = 0; n < N; n++)
    for (let m = 0; m < M; m++) {
      const gi = Math.floor(m / Mg);
      const ob = (n * M + m) * outSize;
      for (let c = 0; c < Cg; c++) {
        const xb = (n * C + gi * Cg + c) * inSize;
        const wb = (m * Cg + c) * kSize;
        for (let o = 0; o < outSize; o++) {
          let s = 0;
          const tb = o * kSize;
          for (let k = 0; k < kSize; k++) {
            const at = tab[tb + k]!;
            if (at >= 0) s += xd[xb + at]! * wd[wb + k]!;
          }
          od[ob + o] += s;
        }
      }
      if (bias) for (let o = 0; o < outSize; o++) od[ob + o] += bias.data[m]!;
    }
  return [out];
}

export function evalConvTranspose(node: Node, ins: (Value | undefined)[]): Value[] {
  const x = need(ins[0], "ConvTranspose", 0);
  const w = need(ins[1], "ConvTranspose", 1);
  const bias = ins[2];
  const t = numeric("ConvTranspose", x, w, ...(bias ? [bias] : []));
  if (!isFloat(t)) notEvaluated(`ConvTranspose on ${dtypeName(t)}`);
  const r = x.dims.length;
  if (r < 3 || w.dims.length !== r) notEvaluated(`ConvTranspose of [${x.dims}] with weight [${w.dims}]`);
  const nsp = r - 2;
  const [N, C] = [x.dims[0]!, x.dims[1]!];
  const g = node.int("group", 1);
  if (g < 1 || w.dims[0] !== C || C % g !== 0) notEvaluated(`ConvTranspose group ${g} with ${C} input channels and weight [${w.dims}]`);
  const Cg = C / g;
  const Mg = w.dims[1]!;
  const M = Mg * g;
  if (bias && (bias.dims.length !== 1 || bias.dims[0] !== M)) notEvaluated(`ConvTranspose bias of shape [${bias.dims}]`);
  if (node.attr("output_shape")) notEvaluated("ConvTranspose with output_shape");
  const autoPad = node.string("auto_pad", "NOTSET");
  if (autoPad !== "NOTSET" && autoPad !== "VALID") notEvaluated(`ConvTranspose auto_pad ${autoPad}`);
  const kSp = w.dims.slice(2);
  checkKernelShape(node, kSp);
  const strides = spatialAttrs(node, nsp, "strides", 1);
  const dil = spatialAttrs(node, nsp, "dilations", 1);
  const pads = autoPad === "VALID" ? new Array<number>(2 * nsp).fill(0) : node.ints("pads") ?? new Array<number>(2 * nsp).fill(0);
  const outPad = node.ints("output_padding") ?? new Array<number>(nsp).fill(0);
  if (pads.length !== 2 * nsp || outPad.length !== nsp || pads.some((p) => p < 0) || outPad.some((p) => p < 0)) notEvaluated("ConvTranspose pads/output_padding");
  const inSp = x.dims.slice(2);
  const outSp = inSp.map((n, i) => strides[i]! * (n - 1) + outPad[i]! + (kSp[i]! - 1) * dil[i]! + 1 - pads[i]! - pads[i + nsp]!);
  if (outSp.some((o) => o < 1)) notEvaluated(`ConvTranspose output [${outSp}]`);
  const out = alloc(t, [N, M, ...outSp]);
  const inSize = product(inSp);
  const kSize = product(kSp);
  const outSize = product(outSp);
  checkWork(N * C * Mg * inSize * kSize, "ConvTranspose");
  sizeOf([inSize, kSize], "ConvTranspose window table");
  const outSt = stridesOf(outSp);
  const tab = new Int32Array(inSize * kSize);
  for (let i = 0; i < inSize; i++)
    for (let k = 0; k < kSize; k++) {
      let ri = i;
      let rk = k;
      let off = 0;
      for (let a = nsp - 1; a >= 0 && off >= 0; a--) {
        const ic = ri % inSp[a]!;
        const kc = rk % kSp[a]!;
        ri = Math.floor(ri / inSp[a]!);
        rk = Math.floor(rk / kSp[a]!);
        const o = ic * strides[a]! - pads[a]! + kc * dil[a]!;
        if (o < 0 || o >= outSp[a]!) off = -1;
        else off += o * outSt[a]!;
      }
      tab[i * kSize + k] = off;
    }
  const xd = x.data;
  const wd = w.data;
  const od = out.data;
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++) {
      const gi = Math.floor(c / Cg);
      const xb = (n * C + c) * inSize;
      for (let m = 0; m < Mg; m++) {
        const ob = (n * M + gi * Mg + m) * outSize;
        const wb = (c * Mg + m) * kSize;
        for (let i = 0; i < inSize; i++) {
          const xv = xd[xb + i]!;
          const tb = i * kSize;
          for (let k = 0; k < kSize; k++) {
            const at = tab[tb + k]!;
            if (at >= 0) od[ob + at] += xv * wd[wb + k]!;
          }
        }
      }
    }
  if (bias) for (let n = 0; n < N; n++) for (let m = 0; m < M; m++) for (let o = 0; o < outSize; o++) od[(n * M + m) * outSize + o] += bias.data[m]!;
  return [out];
}

export function evalPool(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const op = node.opType;
  const x = need(ins[0], op);
  if (isBool(x.dtype)) notEvaluated(`${op} on bool`);
  const r = x.dims.length;
  if (r < 3) notEvaluated(`${op} of rank ${r}`);
  const [N, C] = [x.dims[0]!, x.dims[1]!];
  const inSp = x.dims.slice(2);
  const inSize = product(inSp);
  if (op === "GlobalAveragePool" || op === "GlobalMaxPool") {
    if (!isFloat(x.dtype)) notEvaluated(`${op} on ${dtypeName(x.dtype)}`);
    const out = alloc(x.dtype, [N, C, ...inSp.map(() => 1)]);
    if (inSize === 0) notEvaluated(`${op} of an empty input`);
    for (let nc = 0; nc < N * C; nc++) {
      let acc = op === "GlobalMaxPool" ? -Infinity : 0;
      for (let i = 0; i < inSize; i++) {
        const v = x.data[nc * inSize + i]!;
        acc = op === "GlobalMaxPool" ? (v > acc || v !== v ? v : acc) : acc + v;
      }
      out.data[nc] = op === "GlobalMaxPool" ? acc : acc / inSize;
    }
    return [out];
  }
  const max = op === "MaxPool";
  if (max && node.outputs.length > 1 && node.outputs[1]) notEvaluated("MaxPool Indices output");
  if (!max && !isFloat(x.dtype)) notEvaluated(`${op} on ${dtypeName(x.dtype)}`);
  const kSp = node.ints("kernel_shape");
  if (!kSp || kSp.length !== inSp.length || kSp.some((k) => k < 1)) notEvaluated(`${op} kernel_shape`);
  const kSize = product(kSp);
  const win = buildWindow(node, inSp, kSp, max ? opset >= 10 : opset >= 19, (o) => N * C * o * kSize);
  const outSize = product(win.outSp);
  const out = alloc(x.dtype, [N, C, ...win.outSp]);
  const includePad = !max && node.int("count_include_pad", 0) === 1;
  const tab = win.table;
  for (let nc = 0; nc < N * C; nc++) {
    const xb = nc * inSize;
    for (let o = 0; o < outSize; o++) {
      let acc = max ? -Infinity : 0;
      let cnt = 0;
      for (let k = 0; k < kSize; k++) {
        const at = tab[o * kSize + k]!;
        if (at < 0) continue;
        const v = x.data[xb + at]!;
        cnt++;
        if (max) acc = v > acc || v !== v ? v : acc;
        else acc += v;
      }
      if (cnt === 0) notEvaluated(`${op} window entirely in padding`);
      out.data[nc * outSize + o] = max ? acc : acc / (includePad ? kSize : cnt);
    }
  }
  return [out];
}

export function evalBatchNorm(node: Node, ins: (Value | undefined)[], opset: number): Value[] {
  const [x, scale, bias, mean, vari] = [0, 1, 2, 3, 4].map((i) => need(ins[i], "BatchNormalization", i)) as [Value, Value, Value, Value, Value];
  const t = x.dtype;
  if (!isFloat(t)) notEvaluated(`BatchNormalization on ${dtypeName(t)}`);
  if (opset >= 14 && node.int("training_mode", 0) !== 0) notEvaluated("BatchNormalization in training mode");
  if (opset < 9 && node.int("spatial", 1) !== 1) notEvaluated("BatchNormalization with spatial=0");
  if (node.outputs.slice(1).some((o) => o !== "")) notEvaluated("BatchNormalization training outputs");
  if (x.dims.length < 2) notEvaluated(`BatchNormalization of rank ${x.dims.length}`);
  const C = x.dims[1]!;
  for (const p of [scale, bias, mean, vari]) if (p.data.length !== C || p.dims.length !== 1) notEvaluated(`BatchNormalization parameter of shape [${p.dims}] for ${C} channels`);
  const eps = node.float("epsilon", 1e-5);
  const out = alloc(t, x.dims);
  const inner = product(x.dims, 2);
  const N = x.dims[0]!;
  for (let c = 0; c < C; c++) {
    const s = scale.data[c]! / Math.sqrt(vari.data[c]! + eps);
    const m = mean.data[c]!;
    const b = bias.data[c]!;
    for (let n = 0; n < N; n++) {
      const base = (n * C + c) * inner;
      for (let i = 0; i < inner; i++) out.data[base + i] = (x.data[base + i]! - m) * s + b;
    }
  }
  return [out];
}
