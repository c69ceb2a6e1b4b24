import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { UsageError } from "../src/ir/errors.js";
import { encodeNpy, parseNpy, readNpy, writeNpy, type NpyData, type NpyDtype } from "../src/verify/npy.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "reparam-npy-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A .npy file exactly as numpy 2.x writes np.save(f, np.array([1,2,3,4,5,6.5], np.float32).reshape(2,3)). */
function numpyF4Bytes(): Uint8Array {
  const dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  const header = dict + " ".repeat(118 - dict.length - 1) + "\n";
  const out = new Uint8Array(128 + 24);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 118, 0]);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(new Uint8Array(Float32Array.from([1, 2, 3, 4, 5, 6.5]).buffer), 128);
  return out;
}

/** A hand-made file: preamble (given version), header text, data bytes. */
function npyBytes(header: string, data: Uint8Array, major = 1): Uint8Array {
  const pre = major === 1 ? 10 : 12;
  const text = new TextEncoder().encode(header);
  const out = new Uint8Array(pre + text.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const view = new DataView(out.buffer);
  if (major === 1) view.setUint16(8, text.length, true);
  else view.setUint32(8, text.length, true);
  out.set(text, pre);
  out.set(data, pre + text.length);
  return out;
}

function expectUsage(fn: () => unknown, pattern: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UsageError);
  expect((err as Error).message).toMatch(pattern);
  expect((err as Error).message).not.toContain("\n");
}

describe("npy round trip", () => {
  const cases: [NpyDtype, number[], NpyData][] = [
    ["float32", [2, 3], Float32Array.from([0, -1.5, 3.25, 1e30, -0, 7])],
    ["float64", [3], Float64Array.from([Math.PI, -1e-300, 2 ** 60])],
    ["float16", [2, 1, 2], Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x0001])],
    ["int32", [4], Int32Array.from([0, -1, 2 ** 31 - 1, -(2 ** 31)])],
    ["int64", [1, 2], BigInt64Array.from([2n ** 62n, -3n])],
    ["uint8", [2, 2], Uint8Array.from([0, 1, 128, 255])],
    ["bool", [3], Uint8Array.from([1, 0, 1])],
    ["float32", [], Float32Array.from([42])],
    ["float32", [0, 3], new Float32Array(0)],
  ];
  for (const [dtype, dims, data] of cases) {
    it(`${dtype} [${dims}]`, () => {
      const file = path.join(dir, `rt_${dtype}_${dims.join("x")}.npy`);
      writeNpy(file, dims, data, dtype);
      const back = readNpy(file);
      expect(back.dtype).toBe(dtype);
      expect(back.dims).toEqual(dims);
      expect(back.data.constructor).toBe(data.constructor);
      expect(Array.from(back.data as ArrayLike<number | bigint>)).toEqual(Array.from(data as ArrayLike<number | bigint>));
      const size = fs.statSync(file).size;
      expect((size - data.byteLength) % 64).toBe(0); // data 64-byte aligned, as numpy writes
    });
  }

  it("writes byte-for-byte what numpy writes, and reads it", () => {
    const ours = encodeNpy([2, 3], Float32Array.from([1, 2, 3, 4, 5, 6.5]));
    expect(Buffer.from(ours).equals(Buffer.from(numpyF4Bytes()))).toBe(true);
    const a = parseNpy(numpyF4Bytes());
    expect(a).toMatchObject({ dtype: "float32", dims: [2, 3] });
    expect(Array.from(a.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6.5]);
  });

  it("reads format versions 2.0 and 3.0 and a header with Python long suffixes", () => {
    const data = new Uint8Array(Float64Array.from([1, -2]).buffer);
    for (const major of [2, 3]) {
      const a = parseNpy(npyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n", data, major));
      expect(Array.from(a.data as Float64Array)).toEqual([1, -2]);
    }
    const b = parseNpy(npyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1L, 2L), }\n", data));
    expect(b.dims).toEqual([1, 2]);
  });

  it("infers the dtype from the array type when none is given", () => {
    const file = path.join(dir, "infer.npy");
    writeNpy(file, [2], Uint16Array.from([0x3c00, 0x4000]));
    expect(readNpy(file).dtype).toBe("float16");
    writeNpy(file, [1], BigInt64Array.from([9n]));
    expect(readNpy(file).dtype).toBe("int64");
  });

  it("refuses data that does not fill the shape", () => {
    expectUsage(() => encodeNpy([2, 2], Float32Array.from([1, 2, 3])), /needs 4 values, got 3/);
    expectUsage(() => encodeNpy([2], Float32Array.from([1, 2]), "float64"), /must be a Float64Array/);
  });
});

describe("npy errors", () => {
  const f4 = (header: string, nValues: number) => npyBytes(header, new Uint8Array(nValues * 4));

  it("bad magic", () => {
    expectUsage(() => parseNpy(new TextEncoder().encode("PK\x03\x04 this is a zip"), "x.npy"), /^x\.npy: not a \.npy file \(bad magic/);
  });

  it("truncated data and truncated header", () => {
    const full = numpyF4Bytes();
    expectUsage(() => parseNpy(full.subarray(0, full.length - 5), "t.npy"), /^t\.npy: truncated \.npy file: shape \(2, 3\) of <f4 needs 24 data bytes, file has 19/);
    expectUsage(() => parseNpy(full.subarray(0, 60), "h.npy"), /^h\.npy: truncated \.npy file \(header of 118 bytes/);
    expectUsage(() => parseNpy(full.subarray(0, 8), "p.npy"), /not a \.npy file/);
  });

  it("trailing bytes", () => {
    const full = numpyF4Bytes();
    const longer = new Uint8Array(full.length + 4);
    longer.set(full);
    expectUsage(() => parseNpy(longer, "l.npy"), /4 bytes after the data/);
  });

  it("a huge declared shape is refused from the file size, before any allocation", () => {
    const bytes = f4("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 100000), }\n", 2);
    expectUsage(() => parseNpy(bytes, "huge.npy"), /huge\.npy: truncated \.npy file: shape \(100000, 100000, 100000\) of <f4 needs 4000000000000000 data bytes, file has 8/);
    const overflow = f4("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }\n", 1);
    expectUsage(() => parseNpy(overflow, "o.npy"), /too large/);
  });

  it("big-endian, unsupported dtypes, structured arrays, bad versions", () => {
    expectUsage(() => parseNpy(f4("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n", 1), "be.npy"), /^be\.npy: big-endian \.npy data \('>f4'\)/);
    expectUsage(() => parseNpy(f4("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }\n", 2), "c.npy"), /unsupported \.npy dtype '<c8' \(supported: <f4 <f8 <f2 <i4 <i8 \|u1 \|b1\)/);
    expectUsage(() => parseNpy(f4("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }\n", 1), "s.npy"), /structured arrays/);
    const v9 = numpyF4Bytes();
    v9[6] = 9;
    expectUsage(() => parseNpy(v9, "v.npy"), /format version 9\.0/);
  });

  it("Fortran order names the file", () => {
    const file = path.join(dir, "fortran.npy");
    fs.writeFileSync(file, f4("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n", 6));
    expectUsage(() => readNpy(file), new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: Fortran-order`));
  });

  it("garbage header and missing file", () => {
    expectUsage(() => parseNpy(npyBytes("not a dict\n", new Uint8Array(0)), "g.npy"), /cannot read the header/);
    expectUsage(() => parseNpy(f4("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n", 1), "n.npy"), /not a non-negative integer/);
    expectUsage(() => readNpy(path.join(dir, "nope.npy")), /nope\.npy: no such file/);
  });
});
