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
