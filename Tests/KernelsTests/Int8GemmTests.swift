import Kernels
import Testing

/// The int8 GEMM (VNNI when the processor has it, AVX2, the plain loop) is exact: against an Int64 triple loop, over odd
/// sizes (tails in M, N and K, K not a multiple of 4) and the extreme values (−128, 127, 0, 255),
/// where a 16-bit intermediate (vpmaddubsw) would saturate.
@Suite struct Int8GemmTests {
    @Test(arguments: [(1, 1, 1), (13, 33, 7), (12, 32, 4), (25, 70, 301), (100, 40, 1153), (3, 129, 2)])
    func exact(m: Int, n: Int, k: Int) {
        var state: UInt32 = 5
        func next() -> UInt32 { state = state &* 1_103_515_245 &+ 12345; return state >> 8 }
        // A quarter of the values at the extremes.
        let a: [Int8] = (0..<(m * k)).map { _ in let r = next(); return r % 4 == 0 ? (r % 8 == 0 ? -128 : 127) : Int8(truncatingIfNeeded: Int(r % 256) - 128) }
        let b: [UInt8] = (0..<(k * n)).map { _ in let r = next(); return r % 4 == 0 ? 255 : UInt8(truncatingIfNeeded: r) }
        var expected = [Int32](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var s: Int64 = 0
            for p in 0..<k { s += Int64(a[i * k + p]) * Int64(b[p * n + j]) }
            expected[i * n + j] = Int32(s)
        } }
        let kernels: [Int8Gemm.Kernel?] = Int8Gemm.Kernel.allCases.filter(\.isSupported) + [nil]
        for kernel in kernels {
            var c = [Int32](repeating: -1, count: m * n)
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        Int8Gemm.multiply(m: m, n: n, k: k, a: pa.baseAddress!, lda: k, b: pb.baseAddress!, ldb: n, c: pc.baseAddress!, ldc: n,
                                          kernel: kernel)
                    }
                }
            }
            #expect(c == expected, "\(m)×\(n)×\(k) \(kernel?.rawValue ?? "loop")")
        }
    }
}

