#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif
import KernelsVNNI

/// Attention scores in int8 for plans with int8 activations (`--activations int8`, VNNI): each key
/// and each query quantised symmetric over its d features (`s = max |x| / 127`), the scores of a
/// tile of keys and queries summed exactly in int32 by `vpdpbusd`, then scaled by the key's and the
/// query's scales into f32 in the same pass (`scoresMicroKernelVNNI`). The softmax and the product
/// with V stay as in bf16 plans: the probabilities cannot be int8 (most of a 4096-key row sits below
/// 1/255 of its maximum). In the full-size denoise step, int8 scores moved the output's relative L2
/// error from 2.48 % to 2.49 % (measured by quantising Q and K in f32 before the bf16 products).
public enum Int8Scores {
    /// Whether `Attention` can take the scores in int8 here: VNNI, keys as rows `[m, d]`, d a multiple of 16.
    public static func supported(d: Int, keysTransposed: Bool) -> Bool {
        Int8Gemm.Kernel.vnni.isSupported && !keysTransposed && d % 16 == 0 && d > 0
    }

    /// The d values of `row` quantised into `bytes` (d signed bytes); returns the scale and Σ q.
    @inline(__always)
    static func quantize(_ row: UnsafePointer<Float>, _ d: Int, into bytes: UnsafeMutablePointer<Int8>) -> (scale: Float, sum: Int32) {
        // Lane-wise maxima (`vmaxps`), then one halving reduction.
        var lanes = Int8Linear.magnitude(UnsafeRawPointer(row).loadUnaligned(as: SIMD16<Float>.self))
        for i in stride(from: 16, to: d, by: 16) {
            let a = Int8Linear.magnitude(UnsafeRawPointer(row + i).loadUnaligned(as: SIMD16<Float>.self))
            lanes = SIMD16(lowHalf: _mm256_max_ps(lanes.lowHalf, a.lowHalf),
                           highHalf: _mm256_max_ps(lanes.highHalf, a.highHalf))
        }
        let m = Int8Linear.largestMagnitude(lanes, lanes)
        let inv: Float = m > 0 ? 127 / m : 0
        var sums = SIMD16<Int32>()
        for i in stride(from: 0, to: d, by: 16) {
            // |x · 127/m| ≤ 127 (up to rounding), so no clamp.
            let q = Int8Linear.roundToInt32(UnsafeRawPointer(row + i).loadUnaligned(as: SIMD16<Float>.self) * inv)
            UnsafeMutableRawPointer(bytes + i).storeBytes(of: SIMD16<Int8>(truncatingIfNeeded: q), as: SIMD16<Int8>.self)
            sums &+= q
        }
        return (m / 127, sums.wrappedSum())
    }

    /// Keys `[m, d]` (row stride d) as the A panels of the scores: panels of 12 keys, each step a word
    /// of four consecutive features as signed bytes (zeros past m); per key its scale and `128 · Σ q`.
    public static func packKeys(_ k: UnsafePointer<Float>, m: Int, d: Int, into panels: UnsafeMutablePointer<UInt32>,
                                scales: UnsafeMutablePointer<Float>, offsets: UnsafeMutablePointer<Int32>, row: UnsafeMutablePointer<Int8>) {
        let mr = Int8Gemm.mr, steps = d / 4
        let rows = (m + mr - 1) / mr * mr
        for j in 0..<rows {
            let dst = panels + (j / mr) * steps * mr + j % mr
            guard j < m else {
                for s in 0..<steps { dst[s * mr] = 0 }
                scales[j] = 0
                offsets[j] = 0
                continue
            }
            let (scale, sum) = quantize(k + j * d, d, into: row)
            let words = UnsafeRawPointer(row)
            for s in 0..<steps { dst[s * mr] = words.loadUnaligned(fromByteOffset: 4 * s, as: UInt32.self) }
            scales[j] = scale
            offsets[j] = 128 &* sum
        }
    }

    /// Queries `[count, d]` (row stride d) as the B panel of the scores: 32 columns, each step a word
    /// of four features as unsigned bytes `q + 128` (128 past `count`); per query its scale times
    /// `factor` (the attention's scale, in the softmax's units), 0 past `count`.
    public static func packQueries(_ q: UnsafePointer<Float>, count: Int, d: Int, factor: Float, into panel: UnsafeMutablePointer<UInt32>,
                                   scales: UnsafeMutablePointer<Float>, row: UnsafeMutablePointer<Int8>) {
        let nr = Int8Gemm.nr, steps = d / 4
        for c in 0..<nr {
            guard c < count else {
                for s in 0..<steps { panel[s * nr + c] = 0x8080_8080 }
                scales[c] = 0
                continue
            }
            let (scale, _) = quantize(q + c * d, d, into: row)
            let words = UnsafeRawPointer(row)
            for s in 0..<steps { panel[s * nr + c] = words.loadUnaligned(fromByteOffset: 4 * s, as: UInt32.self) ^ 0x8080_8080 }
            scales[c] = scale * factor
        }
    }

    /// `C[r][j]` for the first `rows` keys of a panel and the 32 queries (see `scoresMicroKernelVNNI`).
    @inline(__always)
    public static func scores(steps: Int, keys: UnsafePointer<UInt32>, queries: UnsafePointer<UInt32>, into c: UnsafeMutablePointer<Float>, ldc: Int,
                              rows: Int, offsets: UnsafePointer<Int32>, keyScales: UnsafePointer<Float>, queryScales: UnsafePointer<Float>) {
        scoresMicroKernelVNNI(steps, keys, queries, c, ldc, rows, offsets, keyScales, queryScales)
    }
}
