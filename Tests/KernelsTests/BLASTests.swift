import Kernels
import Testing

@Suite struct BLASTests {
    /// A plain triple loop in double precision, the oracle.
    static func reference(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: [Float], _ b: [Float]) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let x = ta ? a[p * m + i] : a[i * k + p]
                    let y = tb ? b[j * k + p] : b[p * n + j]
                    s += Double(x) * Double(y)
                }
                c[i * n + j] = Float(s)
            }
        }
        return c
    }

    @Test(arguments: [(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 1, 129), (1, 97, 31)])
    func matchesReference(m: Int, n: Int, k: Int) {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            var state: UInt32 = 99
            func next() -> Float {
                state = state &* 1_103_515_245 &+ 12345
                return Float(Int(state >> 9) % 2001 - 1000) / 1000
            }
            let a = (0..<(m * k)).map { _ in next() }, b = (0..<(k * n)).map { _ in next() }
            var c = [Float](repeating: .nan, count: m * n)
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        BLAS.sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: pa.baseAddress!, lda: ta ? m : k,
                                   b: pb.baseAddress!, ldb: tb ? k : n, c: pc.baseAddress!, ldc: n)
                    }
                }
            }
            let expected = Self.reference(ta, tb, m, n, k, a, b)
            let worst = zip(c, expected).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-5 * Float(k), "ta \(ta) tb \(tb): max error \(worst)")
        }
        #expect(!BLAS.coreName.isEmpty)
    }
}

import ReferenceKernels
import Tensors

/// The GEMM convolution and matrix products against the reference kernels, over odd shapes.
@Suite struct ConvolutionTests {
    static func random(_ shape: Shape, _ seed: UInt32) -> Tensor {
        var s = seed
        return Tensor((0..<shape.count).map { _ in s = s &* 1_664_525 &+ 1_013_904_223; return Float(Int(s >> 9) % 2001 - 1000) / 1000 }, shape: shape)
    }

    @Test(arguments: [
        ([1, 3, 7, 9], [5, 3, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
        ([2, 4, 8, 8], [6, 2, 3, 3], [2, 2], [1, 0, 1, 1], [1, 1], 2),
        ([1, 6, 9, 5], [6, 1, 3, 3], [1, 1], [2, 2, 2, 2], [2, 2], 6),
        ([1, 5, 6, 7], [4, 5, 1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 1),
        ([1, 2, 11, 13], [3, 2, 2, 2], [2, 2], [0, 0, 1, 1], [1, 1], 1),
    ])
    func matchesReference(x: [Int], w: [Int], strides: [Int], pads: [Int], dilations: [Int], groups: Int) {
        let input = Self.random(Shape(x), 1), weight = Self.random(Shape(w), 2), bias = Self.random([w[0]], 3)
        // A tiny scratch forces several bands of output rows.
        let fast = Convolution.conv2d(input, weight, bias, .init(strides: strides, pads: pads, dilations: dilations, groups: groups), scratchBytes: 200)
        let reference = Reference.conv2d(input, weight, bias, strides: strides, pads: pads, dilations: dilations, groups: groups, outShape: fast.shape)
        let worst = zip(fast.floats(), reference.floats()).map { abs($0 - $1) }.max() ?? 0
        #expect(worst < 1e-4, "max error \(worst)")
    }

    @Test func linearAndBatchedMatmul() {
        let x = Self.random([2, 3, 7], 4), w = Self.random([5, 7], 5), b = Self.random([5], 6)
        let l = MatrixProduct.linear(x, w, b), lr = Reference.linear(x, w, b)
        #expect(zip(l.floats(), lr.floats()).allSatisfy { abs($0 - $1) < 1e-5 })
        let a = Self.random([2, 1, 3, 4], 7), c = Self.random([3, 4, 6], 8)
        let m = MatrixProduct.matmul(a, c, outShape: [2, 3, 3, 6]), mr = Reference.matmul(a, c, outShape: [2, 3, 3, 6])
        #expect(zip(m.floats(), mr.floats()).allSatisfy { abs($0 - $1) < 1e-5 })
    }
}
