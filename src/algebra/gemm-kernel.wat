;; gemm.ts's block kernel in WebAssembly SIMD (docs/rules.md §7.6):
;; C[i, j] += Σ_{k0 ≤ k < k1} A[i, k] · B[k, j] for rows i0 ≤ i < i1, every column, with each
;; element's sum taken in the order k = k0, k0+1, … onto C's current value — exactly the JS
;; kernel's order. The two lanes of an f64x2 are two columns j, j+1 of one row: lane by lane,
;; f64x2.mul then f64x2.add are the IEEE-754 double multiply and add of the scalar code (wasm has
;; no implicit fused multiply-add), so every element gets the same bits as the JS triple loop.
;; Addresses are byte offsets into the imported memory; A (M x K) and C (M x N) are row-major and
;; contiguous; B (K x N) is packed in panels (gemm-wasm.ts packPanels): columns 4s…4s+3 of every row
;; k at b + ((4s)·K + 4k)·8 — one panel is a contiguous strip the depth loop walks through, instead of
;; a column strip N·8 bytes apart (which, for N a multiple of 512, maps every row to one cache set) —
;; then the N mod 4 remaining columns row-major at b + (n4·K + k·(N − n4) + j − n4)·8.
;; scripts/build-wasm.mjs assembles this file into gemm-kernel-wasm.ts.
(module
  (import "env" "memory" (memory 1))
  (func (export "block")
    (param $a i32) (param $b i32) (param $c i32) (param $K i32) (param $N i32)
    (param $i0 i32) (param $i1 i32) (param $k0 i32) (param $k1 i32)
    (local $rowA i32) (local $rowB i32) (local $i4 i32) (local $n4 i32) (local $j i32) (local $i i32) (local $k i32)
    (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32) (local $q i32) (local $rowT i32)
    (local $r0 i32) (local $r1 i32) (local $r2 i32) (local $r3 i32)
    (local $x v128) (local $b01 v128) (local $b23 v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (local $s f64)
    (if (i32.ge_s (local.get $k0) (local.get $k1)) (then (return)))
    (local.set $rowA (i32.shl (local.get $K) (i32.const 3)))
    (local.set $rowB (i32.shl (local.get $N) (i32.const 3)))
    (local.set $i4 (i32.add (local.get $i0) (i32.and (i32.sub (local.get $i1) (local.get $i0)) (i32.const -4))))
    (local.set $n4 (i32.and (local.get $N) (i32.const -4)))
    (local.set $rowT (i32.shl (i32.sub (local.get $N) (local.get $n4)) (i32.const 3)))
    ;; Strips of 4 columns of C.
    (local.set $j (i32.const 0))
    (block $strips_done
      (loop $strips
        (br_if $strips_done (i32.ge_s (local.get $j) (local.get $n4)))
        ;; 4 rows at a time: a 4x4 block of C in eight f64x2 registers while k runs.
        (local.set $i (local.get $i0))
        (block $quads_done
          (loop $quads
            (br_if $quads_done (i32.ge_s (local.get $i) (local.get $i4)))
            ;; p_r = &A[i + r, k0], r_r = &C[i + r, j], q = &B[k0, j]
            (local.set $p0 (i32.add (local.get $a)
              (i32.shl (i32.add (i32.mul (local.get $i) (local.get $K)) (local.get $k0)) (i32.const 3))))
            (local.set $p1 (i32.add (local.get $p0) (local.get $rowA)))
            (local.set $p2 (i32.add (local.get $p1) (local.get $rowA)))
            (local.set $p3 (i32.add (local.get $p2) (local.get $rowA)))
            (local.set $r0 (i32.add (local.get $c)
              (i32.shl (i32.add (i32.mul (local.get $i) (local.get $N)) (local.get $j)) (i32.const 3))))
            (local.set $r1 (i32.add (local.get $r0) (local.get $rowB)))
            (local.set $r2 (i32.add (local.get $r1) (local.get $rowB)))
            (local.set $r3 (i32.add (local.get $r2) (local.get $rowB)))
            (local.set $q (i32.add (local.get $b)
              (i32.shl (i32.add (i32.mul (local.get $j) (local.get $K)) (i32.shl (local.get $k0) (i32.const 2))) (i32.const 3))))
            (local.set $c00 (v128.load (local.get $r0)))
            (local.set $c01 (v128.load offset=16 (local.get $r0)))
            (local.set $c10 (v128.load (local.get $r1)))
            (local.set $c11 (v128.load offset=16 (local.get $r1)))
            (local.set $c20 (v128.load (local.get $r2)))
            (local.set $c21 (v128.load offset=16 (local.get $r2)))
            (local.set $c30 (v128.load (local.get $r3)))
            (local.set $c31 (v128.load offset=16 (local.get $r3)))
            (local.set $k (local.get $k0))
            (loop $depth
              (local.set $b01 (v128.load (local.get $q)))
              (local.set $b23 (v128.load offset=16 (local.get $q)))
              (local.set $x (v128.load64_splat (local.get $p0)))
              (local.set $c00 (f64x2.add (local.get $c00) (f64x2.mul (local.get $x) (local.get $b01))))
              (local.set $c01 (f64x2.add (local.get $c01) (f64x2.mul (local.get $x) (local.get $b23))))
              (local.set $x (v128.load64_splat (local.get $p1)))
              (local.set $c10 (f64x2.add (local.get $c10) (f64x2.mul (local.get $x) (local.get $b01))))
              (local.set $c11 (f64x2.add (local.get $c11) (f64x2.mul (local.get $x) (local.get $b23))))
              (local.set $x (v128.load64_splat (local.get $p2)))
              (local.set $c20 (f64x2.add (local.get $c20) (f64x2.mul (local.get $x) (local.get $b01))))
              (local.set $c21 (f64x2.add (local.get $c21) (f64x2.mul (local.get $x) (local.get $b23))))
              (local.set $x (v128.load64_splat (local.get $p3)))
              (local.set $c30 (f64x2.add (local.get $c30) (f64x2.mul (local.get $x) (local.get $b01))))
              (local.set $c31 (f64x2.add (local.get $c31) (f64x2.mul (local.get $x) (local.get $b23))))
              (local.set $p0 (i32.add (local.get $p0) (i32.const 8)))
              (local.set $p1 (i32.add (local.get $p1) (i32.const 8)))
              (local.set $p2 (i32.add (local.get $p2) (i32.const 8)))
              (local.set $p3 (i32.add (local.get $p3) (i32.const 8)))
              (local.set $q (i32.add (local.get $q) (i32.const 32)))
              (local.set $k (i32.add (local.get $k) (i32.const 1)))
              (br_if $depth (i32.lt_s (local.get $k) (local.get $k1))))
            (v128.store (local.get $r0) (local.get $c00))
            (v128.store offset=16 (local.get $r0) (local.get $c01))
            (v128.store (local.get $r1) (local.get $c10))
            (v128.store offset=16 (local.get $r1) (local.get $c11))
            (v128.store (local.get $r2) (local.get $c20))
            (v128.store offset=16 (local.get $r2) (local.get $c21))
            (v128.store (local.get $r3) (local.get $c30))
            (v128.store offset=16 (local.get $r3) (local.get $c31))
            (local.set $i (i32.add (local.get $i) (i32.const 4)))
            (br $quads)))
        ;; Rows left over (fewer than 4): one row at a time, the same 4 columns.
        (block $rows_done
          (loop $rows
            (br_if $rows_done (i32.ge_s (local.get $i) (local.get $i1)))
            (local.set $p0 (i32.add (local.get $a)
              (i32.shl (i32.add (i32.mul (local.get $i) (local.get $K)) (local.get $k0)) (i32.const 3))))
            (local.set $r0 (i32.add (local.get $c)
              (i32.shl (i32.add (i32.mul (local.get $i) (local.get $N)) (local.get $j)) (i32.const 3))))
            (local.set $q (i32.add (local.get $b)
              (i32.shl (i32.add (i32.mul (local.get $j) (local.get $K)) (i32.shl (local.get $k0) (i32.const 2))) (i32.const 3))))
            (local.set $c00 (v128.load (local.get $r0)))
            (local.set $c01 (v128.load offset=16 (local.get $r0)))
            (local.set $k (local.get $k0))
            (loop $depth1
              (local.set $x (v128.load64_splat (local.get $p0)))
              (local.set $c00 (f64x2.add (local.get $c00) (f64x2.mul (local.get $x) (v128.load (local.get $q)))))
              (local.set $c01 (f64x2.add (local.get $c01) (f64x2.mul (local.get $x) (v128.load offset=16 (local.get $q)))))
              (local.set $p0 (i32.add (local.get $p0) (i32.const 8)))
              (local.set $q (i32.add (local.get $q) (i32.const 32)))
              (local.set $k (i32.add (local.get $k) (i32.const 1)))
              (br_if $depth1 (i32.lt_s (local.get $k) (local.get $k1))))
            (v128.store (local.get $r0) (local.get $c00))
            (v128.store offset=16 (local.get $r0) (local.get $c01))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $rows)))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $strips)))
    ;; Columns left over (fewer than 4): one element at a time, in scalar f64.
    (local.set $j (local.get $n4))
    (block $cols_done
      (loop $cols
        (br_if $cols_done (i32.ge_s (local.get $j) (local.get $N)))
        (local.set $i (local.get $i0))
        (block $elems_done
          (loop $elems
            (br_if $elems_done (i32.ge_s (local.get $i) (local.get $i1)))
            (local.set $p0 (i32.add (local.get $a)
              (i32.shl (i32.add (i32.mul (local.get $i) (local.get $K)) (local.get $k0)) (i32.const 3))))
            (local.set $r0 (i32.add (local.get $c)
              (i32.shl (i32.add (i32.mul (local.get $i) (local.get $N)) (local.get $j)) (i32.const 3))))
            (local.set $q (i32.add (local.get $b)
              (i32.shl (i32.add (i32.add (i32.mul (local.get $n4) (local.get $K)) (i32.mul (local.get $k0) (i32.sub (local.get $N) (local.get $n4))))
                (i32.sub (local.get $j) (local.get $n4))) (i32.const 3))))
            (local.set $s (f64.load (local.get $r0)))
            (local.set $k (local.get $k0))
            (loop $depth0
              (local.set $s (f64.add (local.get $s) (f64.mul (f64.load (local.get $p0)) (f64.load (local.get $q)))))
              (local.set $p0 (i32.add (local.get $p0) (i32.const 8)))
              (local.set $q (i32.add (local.get $q) (local.get $rowT)))
              (local.set $k (i32.add (local.get $k) (i32.const 1)))
              (br_if $depth0 (i32.lt_s (local.get $k) (local.get $k1))))
            (f64.store (local.get $r0) (local.get $s))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $elems)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $cols)))))
