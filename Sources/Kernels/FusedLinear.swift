import Foundation
import Plan
import Tensors

/// The linear kernel of plans: `x [rows, K] · Wᵀ` on OpenBLAS, a band of rows at a time; the layer-norm
/// prologue normalises the band into a scratch as it is packed, the epilogue runs on the band's output.
public enum FusedLinear {
    public static func run(_ k: LinearKernel, x: View, weight: View, operands: [View], out: View, threads: Int, scratchBytes: Int = 8 << 20) {
        let (nOut, kk) = (weight.dims[0], weight.dims[1])
        let rows = x.count / kk
        let band = k.prologue == nil ? rows : max(1, min(rows, scratchBytes / max(1, kk * 4)))
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: k.prologue == nil ? 1 : band * kk)
        defer { scratch.deallocate() }
        var r0 = 0
        while r0 < rows {
            let n = min(band, rows - r0)
            var a = x.floats + r0 * kk
            if let p = k.prologue {
                let scale = operands[p.scaleOperand].floats
                let bias = p.biasOperand.map { operands[$0].floats }
                let src = a
                Parallel.forRanges(n, threads: threads, minimumPerThread: 16) { range in
                    for r in range {
                        let row = src + r * kk, dst = scratch + r * kk
                        var sum = 0.0, sq = 0.0
                        for i in 0..<kk { let v = Double(row[i]); sum += v; sq += v * v }
                        let mean = sum / Double(kk)
                        let rstd = Float(1 / (max(0, sq / Double(kk) - mean * mean) + Double(p.epsilon)).squareRoot())
                        let m = Float(mean)
                        for i in 0..<kk { dst[i] = (row[i] - m) * rstd * scale[i] + (bias?[i] ?? 0) }
                    }
                }
                a = scratch
            }
            let o = out.floats + r0 * nOut
            BLAS.sgemm(transposeB: true, m: n, n: nOut, k: kk, a: a, lda: kk, b: weight.floats, ldb: kk, c: o, ldc: nOut)
            if k.hasBias || !k.epilogue.isEmpty {
                let bias = k.hasBias ? operands[2].floats : nil
                let steps = k.epilogue
                let base = r0 * nOut
                Parallel.forRanges(n, threads: threads, minimumPerThread: 16) { range in
                    for r in range {
                        for j in 0..<nOut {
                            let i = r * nOut + j
                            o[i] = Epilogue.apply(o[i] + (bias?[j] ?? 0), steps, operands: operands, index: base + i)
                        }
                    }
                }
            }
            r0 += n
        }
    }
}

/// Batched matrix products with broadcast batch dimensions and transposed operands.
public enum BatchedMatmul {
    public static func run(_ k: MatmulKernel, a: View, b: View, out: View) {
        let ad = a.dims, bd = b.dims
        let m = k.transposeA ? ad[ad.count - 1] : ad[ad.count - 2]
        let kk = k.transposeA ? ad[ad.count - 2] : ad[ad.count - 1]
        let n = k.transposeB ? bd[bd.count - 2] : bd[bd.count - 1]
        let batch = Array(out.dims.dropLast(2))
        let ia = MatrixProduct.batchOffsets(Array(ad.dropLast(2)), batch), ib = MatrixProduct.batchOffsets(Array(bd.dropLast(2)), batch)
        for p in 0..<max(1, batch.reduce(1, *)) {
            BLAS.sgemm(transposeA: k.transposeA, transposeB: k.transposeB, m: m, n: n, k: kk,
                       a: a.floats + ia[p] * m * kk, lda: k.transposeA ? m : kk,
                       b: b.floats + ib[p] * kk * n, ldb: k.transposeB ? kk : n, c: out.floats + p * m * n, ldc: n)
        }
    }
}

/// `softmax(q·kᵀ·scale + biases)·v` in tiles: for each tile of queries, the key tiles stream through
/// with a running row maximum and sum (the flash-attention recurrence), so only a `tile × tile` block
/// of scores ever exists. Batch × head slices run on separate threads; the products are OpenBLAS GEMMs.
public enum Attention {
    public static let queryTile = 64
    public static let keyTile = 256

    public static func run(_ k: AttentionKernel, q: View, key: View, v: View, biases: [View], out: View, threads: Int) {
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
        let savedThreads = BLAS.threads
        if count > 1 && threads > 1 { BLAS.setThreads(1) }
        defer { if count > 1 && threads > 1 { BLAS.setThreads(savedThreads) } }
        let tq = min(queryTile, n), tk = min(keyTile, m)
        Parallel.forRanges(count, threads: count > 1 ? threads : 1) { range in
            let s = UnsafeMutablePointer<Float>.allocate(capacity: tq * tk)
            let acc = UnsafeMutablePointer<Float>.allocate(capacity: tq * dv)
            let qs = UnsafeMutablePointer<Float>.allocate(capacity: k.scaleQueries ? tq * d : 1)
            var rowMax = [Float](repeating: 0, count: tq), rowSum = [Float](repeating: 0, count: tq)
            defer { s.deallocate(); acc.deallocate(); qs.deallocate() }
            for p in range {
                let qb = q.floats + iq[p] * n * d, kb = key.floats + ik[p] * m * d, vb = v.floats + iv[p] * m * dv
                let ob = out.floats + p * n * dv
                var i0 = 0
                while i0 < n {
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
                            BLAS.sgemm(m: rows, n: cols, k: d, a: qt, lda: d, b: kb + j0, ldb: m, c: s, ldc: cols)
                        } else {
                            BLAS.sgemm(transposeB: true, m: rows, n: cols, k: d, a: qt, lda: d, b: kb + j0 * d, ldb: d, c: s, ldc: cols)
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
                                for c in 0..<cols { let e = expf(srow[c] - mx); srow[c] = e; sum += e }
                            }
                            rowSum[r] = rowSum[r] * correction + sum
                            rowMax[r] = mx
                            if correction != 1 { let a = acc + r * dv; for c in 0..<dv { a[c] *= correction } }
                        }
                        // acc += p_tile · v_tile
                        BLAS.sgemm(m: rows, n: dv, k: cols, a: s, lda: cols, b: vb + j0 * dv, ldb: dv, beta: 1, c: acc, ldc: dv)
                        j0 += cols
                    }
                    for r in 0..<rows {
                        let inv = 1 / rowSum[r]
                        let a = acc + r * dv, o = ob + (i0 + r) * dv
                        for c in 0..<dv { o[c] = a[c] * inv }
                    }
                    i0 += rows
                }
            }
        }
    }
}
