import CBLAS

/// Row-major single-precision GEMM through OpenBLAS: `C = alpha * op(A) * op(B) + beta * C`,
/// with `op(A)` of shape `[m, k]`, `op(B)` of shape `[k, n]` and `C` of shape `[m, n]`.
///
/// OpenBLAS picks its kernels by CPU (or by `OPENBLAS_CORETYPE`, which this never changes).
public enum BLAS {
    public static func sgemm(transposeA: Bool = false, transposeB: Bool = false,
                             m: Int, n: Int, k: Int, alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        precondition(m >= 0 && n >= 0 && k >= 0)
        precondition(lda >= max(1, transposeA ? m : k) && ldb >= max(1, transposeB ? k : n) && ldc >= max(1, n))
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// Threads OpenBLAS uses for each call.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
    }

    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

    /// OpenBLAS's name for the kernel set in use (e.g. "Haswell", "SkylakeX", "Cooperlake").
    public static var coreName: String { String(cString: openblas_get_corename()) }
}
