import Foundation
import Plan
import Tensors

/// Work split into tiles whose size depends only on the shapes, never on the thread count; each tile
/// runs start to finish on one thread (OpenBLAS single-threaded inside it). So results are
/// bit-identical for any `--threads`, and OpenBLAS's own threads never spin against ours.
public enum Tiling {
    /// Target bytes of a tile's packed im2col panel (fits the L2 of one core with room to spare).
    public static let panelBytes = 1 << 20

    /// Runs `body(tile)` for tiles 0..<count over `threads` workers; `setup` makes a worker's scratch once.
    @inline(__always)
    static func run<S>(_ count: Int, threads: Int, setup: () -> S, cleanup: (S) -> Void = { _ in }, _ body: (Int, S) -> Void) {
        Parallel.forRanges(count, threads: threads) { range in
            let s = setup()
            for t in range { body(t, s) }
            cleanup(s)
        }
    }
}

/// The convolution kernel of plans: implicit GEMM over im2col panels built one band of output rows at
/// a time (a band is a tile: its panel stays near `Tiling.panelBytes` at any image size). A band
/// normalises the input rows it reads once (group-norm prologue, SiLU included), packs its panel with
/// row copies, runs one single-threaded sgemm, and applies bias and epilogue while the band is hot.
public enum FusedConvolution {
    /// Per-(image, channel) affine `a·x + b` of the group-norm prologue (statistics in double precision).
    static func prologueAffine(_ x: View, _ p: NormPrologue, scale: UnsafePointer<Float>, bias: UnsafePointer<Float>, threads: Int) -> [Float] {
        let (n, c) = (x.dims[0], x.dims[1])
        let spatial = x.count / (n * c)
        let cg = c / p.groups
        var affine = [Float](repeating: 0, count: n * c * 2)
        affine.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress!
            Parallel.forRanges(n * p.groups, threads: threads) { range in
                for ng in range {
                    let (b, g) = (ng / p.groups, ng % p.groups)
                    let (mean, rstd) = Normalization.statistics(x.floats + (b * c + g * cg) * spatial, count: cg * spatial, epsilon: p.epsilon)
                    for k in 0..<cg {
                        let ch = g * cg + k
                        let a = Double(scale[ch]) * rstd
                        o[(b * c + ch) * 2] = Float(a)
                        o[(b * c + ch) * 2 + 1] = Float(Double(bias[ch]) - mean * a)
                    }
                }
            }
        }
        return affine
    }

    struct Scratch {
        let col: UnsafeMutablePointer<Float>
        let rows: UnsafeMutablePointer<Float>
        func free() { col.deallocate(); rows.deallocate() }
    }

    public static func run(_ k: Conv2DKernel, x: View, weight: View, operands: [View], out: View, threads: Int) {
        let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
        let (oc, icg, kh, kw) = (weight.dims[0], weight.dims[1], weight.dims[2], weight.dims[3])
        let (oh, ow) = (out.dims[2], out.dims[3])
        let (sh, sw) = (k.strides[0], k.strides[1]), (dh, dw) = (k.dilations[0], k.dilations[1])
        let (pt, pl) = (k.pads[0], k.pads[1])
        let groups = k.groups, ocg = oc / groups, kk = icg * kh * kw
        var affine: [Float] = []
        if let p = k.prologue {
            affine = prologueAffine(x, p, scale: operands[p.scaleOperand].floats, bias: operands[p.biasOperand].floats, threads: threads)
        }
        let silu = k.prologue?.silu ?? false
        let epilogue = ResolvedEpilogue(k.epilogue, operands: operands)
        let bias: UnsafePointer<Float>? = k.hasBias ? UnsafePointer(operands[2].floats) : nil
        let plane = oh * ow
        // A 1×1, stride-1, unpadded convolution without prologue reads x as its panel directly.
        let direct = kh == 1 && kw == 1 && sh == 1 && sw == 1 && k.pads.allSatisfy { $0 == 0 } && affine.isEmpty
        let bandRows = direct ? max(1, min(oh, max(1, 4096 / max(ow, 1)))) : max(1, min(oh, Tiling.panelBytes / max(1, kk * ow * 4)))
        let bands = (oh + bandRows - 1) / bandRows
        // Input rows a band reads (with the halo of the kernel).
        let inputRows = min(h, (bandRows - 1) * sh + (kh - 1) * dh + 1)
        let tiles = n * groups * bands
        affine.withUnsafeBufferPointer { affineBuffer in
            let aff = affine.isEmpty ? nil : affineBuffer.baseAddress
            Tiling.run(tiles, threads: threads, setup: {
                Scratch(col: .allocate(capacity: direct ? 1 : kk * bandRows * ow), rows: .allocate(capacity: affine.isEmpty ? 1 : icg * inputRows * w))
            }, cleanup: { $0.free() }) { tile, s in
                let band = tile % bands, g = (tile / bands) % groups, b = tile / (bands * groups)
                let r0 = band * bandRows, rows = min(bandRows, oh - r0), cols = rows * ow
                let xg = x.floats + (b * c + g * icg) * h * w
                let wg = weight.floats + g * ocg * kk
                let og = out.floats + (b * oc + g * ocg) * plane + r0 * ow
                if direct {
                    BLAS.sgemm(m: ocg, n: cols, k: kk, a: wg, lda: kk, b: xg + r0 * ow, ldb: h * w, c: og, ldc: plane)
                } else {
                    // The input rows this band reads: [iy0, iy1).
                    let iy0 = max(0, r0 * sh - pt), iy1 = min(h, (r0 + rows - 1) * sh - pt + (kh - 1) * dh + 1)
                    var source: (Int, Int) -> UnsafePointer<Float> = { ci, iy in UnsafePointer(xg + (ci * h + iy) * w) }
                    if let aff, iy1 > iy0 {
                        let span = iy1 - iy0
                        for ci in 0..<icg {
                            let ch = g * icg + ci
                            let (a, bb) = (aff[(b * c + ch) * 2], aff[(b * c + ch) * 2 + 1])
                            let src = xg + (ci * h + iy0) * w, dst = s.rows + ci * span * w
                            if silu {
                                VectorMath.map(src, dst, span * w) { VectorMath.silu($0 * a + bb) }
                            } else {
                                VectorMath.map(src, dst, span * w) { $0 * a + bb }
                            }
                        }
                        let base = s.rows
                        source = { ci, iy in UnsafePointer(base + (ci * span + iy - iy0) * w) }
                    }
                    for ci in 0..<icg {
                        for i in 0..<kh {
                            for j in 0..<kw {
                                let dst = s.col + ((ci * kh + i) * kw + j) * cols
                                let shift = j * dw - pl
                                // Output columns whose input column is inside the row (stride sw).
                                let lo = min(ow, shift >= 0 ? 0 : (-shift + sw - 1) / sw)
                                let hi = w - 1 - shift < 0 ? lo : max(lo, min(ow, (w - 1 - shift) / sw + 1))
                                for r in 0..<rows {
                                    let iy = (r0 + r) * sh - pt + i * dh
                                    let d = dst + r * ow
                                    if iy < 0 || iy >= h {
                                        d.initialize(repeating: 0, count: ow)
                                        continue
                                    }
                                    let src = source(ci, iy)
                                    if lo > 0 { d.initialize(repeating: 0, count: lo) }
                                    if sw == 1 {
                                        if hi > lo { (d + lo).update(from: src + lo + shift, count: hi - lo) }
                                    } else {
                                        for xo in lo..<hi { d[xo] = src[xo * sw + shift] }
                                    }
                                    if hi < ow { (d + hi).initialize(repeating: 0, count: ow - hi) }
                                }
                            }
                        }
                    }
                    BLAS.sgemm(m: ocg, n: cols, k: kk, a: wg, lda: kk, b: s.col, ldb: cols, c: og, ldc: plane)
                }
                if bias != nil || !epilogue.isEmpty {
                    for o in 0..<ocg {
                        let ch = g * ocg + o
                        epilogue.apply(og + o * plane, count: cols, base: (b * oc + ch) * plane + r0 * ow, scalarBias: bias?[ch] ?? 0)
                    }
                }
            }
        }
    }
}

/// Transposed convolution as GEMM + col2im: for a band of input rows, `cols = Wᵀ·x` (one column of
/// `out/g·kh·kw` per input pixel), computed in fixed row blocks on separate threads, then each column
/// is added into the output at its strided position, output channels in parallel (each channel's
/// additions in a fixed order, so the result does not depend on the thread count).
public enum TransposedConvolution {
    public static func run(_ k: ConvTransposeKernel, x: View, weight: View, bias: View?, out: View, threads: Int) {
        let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
        let (ocg, kh, kw) = (weight.dims[1], weight.dims[2], weight.dims[3])
        let (oc, oh, ow) = (out.dims[1], out.dims[2], out.dims[3])
        let icg = c / k.groups
        let rowsK = ocg * kh * kw
        let band = max(1, min(h, (4 * Tiling.panelBytes) / max(1, rowsK * w * 4)))
        let col = UnsafeMutablePointer<Float>.allocate(capacity: rowsK * band * w)
        defer { col.deallocate() }
        Parallel.forRanges(n * oc, threads: threads) { range in
            for nc in range {
                let v = bias?.floats[nc % oc] ?? 0
                (out.floats + nc * oh * ow).initialize(repeating: v, count: oh * ow)
            }
        }
        let block = 64
        for b in 0..<n {
            for g in 0..<k.groups {
                let xg = x.floats + (b * c + g * icg) * h * w
                let wg = weight.floats + g * icg * rowsK
                var r0 = 0
                while r0 < h {
                    let rows = min(band, h - r0)
                    let cols = rows * w
                    // col[rowsK, cols] = W_gᵀ [rowsK × icg] · x_g[:, band] [icg × cols], in blocks of `block` rows.
                    Parallel.forRanges((rowsK + block - 1) / block, threads: threads) { blocks in
                        for blk in blocks {
                            let m0 = blk * block, m = min(block, rowsK - m0)
                            BLAS.sgemm(transposeA: true, m: m, n: cols, k: icg, a: wg + m0, lda: rowsK, b: xg + r0 * w, ldb: h * w,
                                       c: col + m0 * cols, ldc: cols)
                        }
                    }
                    Parallel.forRanges(ocg, threads: threads) { range in
                        for o in range {
                            let dst = out.floats + (b * oc + g * ocg + o) * oh * ow
                            for i in 0..<kh {
                                for j in 0..<kw {
                                    let src = col + ((o * kh + i) * kw + j) * cols
                                    for r in 0..<rows {
                                        let oy = (r0 + r) * k.strides[0] - k.pads[0] + i * k.dilations[0]
                                        guard oy >= 0 && oy < oh else { continue }
                                        let s = src + r * w, d = dst + oy * ow
                                        for xi in 0..<w {
                                            let ox = xi * k.strides[1] - k.pads[1] + j * k.dilations[1]
                                            if ox >= 0 && ox < ow { d[ox] += s[xi] }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    r0 += rows
                }
            }
        }
    }
}

/// Scalar activations by name (elementwise kernels' tails and rare paths).
enum Activations {
    @inline(__always)
    static func apply(_ name: String, _ v: Float, _ alpha: Float) -> Float {
        switch name {
        case "silu": return v / (1 + expf(-v))
        case "gelu": return 0.5 * v * (1 + erff(v * 0.70710678118654752))
        case "gelu_tanh": return 0.5 * v * (1 + tanhf(0.7978845608028654 * (v + 0.044715 * v * v * v)))
        case "relu": return max(v, 0)
        case "sigmoid": return 1 / (1 + expf(-v))
        default: return v >= 0 ? v : alpha * v
        }
    }
}
