import Plan
import Kernels
import Executor
import CBLAS
import Tensors

/// int8 per-row quantisation with error compensation (GPTQ, Frantar et al. 2022): the weight's
/// columns are rounded one at a time, and each column's rounding error is spread over the columns
/// not yet rounded, weighted by how the layer's inputs correlate, so that the layer's *output*
/// error ‖(Q − W) X‖ on inputs like the calibration ones is smaller than with plain rounding. The
/// scales are plain rounding's (`max |w_r| / 127` per row), so the result is an ordinary
/// `int8-channel` weight: nothing changes for the kernels.
///
/// The input statistics are `H = Σ x xᵀ` over the calibration inputs `x` (the GEMM's input vectors:
/// a linear layer's rows, a convolution's im2col patches in the weight's `[ic, kh, kw]` order).
public enum ErrorCompensation {
    /// `h [k, k] += xᵀ x` for the rows of `x [rows, k]` (both row-major; only the upper triangle of
    /// `h` is updated, as `quantizeInt8PerRow` reads it).
    public static func accumulate(_ h: UnsafeMutablePointer<Float>, k: Int, x: UnsafePointer<Float>, rows: Int) {
        guard k > 0, rows > 0 else { return }
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, blasint(k), blasint(rows), 1, x, blasint(k), 1, h, blasint(k))
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// `w [rows, k]` (f32, any trailing shape flattening to k per row) quantised to int8 per row with
    /// error compensation against `h` (`[k, k]`, upper triangle used; overwritten). `damping` is
    /// added to the diagonal as a fraction of its mean (GPTQ's 0.01; larger trusts `h` less). Inputs
    /// never seen (a zero diagonal) are rounded plainly. `activationOrder`: round the columns whose
    /// inputs are largest (H's diagonal) first, so that their errors are the ones compensated by
    /// the most columns (GPTQ's "act-order"). Throws when the factorisation fails.
    public static func quantizeInt8PerRow(_ w: Tensor, hessian: UnsafeMutablePointer<Float>, damping: Float, activationOrder: Bool = false,
                                          block: Int = 128) throws -> (values: Tensor, scales: Tensor) {
        let q = try quantizeInt8(w, format: .int8Channel, hessian: hessian, damping: damping, activationOrder: activationOrder, block: block)
        return (q.values, q.scales!)
    }

    /// As `quantizeInt8PerRow`, in `format` (`int8-channel`, `int8-block32` or `int8-block16`): a
    /// block-format weight keeps the row scales and block codes of plain rounding
    /// (`Quantization.blockScales` of `w`), and each value is rounded with its block's scale.
    public static func quantizeInt8(_ w: Tensor, format: WeightFormat, hessian: UnsafeMutablePointer<Float>, damping: Float,
                                    activationOrder: Bool = false, block: Int = 128) throws -> QuantizedWeight {
        precondition(format.isInt8)
        let f = w.converted(to: .f32)
        let rows = max(1, w.shape.dims.first ?? 1)
        let k = rows > 0 ? w.count / rows : 0
        let values = Tensor.zeros(.i8, w.shape)
        let scales = Tensor.zeros(.f32, Shape([rows]))
        let coding = Quantization.BlockCoding(format)
        let codes: Tensor? = coding != nil ? Quantization.blockScales(f, format: format).codes : nil
        guard k > 0 else { return QuantizedWeight(format: format, values: values, scales: scales, blockCodes: codes) }
        let code: UnsafePointer<UInt8>? = codes.map { UnsafePointer($0.storage.mutableBytes!.bindMemory(to: UInt8.self).baseAddress!) }
        // Column i of the work is column order[i] of the weight.
        var order = Array(0..<k)
        var h = hessian
        var permuted: UnsafeMutablePointer<Float>?
        defer { permuted?.deallocate() }
        if activationOrder {
            order.sort { (hessian[$0 * k + $0], $1) > (hessian[$1 * k + $1], $0) }
            let p = UnsafeMutablePointer<Float>.allocate(capacity: k * k)
            for a in 0..<k {
                let i = order[a]
                for b in a..<k {
                    let j = order[b]
                    p[a * k + b] = i <= j ? hessian[i * k + j] : hessian[j * k + i]
                }
            }
            permuted = p
            h = p
        }
        // The upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU): row i of U weighs column i's error into the
        // columns after it. LAPACK is column-major: the row-major upper triangle is its lower one.
        var mean: Double = 0
        for i in 0..<k { mean += Double(h[i * k + i]) }
        mean /= Double(k)
        for i in 0..<k {
            if h[i * k + i] == 0 { h[i * k + i] = 1 }
            h[i * k + i] += damping * Float(mean > 0 ? mean : 1)
        }
        // (In single precision: double gave the same denoise error at 1.4× the time.)
        var n = Int32(k), info: Int32 = 0
        var lower = UInt8(ascii: "L")
        spotrf_(&lower, &n, h, &n, &info)
        guard info == 0 else { throw Failure(description: "the input statistics are not positive definite (potrf info \(info)); raise the damping") }
        spotri_(&lower, &n, h, &n, &info)
        guard info == 0 else { throw Failure(description: "the input statistics are singular (potri info \(info))") }
        // H⁻¹'s lower triangle (column-major), which the next factorisation reads, is in place.
        spotrf_(&lower, &n, h, &n, &info)
        guard info == 0 else { throw Failure(description: "the inverse statistics are not positive definite (potrf info \(info))") }
        // Column-major lower L (H⁻¹ = L Lᵀ, U = Lᵀ) read row-major is U: U[i, j] = h[i * k + j], j ≥ i.

        // wt [k, rows]: column i of w is row i here, contiguous.
        let wt = UnsafeMutablePointer<Float>.allocate(capacity: k * rows)
        defer { wt.deallocate() }
        let err = UnsafeMutablePointer<Float>.allocate(capacity: block * rows)
        defer { err.deallocate() }
        var scale = [Float](repeating: 0, count: rows)
        f.withElements(as: Float.self) { src in
            for r in 0..<rows {
                var m: Float = 0
                for i in 0..<k where src[r * k + i].isFinite { m = max(m, abs(src[r * k + i])) }
                scale[r] = m / 127
                for i in 0..<k {
                    let v = src[r * k + order[i]]
                    wt[i * rows + r] = v.isFinite ? v : 0
                }
            }
        }
        let q = values.storage.mutableBytes!.bindMemory(to: Int8.self)
        _ = scales.storage.mutableBytes!.bindMemory(to: Float.self).initialize(from: scale)
        var b0 = 0
        while b0 < k {
            let b1 = min(k, b0 + block)
            for i in b0..<b1 {
                let col = wt + i * rows, e = err + (i - b0) * rows
                let d = h[i * k + i]
                let blockOfColumn = order[i] / (coding?.size ?? 1)
                for r in 0..<rows {
                    var s = scale[r]
                    if let code, let coding { s = coding.scale(s, coding.code(code, row: r, block: blockOfColumn, k: k)) }
                    guard s > 0 else { e[r] = 0; continue }
                    let v = (col[r] / s).rounded()
                    let c = Int8(v.isNaN ? 0 : min(127, max(-127, v)))
                    q[r * k + order[i]] = c
                    e[r] = (col[r] - Float(c) * s) / d
                }
                for j in (i + 1)..<max(b1, i + 1) {
                    let u = h[i * k + j]
                    if u == 0 { continue }
                    let dst = wt + j * rows
                    for r in 0..<rows { dst[r] -= u * e[r] }
                }
            }
            if b1 < k {
                // wt[b1..<k] −= U[b0..<b1, b1..<k]ᵀ · err
                BLAS.sgemm(transposeA: true, m: k - b1, n: rows, k: b1 - b0, alpha: -1, a: h + b0 * k + b1, lda: k,
                           b: err, ldb: rows, beta: 1, c: wt + b1 * rows, ldc: rows)
            }
            b0 = b1
        }
        return QuantizedWeight(format: format, values: values, scales: scales, blockCodes: codes)
    }
}
