import Tensors

/// 2-D convolution as GEMM (f32, NCHW): per image and group, `W [oc, ic·kh·kw] × col [ic·kh·kw, rows·ow]`
/// with OpenBLAS, the im2col scratch built for a band of output rows at a time so that it stays near
/// `scratchBytes` whatever the image size. 1×1 stride-1 unpadded convolutions use the input directly.
public enum Convolution {
    public struct Parameters: Sendable {
        public var strides: [Int]
        /// `[top, left, bottom, right]`
        public var pads: [Int]
        public var dilations: [Int]
        public var groups: Int

        public init(strides: [Int], pads: [Int], dilations: [Int], groups: Int) {
            self.strides = strides
            self.pads = pads
            self.dilations = dilations
            self.groups = groups
        }
    }

    /// `x [N, C, H, W]`, `weight [OC, C/groups, KH, KW]`, `bias [OC]?` → `[N, OC, OH, OW]`; the
    /// im2col scratch holds about `scratchBytes`.
    public static func conv2d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ p: Parameters, scratchBytes: Int = 8 << 20) -> Tensor {
        precondition(x.dtype == .f32 && weight.dtype == .f32)
        let (n, c, h, w) = (x.shape.dims[0], x.shape.dims[1], x.shape.dims[2], x.shape.dims[3])
        let (oc, icg, kh, kw) = (weight.shape.dims[0], weight.shape.dims[1], weight.shape.dims[2], weight.shape.dims[3])
        let oh = (h + p.pads[0] + p.pads[2] - p.dilations[0] * (kh - 1) - 1) / p.strides[0] + 1
        let ow = (w + p.pads[1] + p.pads[3] - p.dilations[1] * (kw - 1) - 1) / p.strides[1] + 1
        let out = Tensor.zeros(.f32, [n, oc, oh, ow])
        let ocg = oc / p.groups, k = icg * kh * kw
        let direct = kh == 1 && kw == 1 && p.strides == [1, 1] && p.pads == [0, 0, 0, 0]
        let rowsPerBand = direct ? oh : max(1, min(oh, scratchBytes / max(1, k * ow * 4)))
        let col = UnsafeMutablePointer<Float>.allocate(capacity: direct ? 1 : k * rowsPerBand * ow)
        defer { col.deallocate() }
        x.withElements(as: Float.self) { xs in
            weight.withElements(as: Float.self) { ws in
                let o = out.storage.mutableBytes!.bindMemory(to: Float.self).baseAddress!
                for b in 0..<n {
                    for g in 0..<p.groups {
                        let xg = xs.baseAddress! + (b * c + g * icg) * h * w
                        let wg = ws.baseAddress! + g * ocg * k
                        let og = o + (b * oc + g * ocg) * oh * ow
                        if direct {
                            BLAS.sgemm(m: ocg, n: oh * ow, k: k, a: wg, lda: k, b: xg, ldb: h * w, c: og, ldc: oh * ow)
                            continue
                        }
                        var r0 = 0
                        while r0 < oh {
                            let rows = min(rowsPerBand, oh - r0)
                            let cols = rows * ow
                            // col[(ci·kh + i)·kw + j][r·ow + x] = input at the tap, or 0 in the padding.
                            for ci in 0..<icg {
                                for i in 0..<kh {
                                    for j in 0..<kw {
                                        let dst = col + ((ci * kh + i) * kw + j) * cols
                                        for r in 0..<rows {
                                            let iy = (r0 + r) * p.strides[0] - p.pads[0] + i * p.dilations[0]
                                            let d = dst + r * ow
                                            if iy < 0 || iy >= h {
                                                d.initialize(repeating: 0, count: ow)
                                                continue
                                            }
                                            let src = xg + (ci * h + iy) * w
                                            for xo in 0..<ow {
                                                let ix = xo * p.strides[1] - p.pads[1] + j * p.dilations[1]
                                                d[xo] = ix >= 0 && ix < w ? src[ix] : 0
                                            }
                                        }
                                    }
                                }
                            }
                            BLAS.sgemm(m: ocg, n: cols, k: k, a: wg, lda: k, b: col, ldb: cols, c: og + r0 * ow, ldc: oh * ow)
                            r0 += rows
                        }
                    }
                }
                if let bias {
                    bias.withElements(as: Float.self) { bs in
                        for b in 0..<n { for ch in 0..<oc {
                            let plane = o + (b * oc + ch) * oh * ow
                            let v = bs[ch]
                            for i in 0..<(oh * ow) { plane[i] += v }
                        } }
                    }
                }
            }
        }
        return out
    }
}

/// Matrix products on OpenBLAS (f32).
public enum MatrixProduct {
    /// `x [..., K] · weight [N, K]ᵀ + bias [N]`.
    public static func linear(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?) -> Tensor {
        let (nOut, k) = (weight.shape.dims[0], weight.shape.dims[1])
        let rows = x.count / k
        let out = Tensor.zeros(.f32, Shape(x.shape.dims.dropLast() + [nOut]))
        x.withElements(as: Float.self) { xs in
            weight.withElements(as: Float.self) { ws in
                let o = out.storage.mutableBytes!.bindMemory(to: Float.self).baseAddress!
                BLAS.sgemm(transposeB: true, m: rows, n: nOut, k: k, a: xs.baseAddress!, lda: k, b: ws.baseAddress!, ldb: k, c: o, ldc: nOut)
                if let bias {
                    bias.withElements(as: Float.self) { bs in
                        for r in 0..<rows { for j in 0..<nOut { o[r * nOut + j] += bs[j] } }
                    }
                }
            }
        }
        return out
    }

    /// Batched `a [..., M, K] × b [..., K, N]` with broadcast batch dimensions (both operands rank ≥ 2).
    public static func matmul(_ a: Tensor, _ b: Tensor, outShape: Shape) -> Tensor {
        let ad = a.shape.dims, bd = b.shape.dims
        let (m, k, n) = (ad[ad.count - 2], ad[ad.count - 1], bd[bd.count - 1])
        let batch = Array(outShape.dims.dropLast(2))
        let count = batch.reduce(1, *)
        let ia = batchOffsets(Array(ad.dropLast(2)), batch), ib = batchOffsets(Array(bd.dropLast(2)), batch)
        let out = Tensor.zeros(.f32, outShape)
        a.withElements(as: Float.self) { xs in
            b.withElements(as: Float.self) { ys in
                let o = out.storage.mutableBytes!.bindMemory(to: Float.self).baseAddress!
                for p in 0..<count {
                    BLAS.sgemm(m: m, n: n, k: k, a: xs.baseAddress! + ia[p] * m * k, lda: k, b: ys.baseAddress! + ib[p] * k * n, ldb: n,
                               c: o + p * m * n, ldc: n)
                }
            }
        }
        return out
    }

    /// For each batch index of `out`, the batch index of an operand with batch dims `dims` (broadcast).
    static func batchOffsets(_ dims: [Int], _ out: [Int]) -> [Int] {
        let padded = [Int](repeating: 1, count: out.count - dims.count) + dims
        var strides = [Int](repeating: 0, count: out.count)
        var s = 1
        for i in stride(from: out.count - 1, through: 0, by: -1) {
            strides[i] = padded[i] == 1 ? 0 : s
            s *= padded[i]
        }
        var result: [Int] = []
        var index = [Int](repeating: 0, count: out.count)
        for _ in 0..<max(1, out.reduce(1, *)) {
            result.append(zip(index, strides).reduce(0) { $0 + $1.0 * $1.1 })
            var d = out.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < out[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        return result
    }
}
