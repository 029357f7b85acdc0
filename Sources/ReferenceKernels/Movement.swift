import Plan
import Tensors

extension Reference {
    /// Rows (or columns) of a 3×3 kernel that tap `d` of phase `a` sums, for a 3×3 convolution
    /// (padding 1) of an image enlarged 2× by nearest neighbour: output row 2i + a reads small rows
    /// {i − 1, i} (a = 0: kernel rows {0}, {1, 2}) or {i, i + 1} (a = 1: {0, 1}, {2}).
    public static func upsamplePhaseTaps(_ a: Int, _ d: Int) -> [Int] { a == 0 ? (d == 0 ? [0] : [1, 2]) : (d == 0 ? [0, 1] : [2]) }

    /// The four phase kernels `[4·oc, ic, 2, 2]` (phase 2a + b first, f32) of a 3×3 kernel `[oc, ic, 3, 3]`.
    public static func upsamplePhaseWeights(_ w: Tensor) -> Tensor {
        let d = w.shape.dims
        let (oc, ic) = (d[0], d[1])
        let v = doubles(w)
        var out = [Float](repeating: 0, count: 4 * oc * ic * 4)
        for p in 0..<4 {
            let (a, b) = (p / 2, p % 2)
            for o in 0..<oc {
                for ci in 0..<ic {
                    for dy in 0..<2 {
                        for dx in 0..<2 {
                            var s = 0.0
                            for ky in upsamplePhaseTaps(a, dy) { for kx in upsamplePhaseTaps(b, dx) { s += v[((o * ic + ci) * 3 + ky) * 3 + kx] } }
                            out[(((p * oc + o) * ic + ci) * 2 + dy) * 2 + dx] = Float(s)
                        }
                    }
                }
            }
        }
        return Tensor(out, shape: Shape([4 * oc, ic, 2, 2]))
    }

    /// The convolution of `x` enlarged 2× by nearest neighbour with the 3×3 kernel whose phase kernels
    /// are `phases` (`upsamplePhaseWeights`): each phase a 2×2 convolution of the small image (padding
    /// 1 − a above, a below, likewise for columns), interleaved.
    public static func upsampleConv2d(_ x: Tensor, phases: Tensor, bias: Tensor?) -> Tensor {
        let d = x.shape.dims, oc = phases.shape.dims[0] / 4, ic = phases.shape.dims[1]
        let (n, h, w) = (d[0], d[2], d[3])
        let ys = (0..<4).map { p -> Tensor in
            let (a, b) = (p / 2, p % 2)
            let wp = slice(phases, starts: [p * oc, 0, 0, 0], ends: [(p + 1) * oc, ic, 2, 2], steps: [1, 1, 1, 1])
            return conv2d(x, wp, bias, strides: [1, 1], pads: [1 - a, 1 - b, a, b], dilations: [1, 1], groups: 1, outShape: Shape([n, oc, h, w]))
        }
        var sources: [Int] = []
        sources.reserveCapacity(n * oc * 4 * h * w)
        for nn in 0..<n {
            for o in 0..<oc {
                for y in 0..<(2 * h) {
                    for xo in 0..<(2 * w) { sources.append(((((y % 2) * 2 + xo % 2) * n + nn) * oc + o) * h * w + (y / 2) * w + xo / 2) }
                }
            }
        }
        return gather(concat(ys, axis: 0), sources: sources, outShape: Shape([n, oc, 2 * h, 2 * w]))
    }

    /// NCHW enlarged twice by nearest neighbour: out[n, c, y, x] = x[n, c, y/2, x/2].
    public static func upsampleNearest2x(_ x: Tensor) -> Tensor {
        let d = x.shape.dims
        let (oh, ow) = (2 * d[2], 2 * d[3])
        var sources: [Int] = []
        sources.reserveCapacity(d[0] * d[1] * oh * ow)
        for p in 0..<(d[0] * d[1]) { for y in 0..<oh { for xo in 0..<ow { sources.append((p * d[2] + y / 2) * d[3] + xo / 2) } } }
        return gather(x, sources: sources, outShape: Shape([d[0], d[1], oh, ow]))
    }

    /// A layout's flat offsets: `rows[r] + columns[j]` in row-major (r, j) order (i32 tables).
    public static func layoutOffsets(rows: Tensor, columns: Tensor) -> [Int] {
        let r = rows.converted(to: .i64).withElements(as: Int64.self) { Array($0) }, c = columns.converted(to: .i64).withElements(as: Int64.self) { Array($0) }
        return r.flatMap { a in c.map { Int(a + $0) } }
    }

    /// `[rows, k]` whose element (r, j) is `x`'s flat element `rows[r] + columns[j]` (a linear's gathered input).
    public static func gatherLayout(_ x: Tensor, rows: Tensor, columns: Tensor) -> Tensor {
        gather(x, sources: layoutOffsets(rows: rows, columns: columns), outShape: Shape([rows.count, columns.count]))
    }

    /// `shape`-shaped, with `y [rows, n]`'s element (r, j) at flat `rows[r] + columns[j]` (a permutation).
    public static func scatterLayout(_ y: Tensor, rows: Tensor, columns: Tensor, shape: Shape) -> Tensor {
        let size = y.dtype.byteSize
        let out = Tensor.zeros(y.dtype, shape)
        let dst = out.storage.mutableBytes!.baseAddress!, src = y.bytes.baseAddress!
        for (i, d) in layoutOffsets(rows: rows, columns: columns).enumerated() { (dst + d * size).copyMemory(from: src + i * size, byteCount: size) }
        return out
    }

    /// Copies element `source[i]` (flat index into `x`) to each output position: data movement
    /// for every dtype, byte for byte.
    static func gather(_ x: Tensor, sources: [Int], outShape: Shape) -> Tensor {
        let size = x.dtype.byteSize
        let out = Tensor.zeros(x.dtype, outShape)
        let dst = out.storage.mutableBytes!.baseAddress!, src = x.bytes.baseAddress
        for (i, s) in sources.enumerated() {
            (dst + i * size).copyMemory(from: src! + s * size, byteCount: size)
        }
        return out
    }

    public static func reshape(_ x: Tensor, to shape: Shape) -> Tensor { Tensor(dtype: x.dtype, shape: shape, storage: x.storage) }

    public static func transpose(_ x: Tensor, perm: [Int]) -> Tensor {
        let dims = x.shape.dims
        let st = strides(dims)
        let outDims = perm.map { dims[$0] }
        var sources = [Int](repeating: 0, count: x.count)
        forEachIndex(outDims) { i, index in
            var s = 0
            for (k, p) in perm.enumerated() { s += index[k] * st[p] }
            sources[i] = s
        }
        return gather(x, sources: sources, outShape: Shape(outDims))
    }

    public static func concat(_ xs: [Tensor], axis: Int) -> Tensor {
        let dims = xs[0].shape.dims
        let a = axis < 0 ? axis + dims.count : axis
        let outer = dims[..<a].reduce(1, *)
        var outDims = dims
        outDims[a] = xs.reduce(0) { $0 + $1.shape.dims[a] }
        let out = Tensor.zeros(xs[0].dtype, Shape(outDims))
        let size = xs[0].dtype.byteSize
        let rowBytes = outDims[a...].reduce(1, *) * size
        var offset = 0
        for x in xs {
            let chunk = x.shape.dims[a...].reduce(1, *) * size
            guard chunk > 0 else { continue }
            for o in 0..<outer {
                (out.storage.mutableBytes!.baseAddress! + o * rowBytes + offset).copyMemory(from: x.bytes.baseAddress! + o * chunk, byteCount: chunk)
            }
            offset += chunk
        }
        return out
    }

    public static func split(_ x: Tensor, axis: Int, sizes: [Int]) -> [Tensor] {
        var start = 0
        let rank = x.shape.rank
        let a = axis < 0 ? axis + rank : axis
        return sizes.map { n in
            var starts = [Int](repeating: 0, count: rank), ends = x.shape.dims
            starts[a] = start
            ends[a] = start + n
            start += n
            return slice(x, starts: starts, ends: ends, steps: [Int](repeating: 1, count: rank))
        }
    }

    /// A static slice (starts/ends/steps per axis, already clamped: see `SliceSpec` in the IR).
    public static func slice(_ x: Tensor, starts: [Int], ends: [Int], steps: [Int]) -> Tensor {
        let st = strides(x.shape.dims)
        let outDims = (0..<starts.count).map { i -> Int in
            let (b, e, s) = (starts[i], ends[i], steps[i])
            return s > 0 ? max(0, (e - b + s - 1) / s) : max(0, (b - e - s - 1) / (-s))
        }
        var sources = [Int](repeating: 0, count: outDims.reduce(1, *))
        forEachIndex(outDims) { i, index in
            var s = 0
            for d in 0..<index.count { s += (starts[d] + index[d] * steps[d]) * st[d] }
            sources[i] = s
        }
        return gather(x, sources: sources, outShape: Shape(outDims))
    }

    public typealias PadMode = Plan.PadMode

    /// Pads (or, with negative pads, crops); `pads` = `[begin per axis..., end per axis...]`.
    public static func pad(_ x: Tensor, mode: PadMode, pads: [Int], value: Double) -> Tensor {
        let dims = x.shape.dims, rank = dims.count
        let st = strides(dims)
        let outDims = (0..<rank).map { dims[$0] + pads[$0] + pads[$0 + rank] }
        let v = doubles(x)
        var out = [Double](repeating: value, count: outDims.reduce(1, *))
        forEachIndex(outDims) { i, index in
            var s = 0
            for d in 0..<rank {
                var j = index[d] - pads[d]
                let n = dims[d]
                if j < 0 || j >= n {
                    switch mode {
                    case .constant: return
                    case .edge: j = min(max(j, 0), n - 1)
                    case .wrap: j = ((j % n) + n) % n
                    case .reflect:
                        if n == 1 { j = 0 } else {
                            let period = 2 * (n - 1)
                            j = ((j % period) + period) % period
                            if j >= n { j = period - j }
                        }
                    }
                }
                s += j * st[d]
            }
            out[i] = v[s]
        }
        return tensor(out, x.dtype, Shape(outDims))
    }

    /// `take(x, indices, axis)`; negative indices count from the end.
    public static func gather(_ x: Tensor, indices: Tensor, axis: Int) -> Tensor {
        let dims = x.shape.dims
        let a = axis < 0 ? axis + dims.count : axis
        let inner = dims[(a + 1)...].reduce(1, *), n = dims[a], outer = dims[..<a].reduce(1, *)
        let idx = doubles(indices).map { Int($0) }.map { $0 < 0 ? $0 + n : $0 }
        var sources: [Int] = []
        sources.reserveCapacity(outer * idx.count * inner)
        for o in 0..<outer {
            for k in idx {
                for i in 0..<inner { sources.append((o * n + min(max(k, 0), n - 1)) * inner + i) }
            }
        }
        return gather(x, sources: sources, outShape: Shape(Array(dims[..<a]) + indices.shape.dims + Array(dims[(a + 1)...])))
    }

    public static func expand(_ x: Tensor, to outShape: Shape) -> Tensor {
        gather(x, sources: broadcastIndices(from: x.shape.dims, to: outShape.dims), outShape: outShape)
    }

    public static func tile(_ x: Tensor, repeats: [Int]) -> Tensor {
        let dims = x.shape.dims
        let st = strides(dims)
        let outDims = zip(dims, repeats).map(*)
        var sources = [Int](repeating: 0, count: outDims.reduce(1, *))
        forEachIndex(outDims) { i, index in
            var s = 0
            for d in 0..<dims.count { s += (index[d] % dims[d]) * st[d] }
            sources[i] = s
        }
        return gather(x, sources: sources, outShape: Shape(outDims))
    }

    /// `[N, C·b², H, W]` → `[N, C, H·b, W·b]`. `crd`: input channel `c·b² + i·b + j` (PyTorch
    /// pixel_shuffle); otherwise `(i·b + j)·C + c` (ONNX DCR).
    public static func depthToSpace(_ x: Tensor, blockSize b: Int, crd: Bool) -> Tensor {
        let (n, cin, h, w) = (x.shape.dims[0], x.shape.dims[1], x.shape.dims[2], x.shape.dims[3])
        let c = cin / (b * b)
        let outDims = [n, c, h * b, w * b]
        var sources = [Int](repeating: 0, count: x.count)
        forEachIndex(outDims) { o, idx in
            let (bn, ch, y, xo) = (idx[0], idx[1], idx[2], idx[3])
            let (i, j) = (y % b, xo % b)
            let source = crd ? ch * b * b + i * b + j : (i * b + j) * c + ch
            sources[o] = ((bn * cin + source) * h + y / b) * w + xo / b
        }
        return gather(x, sources: sources, outShape: Shape(outDims))
    }

    /// `[N, C, H·b, W·b]` → `[N, C·b², H, W]`, the inverse of `depthToSpace` in the same order.
    public static func spaceToDepth(_ x: Tensor, blockSize b: Int, crd: Bool) -> Tensor {
        let (n, c, h, w) = (x.shape.dims[0], x.shape.dims[1], x.shape.dims[2], x.shape.dims[3])
        let outDims = [n, c * b * b, h / b, w / b]
        var sources = [Int](repeating: 0, count: x.count)
        forEachIndex(outDims) { o, idx in
            let (bn, oc, y, xo) = (idx[0], idx[1], idx[2], idx[3])
            let (ch, i, j) = crd ? (oc / (b * b), (oc % (b * b)) / b, oc % b) : (oc % c, (oc / c) / b, (oc / c) % b)
            sources[o] = ((bn * c + ch) * h + y * b + i) * w + xo * b + j
        }
        return gather(x, sources: sources, outShape: Shape(outDims))
    }

    /// Keeps the upper (or lower) triangle of the last two axes from diagonal `k`, zeroing the rest.
    public static func trilu(_ x: Tensor, upper: Bool, k: Int) -> Tensor {
        let dims = x.shape.dims
        let (m, n) = (dims[dims.count - 2], dims[dims.count - 1])
        var v = doubles(x)
        for i in 0..<v.count {
            let col = i % n, row = (i / n) % m
            let keep = upper ? col - row >= k : col - row <= k
            if !keep { v[i] = 0 }
        }
        return tensor(v, x.dtype, x.shape)
    }
}

extension Reference {
    public typealias ScatterReduction = Plan.ScatterReduction

    /// ONNX ScatterND: for each index tuple (the last axis of `indices`, k ≤ rank), the slice of
    /// `data` it names is replaced by (or combined with) the matching slice of `updates`, in order.
    public static func scatterND(_ data: Tensor, _ indices: Tensor, _ updates: Tensor, reduction: ScatterReduction) -> Tensor {
        let dims = data.shape.dims
        let k = indices.shape.dims.last ?? 0
        let st = strides(dims)
        let slice = dims[k...].reduce(1, *)
        var out = doubles(data)
        let idx = doubles(indices).map { Int($0) }
        let upd = doubles(updates)
        for t in 0..<(idx.count / max(k, 1)) {
            var base = 0
            for j in 0..<k {
                var i = idx[t * k + j]
                if i < 0 { i += dims[j] }
                base += i * st[j]
            }
            for e in 0..<slice {
                let u = upd[t * slice + e]
                switch reduction {
                case .none: out[base + e] = u
                case .add: out[base + e] += u
                case .mul: out[base + e] *= u
                case .max: out[base + e] = Swift.max(out[base + e], u)
                case .min: out[base + e] = Swift.min(out[base + e], u)
                }
            }
        }
        return tensor(out, data.dtype, data.shape)
    }
}
