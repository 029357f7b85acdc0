import Kernels
import Testing

/// Our GEMM against a double-precision triple loop, on every instruction set this processor runs
/// (the AVX2 path is forced by constructing `Gemm(.avx2)`, so CI on any AVX-512 machine covers both).
@Suite struct GemmTests {
    static let engines: [ISA] = ISA.allCases.filter { $0 != .openblas && $0.isSupported }

    static func values(_ count: Int, seed: UInt32) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 1_103_515_245 &+ 12345
            return Float(Int(state >> 9) % 2001 - 1000) / 1000
        }
    }

    static func check(_ got: [Float], _ expected: [Float], k: Int, _ what: String) {
        // Each element is a sum of k products of values ≤ 1: rounding stays far below k·2⁻²⁰.
        let tolerance = Float(max(k, 1)) * 1e-6
        var worst: Float = 0
        for i in 0..<got.count { worst = max(worst, abs(got[i] - expected[i])) }
        #expect(worst <= tolerance, "\(what): max error \(worst)")
    }

    // Odd sizes and tails around every block edge: mr (6/12), nr (16/32), kc 256, mc/nc 384.
    @Test(arguments: [(1, 1, 1), (3, 5, 7), (12, 32, 256), (13, 33, 257), (7, 100, 31), (50, 17, 513),
                      (385, 70, 40), (25, 390, 300), (6, 16, 1), (0, 5, 3), (4, 4, 0)])
    func matchesReference(m: Int, n: Int, k: Int) {
        for isa in Self.engines {
            let gemm = Gemm(isa)
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = Self.values(m * k, seed: 7), b = Self.values(k * n, seed: 11), c0 = Self.values(m * n, seed: 13)
                let product = BLASTests.reference(ta, tb, m, n, k, a, b)
                for accumulate in [false, true] {
                    var c = accumulate ? c0 : [Float](repeating: .nan, count: m * n)
                    a.withUnsafeBufferPointer { pa in
                        b.withUnsafeBufferPointer { pb in
                            c.withUnsafeMutableBufferPointer { pc in
                                gemm.sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: pa.baseAddress!, lda: max(1, ta ? m : k),
                                           b: pb.baseAddress!, ldb: max(1, tb ? k : n), beta: accumulate ? 1 : 0, c: pc.baseAddress!, ldc: max(1, n))
                            }
                        }
                    }
                    let expected = accumulate ? zip(product, c0).map { $0 + $1 } : product
                    Self.check(c, expected, k: k, "\(isa) \(m)×\(n)×\(k) ta=\(ta) tb=\(tb) acc=\(accumulate)")
                }
            }
        }
    }

    /// Weights packed beforehand (A panels as convolutions use them, B panels of a transposed
    /// matrix as linear layers do), with strided C, give what the unpacked product gives, bit for bit.
    @Test(arguments: [(13, 45, 300), (30, 64, 77), (1, 200, 9)])
    func prepackedOperands(m: Int, n: Int, k: Int) {
        for isa in Self.engines {
            let gemm = Gemm(isa)
            let a = Self.values(m * k, seed: 3), w = Self.values(n * k, seed: 5)
            let ldc = n + 3
            func product(_ aOp: (UnsafePointer<Float>) -> GemmOperand, _ bOp: (UnsafePointer<Float>) -> GemmOperand) -> [Float] {
                var c = [Float](repeating: -1, count: m * ldc)
                a.withUnsafeBufferPointer { pa in
                    w.withUnsafeBufferPointer { pw in
                        c.withUnsafeMutableBufferPointer { pc in
                            gemm.run(m: m, n: n, k: k, a: aOp(pa.baseAddress!), b: bOp(pw.baseAddress!), c: pc.baseAddress!, ldc: ldc, accumulate: false)
                        }
                    }
                }
                return c
            }
            let packedA = a.withUnsafeBufferPointer { PackedMatrix.rowsOf($0.baseAddress!, rows: m, k: k, width: gemm.mr) }
            let packedB = w.withUnsafeBufferPointer { PackedMatrix.columnsOf($0.baseAddress!, columns: n, k: k, width: gemm.nr) }
            let plain = product({ .matrix($0, ld: k, transposed: false) }, { .matrix($0, ld: k, transposed: true) })
            let both = product({ _ in .panels(packedA.pointer, panelStride: packedA.panelStride) },
                               { _ in .panels(packedB.pointer, panelStride: packedB.panelStride) })
            #expect(plain == both, "\(isa): prepacked operands changed the result")
            let expected = BLASTests.reference(false, true, m, n, k, a, w)
            Self.check((0..<m).flatMap { plain[($0 * ldc)..<($0 * ldc + n)] }, expected, k: k, "\(isa) prepacked")
            // Padding columns of C are untouched.
            #expect((0..<m).allSatisfy { i in plain[(i * ldc + n)..<(i * ldc + ldc)].allSatisfy { $0 == -1 } })
        }
    }

    /// The micro-kernels sum every element in the same order, so the instruction sets agree exactly.
    @Test func instructionSetsAgreeBitForBit() {
        guard Self.engines.count > 1 else { return }
        let (m, n, k) = (37, 71, 600)
        let a = Self.values(m * k, seed: 17), b = Self.values(k * n, seed: 19)
        let results: [[Float]] = Self.engines.map { isa in
            var c = [Float](repeating: 0, count: m * n)
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        Gemm(isa).sgemm(m: m, n: n, k: k, a: pa.baseAddress!, lda: k, b: pb.baseAddress!, ldb: n, c: pc.baseAddress!, ldc: n)
                    }
                }
            }
            return c
        }
        #expect(results.dropFirst().allSatisfy { $0 == results[0] })
    }

    /// The scratch pool hands back the workers it was given; after `trim` (between the stages of a
    /// budgeted restore) it starts afresh: no idle worker, so no buffer sized for an earlier shape.
    @Test func scratchPoolTrimDropsIdleWorkers() {
        let pool = ScratchPool()
        let a = pool.take()
        _ = a.floats(0, 1 << 20)
        pool.give(a)
        let again = pool.take()
        #expect(again === a, "an idle worker is reused")
        pool.give(again)
        pool.trim()
        let fresh = pool.take()
        #expect(fresh !== a, "trim kept an idle worker")
    }
}
