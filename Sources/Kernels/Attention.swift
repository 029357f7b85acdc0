import Foundation
import Plan
import Tensors
/// `softmax(q·kᵀ·scale + biases)·v` in tiles: for each tile of queries, the key tiles stream through
/// with a running row maximum and sum (the flash-attention recurrence), so only a `tile × tile` block
/// of scores ever exists. Batch × head slices run on separate threads; the products are OpenBLAS GEMMs.
public enum Attention {
    public static let queryTile = 64
    public static let keyTile = 256

    /// `int8Scores` (plans with int8 activations): the scores in int8 where `Int8Scores.supported`
    /// and the products otherwise run in bf16 on AVX-512 (`gemm` with bf16 precision).
    public static func run(_ k: AttentionKernel, q: View, key: View, v: View, biases: [View], out: View, gemm: Gemm = Gemm(.openblas), threads: Int,
                           int8Scores: Bool = false) {
        let qd = q.dims, kd = key.dims, vd = v.dims
        let n = qd[qd.count - 2], d = qd[qd.count - 1]
        let m = k.keysTransposed ? kd[kd.count - 1] : kd[kd.count - 2]
        let dv = vd[vd.count - 1]
        let batch = Array(out.dims.dropLast(2))
        let count = max(1, batch.reduce(1, *))
        let iq = MatrixProduct.batchOffsets(Array(qd.dropLast(2)), batch), ik = MatrixProduct.batchOffsets(Array(kd.dropLast(2)), batch)
        let iv = MatrixProduct.batchOffsets(Array(vd.dropLast(2)), batch)
        // Each bias broadcast to [batch..., n, m]: its batch offset, row and column strides.
        let scoreDims = batch + [n, m]
        let biasLayouts: [(offsets: [Int], row: Int, col: Int)] = biases.map { b in
            let padded = [Int](repeating: 1, count: scoreDims.count - b.dims.count) + b.dims
            var strides = [Int](repeating: 0, count: padded.count)
            var s = 1
            for i in stride(from: padded.count - 1, through: 0, by: -1) {
                strides[i] = padded[i] == 1 ? 0 : s
                s *= padded[i]
            }
            var perBatch: [Int] = []
            var index = [Int](repeating: 0, count: batch.count)
            for _ in 0..<count {
                perBatch.append(zip(index, strides.prefix(batch.count)).reduce(0) { $0 + $1.0 * $1.1 })
                var i = batch.count - 1
                while i >= 0 {
                    index[i] += 1
                    if index[i] < batch[i] { break }
                    index[i] = 0
                    i -= 1
                }
            }
            return (perBatch, strides[strides.count - 2], strides[strides.count - 1])
        }
        if !gemm.usesBLAS {
            runOwn(k, q: q, key: key, v: v, biases: biases, biasLayouts: biasLayouts, out: out, gemm: gemm, threads: threads, int8Scores: int8Scores)
            return
        }
        let tq = min(queryTile, n), tk = min(keyTile, m)
        let queryTiles = (n + tq - 1) / tq
        // Work items: (batch·head slice, query tile), each on one thread from start to finish.
        Parallel.forRanges(count * queryTiles, threads: threads) { range in
            let s = UnsafeMutablePointer<Float>.allocate(capacity: tq * tk)
            let acc = UnsafeMutablePointer<Float>.allocate(capacity: tq * dv)
            let qs = UnsafeMutablePointer<Float>.allocate(capacity: k.scaleQueries ? tq * d : 1)
            var rowMax = [Float](repeating: 0, count: tq), rowSum = [Float](repeating: 0, count: tq)
            let scratch = GemmScratch()
            defer { s.deallocate(); acc.deallocate(); qs.deallocate() }
            for item in range {
                let p = item / queryTiles
                let qb = q.floats + iq[p] * n * d, kb = key.floats + ik[p] * m * d, vb = v.floats + iv[p] * m * dv
                let ob = out.floats + p * n * dv
                let i0 = (item % queryTiles) * tq
                do {
                    let rows = min(tq, n - i0)
                    var qt = qb + i0 * d
                    if k.scaleQueries {
                        for i in 0..<(rows * d) { qs[i] = qt[i] * k.scale }
                        qt = qs
                    }
                    for r in 0..<rows { rowMax[r] = -.infinity; rowSum[r] = 0 }
                    acc.initialize(repeating: 0, count: rows * dv)
                    var j0 = 0
                    while j0 < m {
                        let cols = min(tk, m - j0)
                        // s = q_tile · k_tileᵀ
                        if k.keysTransposed {
                            gemm.sgemm(m: rows, n: cols, k: d, a: qt, lda: d, b: kb + j0, ldb: m, c: s, ldc: cols, scratch: scratch)
                        } else {
                            gemm.sgemm(transposeB: true, m: rows, n: cols, k: d, a: qt, lda: d, b: kb + j0 * d, ldb: d, c: s, ldc: cols, scratch: scratch)
                        }
                        for r in 0..<rows {
                            let srow = s + r * cols
                            if !k.scaleQueries { for c in 0..<cols { srow[c] *= k.scale } }
                            for (bi, layout) in biasLayouts.enumerated() {
                                let bp = biases[bi].floats + layout.offsets[p] + (i0 + r) * layout.row + j0 * layout.col
                                if layout.col == 1 { for c in 0..<cols { srow[c] += bp[c] } } else { for c in 0..<cols { srow[c] += bp[c * layout.col] } }
                            }
                            var mx = rowMax[r]
                            for c in 0..<cols where srow[c] > mx { mx = srow[c] }
                            let correction = rowMax[r] == -.infinity ? 0 : expf(rowMax[r] - mx)
                            var sum: Float = 0
                            if mx == -.infinity {
                                for c in 0..<cols { srow[c] = 0 }
                            } else {
                                VectorMath.map(srow, srow, cols) { VectorMath.exp($0 - mx) }
                                for c in 0..<cols { sum += srow[c] }
                            }
                            rowSum[r] = rowSum[r] * correction + sum
                            rowMax[r] = mx
                            if correction != 1 { let a = acc + r * dv; for c in 0..<dv { a[c] *= correction } }
                        }
                        // acc += p_tile · v_tile
                        gemm.sgemm(m: rows, n: dv, k: cols, a: s, lda: cols, b: vb + j0 * dv, ldb: dv, beta: 1, c: acc, ldc: dv, scratch: scratch)
                        j0 += cols
                    }
                    for r in 0..<rows {
                        let inv = 1 / rowSum[r]
                        let a = acc + r * dv, o = ob + (i0 + r) * dv
                        for c in 0..<dv { o[c] = a[c] * inv }
                    }
                }
            }
        }
    }

    /// With our micro-kernels, in the transposed layout: for a tile of `nr` queries, the scores of a
    /// tile of keys are `Sᵀ = K·(scale·Q)ᵀ` (keys as rows, so the online softmax runs down columns with
    /// vector maxima and sums, and `Sᵀ` is already the packed B operand of the next product), then
    /// `accᵀ = correction·accᵀ + Vᵀ·Pᵀ`. K and V are packed once per batch·head slice.
    static func runOwn(_ k: AttentionKernel, q: View, key: View, v: View, biases: [View],
                       biasLayouts: [(offsets: [Int], row: Int, col: Int)], out: View, gemm: Gemm, threads: Int, int8Scores: Bool) {
        let qd = q.dims, kd = key.dims, vd = v.dims
        let n = qd[qd.count - 2], d = qd[qd.count - 1]
        let m = k.keysTransposed ? kd[kd.count - 1] : kd[kd.count - 2]
        let dv = vd[vd.count - 1]
        let batch = Array(out.dims.dropLast(2))
        let count = max(1, batch.reduce(1, *))
        let iq = MatrixProduct.batchOffsets(Array(qd.dropLast(2)), batch), ik = MatrixProduct.batchOffsets(Array(kd.dropLast(2)), batch)
        let iv = MatrixProduct.batchOffsets(Array(vd.dropLast(2)), batch)
        let (mr, tq) = (gemm.mr, gemm.nr)
        let tk = 32 * mr
        let queryTiles = (n + tq - 1) / tq
        let kPanels = (m + mr - 1) / mr, vPanels = (dv + mr - 1) / mr
        let scale = k.scale
        // bf16: the products step over pairs of the depth (d for the scores, keys for the values).
        let bf16 = gemm.precision == .bf16
        let dSteps = bf16 ? (d + 1) / 2 : d, mSteps = bf16 ? (m + 1) / 2 : m
        // Biases with whole [n, m] blocks (row stride m, column stride 1) are transposed once per call,
        // so that adding them to Sᵀ (keys as rows) reads contiguous queries.
        let transposedBiases: [[Float]?] = zip(biases, biasLayouts).map { b, layout in
            guard layout.col == 1, layout.row == m, b.count % (n * m) == 0 else { return nil }
            var t = [Float](repeating: 0, count: b.count)
            let src = b.floats
            for block in 0..<(b.count / (n * m)) {
                let base = block * n * m
                for i in 0..<n { for j in 0..<m { t[base + j * n + i] = src[base + i * m + j] } }
            }
            return t
        }
        Parallel.forRanges(count * queryTiles, threads: threads) { range in
            let worker = ScratchPool.shared.take()
            defer { ScratchPool.shared.give(worker) }
            let kp = worker.floats(0, max(1, kPanels * dSteps * mr))
            let vp = worker.floats(1, max(1, vPanels * mSteps * mr))
            // AVX-512 bf16: queries as rows of words first (`wordsPad` a multiple of 16), then transposed.
            let wordsPad = (dSteps + 15) / 16 * 16
            let queryWords: UnsafeMutablePointer<Float>? = bf16 && gemm.isa == .avx512 && tq == 32 ? worker.floats(8, tq * wordsPad) : nil
            // int8 scores (bf16 AVX-512 layout: 12 keys × 32 queries, the int8 kernels' tile): keys and
            // queries quantised into panels of words of four features, with their scales.
            let int8 = int8Scores && queryWords != nil && mr == Int8Gemm.mr && tq == Int8Gemm.nr && Int8Scores.supported(d: d, keysTransposed: k.keysTransposed)
            let qSteps = d / 4
            func words(_ slot: Int, _ count: Int) -> UnsafeMutablePointer<UInt32> {
                UnsafeMutableRawPointer(worker.floats(slot, max(1, count))).assumingMemoryBound(to: UInt32.self)
            }
            let keys8 = int8 ? words(9, kPanels * qSteps * mr) : nil, queries8 = int8 ? words(10, qSteps * tq) : nil
            let keyScales = worker.floats(11, int8 ? kPanels * mr : 1), queryScales = worker.floats(12, int8 ? tq : 1)
            let keyOffsets = UnsafeMutableRawPointer(worker.floats(13, int8 ? kPanels * mr : 1)).assumingMemoryBound(to: Int32.self)
            let row8 = UnsafeMutableRawPointer(worker.floats(14, int8 ? d / 4 : 1)).assumingMemoryBound(to: Int8.self)
            let qt = worker.floats(2, max(1, (queryWords == nil ? dSteps : wordsPad) * tq))
            let qs = worker.floats(3, bf16 ? max(1, tq * d, 3 * wordsPad) : 1)
            let pt = worker.floats(4, bf16 ? tk / 2 * tq : 1)
            let st = worker.floats(5, tk * tq)
            let acc = worker.floats(6, vPanels * mr * tq)
            let stats = worker.floats(7, 3 * tq)
            let (mx, sum, corr) = (stats, stats + tq, stats + 2 * tq)
            var packedSlice = -1
            for item in range {
                let p = item / queryTiles, q0 = (item % queryTiles) * tq, qn = min(tq, n - q0)
                if p != packedSlice {
                    let kb = key.floats + ik[p] * m * d, vb = v.floats + iv[p] * m * dv
                    let (lda, t) = k.keysTransposed ? (m, true) : (d, false)
                    if let keys8 {
                        Int8Scores.packKeys(kb, m: m, d: d, into: keys8, scales: keyScales, offsets: keyOffsets, row: row8)
                        Gemm.packA16(vb, lda: dv, transposed: true, rows: 0..<dv, steps: 0..<mSteps, depth: m, width: mr, into: vp, isa: gemm.isa)
                    } else if bf16 {
                        Gemm.packA16(kb, lda: lda, transposed: t, rows: 0..<m, steps: 0..<dSteps, depth: d, width: mr, into: kp, isa: gemm.isa)
                        Gemm.packA16(vb, lda: dv, transposed: true, rows: 0..<dv, steps: 0..<mSteps, depth: m, width: mr, into: vp, isa: gemm.isa)
                    } else {
                        Gemm.packA(kb, lda: lda, transposed: t, rows: 0..<m, depth: 0..<d, width: mr, into: kp)
                        Gemm.packA(vb, lda: dv, transposed: true, rows: 0..<dv, depth: 0..<m, width: mr, into: vp)
                    }
                    packedSlice = p
                }
                let qb = q.floats + iq[p] * n * d + q0 * d
                if let queries8 {
                    // (Scores in base-2 units, scale·log₂e, for the softmax's 2^x.)
                    Int8Scores.packQueries(qb, count: qn, d: d, factor: scale * 1.4426950408889634, into: queries8, scales: queryScales, row: row8)
                } else if let words = queryWords {
                    // The same words with sixteen lanes: each query's scaled row rounded to bf16 words
                    // (a row of `words`), then 16 × 16 blocks transposed into the panel.
                    let s2 = scale * 1.4426950408889634
                    let row = qs, w16 = UnsafeMutableRawPointer(row + 2 * wordsPad).assumingMemoryBound(to: UInt16.self)
                    for c in 0..<tq {
                        let wr = words + c * wordsPad
                        if c >= qn { wr.initialize(repeating: 0, count: wordsPad); continue }
                        let src = qb + c * d
                        for i in 0..<d { row[i] = src[i] * s2 }
                        if 2 * wordsPad > d { (row + d).initialize(repeating: 0, count: 2 * wordsPad - d) }
                        Gemm.convertToBF16(row, w16, 2 * wordsPad)
                        wr.update(from: UnsafeRawPointer(w16).assumingMemoryBound(to: Float.self), count: wordsPad)
                    }
                    for sb in stride(from: 0, to: wordsPad, by: 16) {
                        for cb in stride(from: 0, to: tq, by: 16) { Gemm.transpose16x16(words + cb * wordsPad + sb, wordsPad, qt + sb * tq + cb, tq) }
                    }
                } else if bf16 {
                    // Scaled in f32 (in base-2 units, scale·log₂e, for the softmax's 2^x) and transposed
                    // (d rows of tq queries, zeros past qn), then rounded to bf16 two rows at a time.
                    let s2 = scale * 1.4426950408889634
                    if qn < tq { qs.initialize(repeating: 0, count: d * tq) }
                    for c in 0..<qn {
                        let row = qb + c * d
                        for i in 0..<d { qs[i * tq + c] = row[i] * s2 }
                    }
                    for st in 0..<dSteps {
                        Gemm.pairRows(qs + 2 * st * tq, 2 * st + 1 < d ? qs + (2 * st + 1) * tq : nil, qt + st * tq, tq)
                    }
                } else {
                    Gemm.packB(qb, ldb: d, transposed: true, columns: 0..<qn, depth: 0..<d, width: tq, into: qt)
                    for i in 0..<(d * tq) { qt[i] *= scale }
                }
                for c in 0..<tq { mx[c] = -.infinity; sum[c] = 0 }
                acc.initialize(repeating: 0, count: vPanels * mr * tq)
                var j0 = 0
                while j0 < m {
                    let kn = min(tk, m - j0)
                    if let keys8, let queries8 {
                        for i in stride(from: 0, to: kn, by: mr) {
                            Int8Scores.scores(steps: qSteps, keys: keys8 + ((j0 + i) / mr) * qSteps * mr, queries: queries8, into: st + i * tq, ldc: tq,
                                              rows: min(mr, kn - i), offsets: keyOffsets + j0 + i, keyScales: keyScales + j0 + i, queryScales: queryScales)
                        }
                    } else {
                        for i in stride(from: 0, to: kn, by: mr) {
                            gemm.microRows(min(mr, kn - i), dSteps, kp + ((j0 + i) / mr) * dSteps * mr, qt, st + i * tq, tq, false)
                        }
                    }
                    let unit: Float = bf16 ? 1.4426950408889634 : 1  // biases in the scores' units
                    for (bi, layout) in biasLayouts.enumerated() {
                        let base = biases[bi].floats + layout.offsets[p]
                        if let t = transposedBiases[bi] {
                            t.withUnsafeBufferPointer { tb in
                                for r in 0..<kn {
                                    let row = st + r * tq, src = tb.baseAddress! + layout.offsets[p] + (j0 + r) * n + q0
                                    for c in 0..<qn { row[c] += src[c] * unit }
                                }
                            }
                        } else if layout.col == 1 {
                            // A query's biases are contiguous over keys: read them in order, write down Sᵀ's column.
                            for c in 0..<qn {
                                let bp = base + (q0 + c) * layout.row + j0
                                var d = st + c
                                for r in 0..<kn { d.pointee += bp[r] * unit; d += tq }
                            }
                        } else {
                            for r in 0..<kn {
                                let row = st + r * tq, bp = base + (j0 + r) * layout.col + q0 * layout.row
                                for c in 0..<qn { row[c] += bp[c * layout.row] * unit }
                            }
                        }
                    }
                    // bf16: Pᵀ as bf16 words (key rows 2s and 2s+1 in one word per query), written by the
                    // softmax step itself where the kernel set has that form.
                    let paired = bf16 && gemm.softmaxColumnsToPairs(st, kn, mx, sum, corr, pt)
                    if !paired { gemm.softmaxColumns(st, kn, mx, sum, corr) }
                    for r in 0..<(vPanels * mr) {
                        let a = acc + r * tq
                        for c in 0..<tq { a[c] *= corr[c] }
                    }
                    if bf16 {
                        let knSteps = (kn + 1) / 2
                        if !paired {
                            for s in 0..<knSteps {
                                Gemm.pairRows(st + 2 * s * tq, 2 * s + 1 < kn ? st + (2 * s + 1) * tq : nil, pt + s * tq, tq)
                            }
                        }
                        // (dv = 64 is 5⅓ panels of 12: the last one's 4 rows without its padding.)
                        for i in 0..<vPanels {
                            gemm.microRows(min(mr, dv - i * mr), knSteps, vp + i * mSteps * mr + (j0 / 2) * mr, pt, acc + i * mr * tq, tq, true)
                        }
                    } else {
                        for i in 0..<vPanels {
                            gemm.micro(kn, vp + i * m * mr + j0 * mr, st, acc + i * mr * tq, tq, true)
                        }
                    }
                    j0 += kn
                }
                // Out of Sᵀ's layout: each row of acc (one output feature, tq queries) scaled by the
                // queries' 1/sum, written down the output's column.
                let ob = out.floats + p * n * dv + q0 * dv
                for c in 0..<qn { corr[c] = 1 / sum[c] }
                if queryWords != nil && qn == tq && dv >= 16 {
                    // Sixteen lanes: rows of acc scaled, then 16 × 16 blocks transposed into the output rows
                    // (the same products; a last partial block of features overlaps the one before).
                    for r in 0..<dv {
                        let a = acc + r * tq
                        for c in 0..<tq { a[c] *= corr[c] }
                    }
                    var r0 = 0
                    while r0 < dv {
                        let rb = min(r0, dv - 16)
                        for cb in stride(from: 0, to: tq, by: 16) { Gemm.transpose16x16(acc + rb * tq + cb, tq, ob + cb * dv + rb, dv) }
                        r0 += 16
                    }
                    continue
                }
                for r in 0..<dv {
                    let a = acc + r * tq
                    var o = ob + r
                    for c in 0..<qn { o.pointee = a[c] * corr[c]; o += dv }
                }
            }
        }
    }
}
