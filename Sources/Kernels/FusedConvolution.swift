import Foundation
import Plan
import Tensors

/// The convolution kernel of plans: GEMM on OpenBLAS over an im2col scratch built one band of output
/// rows at a time (a few MB at any image size), the group-norm (+ SiLU) prologue applied to every
/// value as it is packed, and the epilogue (bias, activations, scale, residual adds) applied to the
/// band after its GEMM.
public enum FusedConvolution {
    /// Per-(image, channel) affine `a·x + b` of the group-norm prologue.
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
                    let base = x.floats + (b * c + g * cg) * spatial
                    var sum = 0.0, sq = 0.0
                    let count = cg * spatial
                    for i in 0..<count { let v = Double(base[i]); sum += v; sq += v * v }
                    let mean = sum / Double(count)
                    let variance = max(0, sq / Double(count) - mean * mean)
                    let rstd = 1 / (variance + Double(p.epsilon)).squareRoot()
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

    public static func run(_ k: Conv2DKernel, x: View, weight: View, operands: [View], out: View, threads: Int, scratchBytes: Int = 8 << 20) {
        let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
        let (oc, icg, kh, kw) = (weight.dims[0], weight.dims[1], weight.dims[2], weight.dims[3])
        let (oh, ow) = (out.dims[2], out.dims[3])
        let ocg = oc / k.groups, kk = icg * kh * kw
        var affine: [Float] = []
        if let p = k.prologue {
            affine = prologueAffine(x, p, scale: operands[p.scaleOperand].floats, bias: operands[p.biasOperand].floats, threads: threads)
        }
        let silu = k.prologue?.silu ?? false
        let direct = kh == 1 && kw == 1 && k.strides == [1, 1] && k.pads == [0, 0, 0, 0] && k.prologue == nil
        let rowsPerBand = direct ? oh : max(1, min(oh, scratchBytes / max(1, kk * ow * 4)))
        let col = UnsafeMutablePointer<Float>.allocate(capacity: direct ? 1 : kk * rowsPerBand * ow)
        defer { col.deallocate() }
        for b in 0..<n {
            for g in 0..<k.groups {
                let xg = x.floats + (b * c + g * icg) * h * w
                let wg = weight.floats + g * ocg * kk
                let og = out.floats + (b * oc + g * ocg) * oh * ow
                if direct {
                    BLAS.sgemm(m: ocg, n: oh * ow, k: kk, a: wg, lda: kk, b: xg, ldb: h * w, c: og, ldc: oh * ow)
                    applyEpilogue(k, out: out, operands: operands, image: b, channels: (g * ocg)..<((g + 1) * ocg), positions: 0..<(oh * ow), threads: threads)
                    continue
                }
                var r0 = 0
                while r0 < oh {
                    let rows = min(rowsPerBand, oh - r0)
                    let cols = rows * ow
                    Parallel.forRanges(icg, threads: threads) { channels in
                        for ci in channels {
                            let ch = g * icg + ci
                            let (a, bb) = affine.isEmpty ? (Float(1), Float(0)) : (affine[(b * c + ch) * 2], affine[(b * c + ch) * 2 + 1])
                            let normalize = !affine.isEmpty
                            for i in 0..<kh {
                                for j in 0..<kw {
                                    let dst = col + ((ci * kh + i) * kw + j) * cols
                                    for r in 0..<rows {
                                        let iy = (r0 + r) * k.strides[0] - k.pads[0] + i * k.dilations[0]
                                        let d = dst + r * ow
                                        if iy < 0 || iy >= h {
                                            d.initialize(repeating: 0, count: ow)
                                            continue
                                        }
                                        let src = xg + (ci * h + iy) * w
                                        for xo in 0..<ow {
                                            let ix = xo * k.strides[1] - k.pads[1] + j * k.dilations[1]
                                            guard ix >= 0 && ix < w else { d[xo] = 0; continue }
                                            var v = src[ix]
                                            if normalize {
                                                v = v * a + bb
                                                if silu { v = v / (1 + expf(-v)) }
                                            }
                                            d[xo] = v
                                        }
                                    }
                                }
                            }
                        }
                    }
                    BLAS.sgemm(m: ocg, n: cols, k: kk, a: wg, lda: kk, b: col, ldb: cols, c: og + r0 * ow, ldc: oh * ow)
                    applyEpilogue(k, out: out, operands: operands, image: b, channels: (g * ocg)..<((g + 1) * ocg),
                                  positions: (r0 * ow)..<((r0 + rows) * ow), threads: threads)
                    r0 += rows
                }
            }
        }
    }

    /// Bias then the epilogue steps, on output channels × a range of positions of one image.
    static func applyEpilogue(_ k: Conv2DKernel, out: View, operands: [View], image b: Int, channels: Range<Int>, positions: Range<Int>, threads: Int) {
        let plane = out.dims[2] * out.dims[3], oc = out.dims[1]
        let bias = k.hasBias ? operands[2].floats : nil
        guard bias != nil || !k.epilogue.isEmpty else { return }
        Parallel.forRanges(channels.count, threads: threads) { range in
            for ci in range {
                let ch = channels.lowerBound + ci
                let base = (b * oc + ch) * plane
                let o = out.floats + base
                let bv = bias?[ch] ?? 0
                for p in positions {
                    o[p] = Epilogue.apply(o[p] + bv, k.epilogue, operands: operands, index: base + p)
                }
            }
        }
    }
}

/// The epilogue steps on one value at flat index `index` of the output.
enum Epilogue {
    @inline(__always)
    static func apply(_ value: Float, _ steps: [EpilogueStep], operands: [View], index: Int) -> Float {
        var v = value
        for s in steps {
            switch s {
            case .activation(let name, let alpha): v = Activations.apply(name, v, alpha)
            case .scale(let f): v *= f
            case .addResidual(let i): v += operands[i].floats[index]
            }
        }
        return v
    }
}

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

/// Transposed convolution as GEMM + col2im: for a band of input rows, `cols = Wᵀ·x` (one column of
/// `out/g·kh·kw` per input pixel) on OpenBLAS, then each column is added into the output at its
/// strided position. The band keeps the column scratch a few MB.
public enum TransposedConvolution {
    public static func run(_ k: ConvTransposeKernel, x: View, weight: View, bias: View?, out: View, threads: Int, scratchBytes: Int = 8 << 20) {
        let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
        let (ocg, kh, kw) = (weight.dims[1], weight.dims[2], weight.dims[3])
        let (oc, oh, ow) = (out.dims[1], out.dims[2], out.dims[3])
        let icg = c / k.groups
        let rowsK = ocg * kh * kw
        let band = max(1, min(h, scratchBytes / max(1, rowsK * w * 4)))
        let col = UnsafeMutablePointer<Float>.allocate(capacity: rowsK * band * w)
        defer { col.deallocate() }
        // Bias first (or zero), then accumulate.
        Parallel.forRanges(n * oc, threads: threads) { range in
            for nc in range {
                let v = bias?.floats[nc % oc] ?? 0
                (out.floats + nc * oh * ow).initialize(repeating: v, count: oh * ow)
            }
        }
        for b in 0..<n {
            for g in 0..<k.groups {
                let xg = x.floats + (b * c + g * icg) * h * w
                let wg = weight.floats + g * icg * rowsK
                var r0 = 0
                while r0 < h {
                    let rows = min(band, h - r0)
                    let cols = rows * w
                    // col[rowsK, cols] = W_gᵀ [rowsK × icg] · x_g[:, band] [icg × cols]
                    BLAS.sgemm(transposeA: true, m: rowsK, n: cols, k: icg, a: wg, lda: rowsK, b: xg + r0 * w, ldb: h * w, c: col, ldc: cols)
                    // Output channels are independent: scatter them in parallel.
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
