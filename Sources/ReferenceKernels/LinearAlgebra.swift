import Tensors

extension Reference {
    /// NumPy matmul: `[..., M, K] × [..., K, N]`, batch dimensions broadcast, rank-1 operands
    /// promoted (and the added axis removed). Sums in double precision.
    public static func matmul(_ a: Tensor, _ b: Tensor, outShape: Shape) -> Tensor {
        var ad = a.shape.dims, bd = b.shape.dims
        if ad.count == 1 { ad = [1] + ad }
        if bd.count == 1 { bd = bd + [1] }
        let m = ad[ad.count - 2], k = ad[ad.count - 1], n = bd[bd.count - 1]
        let batch = broadcastShapes(Array(ad.dropLast(2)), Array(bd.dropLast(2)))
        let batchCount = batch.reduce(1, *)
        let ia = broadcastIndices(from: Array(ad.dropLast(2)), to: batch)
        let ib = broadcastIndices(from: Array(bd.dropLast(2)), to: batch)
        let x = doubles(a), y = doubles(b)
        var out = [Double](repeating: 0, count: batchCount * m * n)
        for p in 0..<batchCount {
            let ao = ia[p] * m * k, bo = ib[p] * k * n, oo = p * m * n
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0
                    for q in 0..<k { s += x[ao + i * k + q] * y[bo + q * n + j] }
                    out[oo + i * n + j] = s
                }
            }
        }
        return tensor(out, a.dtype, outShape)
    }

    /// NumPy broadcasting of two shapes (callers have checked they broadcast).
    static func broadcastShapes(_ a: [Int], _ b: [Int]) -> [Int] {
        let r = max(a.count, b.count)
        let pa = [Int](repeating: 1, count: r - a.count) + a, pb = [Int](repeating: 1, count: r - b.count) + b
        return zip(pa, pb).map { $0 == 1 ? $1 : $0 }
    }

    /// `x [..., K] · weight [N, K]ᵀ + bias [N]`.
    public static func linear(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?) -> Tensor {
        let k = weight.shape.dims[1], n = weight.shape.dims[0]
        let rows = x.count / max(k, 1)
        let xv = doubles(x), w = doubles(weight), b = bias.map(doubles)
        var out = [Double](repeating: 0, count: rows * n)
        for r in 0..<rows {
            for j in 0..<n {
                var s = b?[j] ?? 0
                for q in 0..<k { s += xv[r * k + q] * w[j * k + q] }
                out[r * n + j] = s
            }
        }
        return tensor(out, x.dtype, Shape(x.shape.dims.dropLast() + [n]))
    }

    /// 2-D convolution, NCHW, weight `[out, in/groups, kh, kw]`, pads `[top, left, bottom, right]`.
    public static func conv2d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, strides: [Int], pads: [Int],
                              dilations: [Int], groups: Int, outShape: Shape) -> Tensor {
        let (n, c, h, w) = (x.shape.dims[0], x.shape.dims[1], x.shape.dims[2], x.shape.dims[3])
        let (oc, icg, kh, kw) = (weight.shape.dims[0], weight.shape.dims[1], weight.shape.dims[2], weight.shape.dims[3])
        let (oh, ow) = (outShape.dims[2], outShape.dims[3])
        let ocg = oc / groups
        let xv = doubles(x), wv = doubles(weight), bv = bias.map(doubles)
        var out = [Double](repeating: 0, count: n * oc * oh * ow)
        for b in 0..<n {
            for o in 0..<oc {
                let g = o / ocg
                for y in 0..<oh {
                    for xo in 0..<ow {
                        var s = bv?[o] ?? 0
                        for i in 0..<icg {
                            let ci = g * icg + i
                            for p in 0..<kh {
                                let iy = y * strides[0] - pads[0] + p * dilations[0]
                                if iy < 0 || iy >= h { continue }
                                for q in 0..<kw {
                                    let ix = xo * strides[1] - pads[1] + q * dilations[1]
                                    if ix < 0 || ix >= w { continue }
                                    s += xv[((b * c + ci) * h + iy) * w + ix] * wv[((o * icg + i) * kh + p) * kw + q]
                                }
                            }
                        }
                        out[((b * oc + o) * oh + y) * ow + xo] = s
                    }
                }
            }
        }
        return tensor(out, x.dtype, outShape)
    }

    /// 2-D transposed convolution, weight `[in, out/groups, kh, kw]`: every input pixel scatters
    /// its kernel into the (uncropped) output, which is then cropped by `pads`.
    public static func convTranspose2d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, strides: [Int], pads: [Int],
                                       dilations: [Int], groups: Int, outShape: Shape) -> Tensor {
        let (n, c, h, w) = (x.shape.dims[0], x.shape.dims[1], x.shape.dims[2], x.shape.dims[3])
        let (ocg, kh, kw) = (weight.shape.dims[1], weight.shape.dims[2], weight.shape.dims[3])
        let (oc, oh, ow) = (outShape.dims[1], outShape.dims[2], outShape.dims[3])
        let icg = c / groups
        let xv = doubles(x), wv = doubles(weight), bv = bias.map(doubles)
        var out = [Double](repeating: 0, count: n * oc * oh * ow)
        for b in 0..<n {
            for o in 0..<oc {
                for i in 0..<(oh * ow) { out[(b * oc + o) * oh * ow + i] = bv?[o] ?? 0 }
            }
            for ci in 0..<c {
                let g = ci / icg
                for iy in 0..<h {
                    for ix in 0..<w {
                        let v = xv[((b * c + ci) * h + iy) * w + ix]
                        for oo in 0..<ocg {
                            let o = g * ocg + oo
                            for p in 0..<kh {
                                let y = iy * strides[0] + p * dilations[0] - pads[0]
                                if y < 0 || y >= oh { continue }
                                for q in 0..<kw {
                                    let xo = ix * strides[1] + q * dilations[1] - pads[1]
                                    if xo < 0 || xo >= ow { continue }
                                    out[((b * oc + o) * oh + y) * ow + xo] += v * wv[((ci * ocg + oo) * kh + p) * kw + q]
                                }
                            }
                        }
                    }
                }
            }
        }
        return tensor(out, x.dtype, outShape)
    }

    /// Einsum over operands whose axes carry `labels`; the output has `outputLabels`. Every
    /// combination of the labels not in the output is summed.
    public static func einsum(_ operands: [Tensor], labels: [[Int]], outputLabels: [Int], outShape: Shape) -> Tensor {
        var sizes: [Int: Int] = [:]
        for (t, ls) in zip(operands, labels) {
            for (l, d) in zip(ls, t.shape.dims) { sizes[l] = max(sizes[l] ?? 1, d) }
        }
        let summed = sizes.keys.filter { !outputLabels.contains($0) }.sorted()
        let all = outputLabels + summed
        let position = Dictionary(uniqueKeysWithValues: all.enumerated().map { ($1, $0) })
        let values = operands.map(doubles)
        let opStrides = zip(operands, labels).map { t, ls -> [(Int, Int)] in
            let st = strides(t.shape.dims)
            // (position in `all`, stride), skipping broadcast size-1 axes.
            return ls.enumerated().map { (position[$1]!, t.shape.dims[$0] == 1 ? 0 : st[$0]) }
        }
        let outCount = outShape.count
        let sumDims = summed.map { sizes[$0]! }
        var out = [Double](repeating: 0, count: outCount)
        forEachIndex(outputLabels.map { sizes[$0]! }) { o, outIndex in
            var s = 0.0
            forEachIndex(sumDims.isEmpty ? [] : sumDims) { _, sumIndex in
                let full = outIndex + sumIndex
                var product = 1.0
                for (k, st) in opStrides.enumerated() {
                    var offset = 0
                    for (pos, stride) in st { offset += full[pos] * stride }
                    product *= values[k][offset]
                }
                s += product
            }
            out[o] = s
        }
        return tensor(out, operands[0].dtype, outShape)
    }
}
