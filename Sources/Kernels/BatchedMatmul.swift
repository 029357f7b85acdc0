import Foundation
import Plan
import Tensors
/// Batched matrix products with broadcast batch dimensions and transposed operands: one
/// single-threaded sgemm per batch item (or per fixed block of columns when there is one item).
public enum BatchedMatmul {
    public static func run(_ k: MatmulKernel, a: View, b: View, out: View, gemm: Gemm = Gemm(.openblas), threads: Int) {
        let ad = a.dims, bd = b.dims
        let m = k.transposeA ? ad[ad.count - 1] : ad[ad.count - 2]
        let kk = k.transposeA ? ad[ad.count - 2] : ad[ad.count - 1]
        let n = k.transposeB ? bd[bd.count - 2] : bd[bd.count - 1]
        let batch = Array(out.dims.dropLast(2))
        let ia = MatrixProduct.batchOffsets(Array(ad.dropLast(2)), batch), ib = MatrixProduct.batchOffsets(Array(bd.dropLast(2)), batch)
        let count = max(1, batch.reduce(1, *))
        let block = 256
        let blocks = count == 1 ? (n + block - 1) / block : 1
        Tiling.run(count * blocks, threads: threads, setup: { ScratchPool.shared.take() }, cleanup: { ScratchPool.shared.give($0) }) { t, worker in
            let scratch = worker.gemm
            let p = t / blocks, c0 = (t % blocks) * block, nn = blocks == 1 ? n : min(block, n - c0)
            let bBase = b.floats + ib[p] * kk * n
            gemm.sgemm(transposeA: k.transposeA, transposeB: k.transposeB, m: m, n: nn, k: kk,
                       a: a.floats + ia[p] * m * kk, lda: k.transposeA ? m : kk,
                       b: k.transposeB ? bBase + c0 * kk : bBase + c0, ldb: k.transposeB ? kk : n,
                       c: out.floats + p * m * n + c0, ldc: n, scratch: scratch)
        }
    }
}
