import Plan
import Tensors

/// Data movement on views of any dtype (element-size copies).
public enum MovementKernels {
    /// Whether `m` runs here (the rest uses the reference kernels).
    public static func supports(_ m: Movement) -> Bool {
        switch m {
        case .transpose, .concat, .split, .slice, .pad, .expand: return true
        case .resize(let r): return r.mode == .nearest && r.coordinateTransform == .asymmetric && r.nearestMode == .floor
        case .depthToSpace, .spaceToDepth: return true
        case .gather, .tile, .trilu: return false
        }
    }

    /// `out = x.take(indices, axis)` for i64/i32 indices (negative ones count from the end); false
    /// (nothing written) when an index is out of range or the indices have another dtype, so that the
    /// reference kernel reports it.
    public static func gather(_ x: View, indices: View, axis: Int, out: View, threads: Int) -> Bool {
        let a = axis < 0 ? axis + x.dims.count : axis
        guard a >= 0 && a < x.dims.count, indices.dtype == .i64 || indices.dtype == .i32 else { return false }
        let axisLength = x.dims[a]
        let n = indices.count
        var index = [Int](repeating: 0, count: n)
        for j in 0..<n {
            var v = indices.dtype == .i64 ? Int(indices.pointer.assumingMemoryBound(to: Int64.self)[j]) : Int(indices.pointer.assumingMemoryBound(to: Int32.self)[j])
            if v < 0 { v += axisLength }
            guard v >= 0 && v < axisLength else { return false }
            index[j] = v
        }
        let outer = x.dims[..<a].reduce(1, *)
        let inner = x.dims[(a + 1)...].reduce(1, *) * x.dtype.byteSize
        let src = x.pointer, dst = out.pointer
        index.withUnsafeBufferPointer { ix in
            Parallel.forRanges(outer * n, threads: threads, minimumPerThread: 64) { range in
                for item in range {
                    let (o, j) = (item / n, item % n)
                    (dst + item * inner).copyMemory(from: src + (o * axisLength + ix[j]) * inner, byteCount: inner)
                }
            }
        }
        return true
    }

    /// A transpose that swaps two blocks of trailing axes, `[outer, A, B] → [outer, B, A]` (e.g.
    /// NCHW → N(HW)C), in 32×32 tiles so that both sides are read and written a cache line at a time;
    /// false for other permutations.
    static func blockTranspose(_ x: View, perm: [Int], out: View, threads: Int) -> Bool {
        let n = perm.count
        var i = 0
        while i < n && perm[i] == i { i += 1 }
        guard i < n - 1 else { return false }
        let j = perm[i]  // the second block starts at axis j and runs to the end, then comes [i, j)
        guard j > i else { return false }
        let expected = Array(0..<i) + Array(j..<n) + Array(i..<j)
        guard perm == expected else { return false }
        let outer = x.dims[..<i].reduce(1, *), a = x.dims[i..<j].reduce(1, *), b = x.dims[j...].reduce(1, *)
        guard a >= 8 && b >= 8 else { return false }
        let src = x.pointer.assumingMemoryBound(to: UInt32.self), dst = out.pointer.assumingMemoryBound(to: UInt32.self)
        let tile = 32
        let tilesA = (a + tile - 1) / tile, tilesB = (b + tile - 1) / tile
        Parallel.forRanges(outer * tilesA, threads: threads) { range in
            for item in range {
                let o = item / tilesA, a0 = (item % tilesA) * tile, a1 = min(a, a0 + tile)
                let s0 = src + o * a * b, d0 = dst + o * a * b
                for bt in 0..<tilesB {
                    let b0 = bt * tile, b1 = min(b, b0 + tile)
                    for bb in b0..<b1 {
                        let d = d0 + bb * a
                        for aa in a0..<a1 { d[aa] = s0[aa * b + bb] }
                    }
                }
            }
        }
        return true
    }

    /// Copies: for each output index (row-major), the flat source index is Σ index[d]·stride[d] + base.
    static func strided(_ src: View, _ dst: UnsafeMutableRawPointer, dims: [Int], strides: [Int], base: Int, threads: Int) {
        let size = src.dtype.byteSize
        let n = dims.reduce(1, *)
        guard n > 0 else { return }
        let inner = dims.last ?? 1, innerStride = strides.last ?? 1
        let rows = n / max(inner, 1)
        let s = src.pointer
        Parallel.forRanges(rows, threads: threads, minimumPerThread: 256) { r in
            var index = [Int](repeating: 0, count: max(dims.count - 1, 0))
            for row in r {
                var rem = row
                for d in stride(from: dims.count - 2, through: 0, by: -1) { index[d] = rem % dims[d]; rem /= dims[d] }
                var off = base
                for d in 0..<(dims.count - 1) { off += index[d] * strides[d] }
                let out = dst + row * inner * size
                if innerStride == 1 {
                    out.copyMemory(from: s + off * size, byteCount: inner * size)
                } else if size == 4 {
                    let o = out.assumingMemoryBound(to: UInt32.self), i = (s + off * size).assumingMemoryBound(to: UInt32.self)
                    for j in 0..<inner { o[j] = i[j * innerStride] }
                } else {
                    for j in 0..<inner { (out + j * size).copyMemory(from: s + (off + j * innerStride) * size, byteCount: size) }
                }
            }
        }
    }

    static func contiguousStrides(_ dims: [Int]) -> [Int] { Shape(dims).contiguousStrides }

    public static func run(_ m: Movement, operands: [View], results: [View], threads: Int) {
        let x = operands[0]
        let size = x.dtype.byteSize
        switch m {
        case .transpose(let perm) where size == 4 && blockTranspose(x, perm: perm, out: results[0], threads: threads):
            break
        case .transpose(let perm):
            let st = contiguousStrides(x.dims)
            strided(x, results[0].pointer, dims: results[0].dims, strides: perm.map { st[$0] }, base: 0, threads: threads)
        case .slice(let starts, _, let steps):
            let st = contiguousStrides(x.dims)
            let base = zip(starts, st).reduce(0) { $0 + $1.0 * $1.1 }
            strided(x, results[0].pointer, dims: results[0].dims, strides: zip(steps, st).map { $0 * $1 }, base: base, threads: threads)
        case .expand:
            let out = results[0]
            strided(x, out.pointer, dims: out.dims, strides: ElementwiseKernels.broadcastStrides(x.dims, out.dims), base: 0, threads: threads)
        case .concat(let axis):
            let out = results[0]
            let a = axis < 0 ? axis + out.dims.count : axis
            let outer = out.dims[..<a].reduce(1, *)
            let row = out.dims[a...].reduce(1, *) * size
            var offset = 0
            for v in operands {
                let chunk = v.dims[a...].reduce(1, *) * size
                if chunk > 0 {
                    for o in 0..<outer { (out.pointer + o * row + offset).copyMemory(from: v.pointer + o * chunk, byteCount: chunk) }
                }
                offset += chunk
            }
        case .split(let axis, _):
            let a = axis < 0 ? axis + x.dims.count : axis
            let outer = x.dims[..<a].reduce(1, *)
            let row = x.dims[a...].reduce(1, *) * size
            var offset = 0
            for r in results {
                let chunk = r.dims[a...].reduce(1, *) * size
                if chunk > 0 {
                    for o in 0..<outer { (r.pointer + o * chunk).copyMemory(from: x.pointer + o * row + offset, byteCount: chunk) }
                }
                offset += chunk
            }
        case .pad(let mode, let pads, let value):
            let out = results[0]
            let rank = x.dims.count
            let odims = out.dims, st = contiguousStrides(x.dims)
            let inner = odims.last!, rows = out.count / max(inner, 1)
            let fill = Float(value)
            Parallel.forRanges(rows, threads: threads, minimumPerThread: 64) { r in
                var index = [Int](repeating: 0, count: rank)
                for row in r {
                    var rem = row
                    for d in stride(from: rank - 2, through: 0, by: -1) { index[d] = rem % odims[d]; rem /= odims[d] }
                    for j in 0..<inner {
                        index[rank - 1] = j
                        var off = 0
                        var outside = false
                        for d in 0..<rank {
                            var s = index[d] - pads[d]
                            let n = x.dims[d]
                            if s < 0 || s >= n {
                                switch mode {
                                case .edge: s = min(max(s, 0), n - 1)
                                case .reflect:
                                    let period = max(2 * (n - 1), 1)
                                    s = ((s % period) + period) % period
                                    if s >= n { s = period - s }
                                case .wrap: s = ((s % n) + n) % n
                                case .constant: outside = true
                                }
                            }
                            off += s * st[d]
                        }
                        let dst = out.pointer + (row * inner + j) * size
                        if outside {
                            if size == 4 { dst.storeBytes(of: fill, as: Float.self) } else { dst.initializeMemory(as: UInt8.self, repeating: 0, count: size) }
                        } else {
                            dst.copyMemory(from: x.pointer + off * size, byteCount: size)
                        }
                    }
                }
            }
        case .resize:
            // Nearest with integer factors (asymmetric, floor): source index = output index / factor.
            let out = results[0]
            let rank = x.dims.count
            let st = contiguousStrides(x.dims)
            let factors = (0..<rank).map { out.dims[$0] / max(x.dims[$0], 1) }
            let inner = out.dims.last!, rows = out.count / max(inner, 1)
            Parallel.forRanges(rows, threads: threads, minimumPerThread: 64) { r in
                var index = [Int](repeating: 0, count: rank)
                for row in r {
                    var rem = row
                    for d in stride(from: rank - 2, through: 0, by: -1) { index[d] = rem % out.dims[d]; rem /= out.dims[d] }
                    var off = 0
                    for d in 0..<(rank - 1) { off += (index[d] / factors[d]) * st[d] }
                    let dst = out.pointer + row * inner * size
                    let f = factors[rank - 1]
                    if size == 4 {
                        // Four-byte elements: a typed loop (each element repeated f times).
                        let d = dst.assumingMemoryBound(to: UInt32.self), s = (x.pointer + off * size).assumingMemoryBound(to: UInt32.self)
                        if f == 1 {
                            d.update(from: s, count: inner)
                        } else if f == 2 {
                            for j in 0..<(inner / 2) { let v = s[j]; d[2 * j] = v; d[2 * j + 1] = v }
                            if inner % 2 == 1 { d[inner - 1] = s[(inner - 1) / 2] }
                        } else if f == 4 && inner % 4 == 0 {
                            let d4 = UnsafeMutableRawPointer(d)
                            for j in 0..<(inner / 4) { d4.storeBytes(of: SIMD4<UInt32>(repeating: s[j]), toByteOffset: 16 * j, as: SIMD4<UInt32>.self) }
                        } else {
                            for j in 0..<inner { d[j] = s[j / f] }
                        }
                    } else {
                        for j in 0..<inner { (dst + j * size).copyMemory(from: x.pointer + (off + j / f) * size, byteCount: size) }
                    }
                }
            }
        case .depthToSpace(let b, let crd):
            let (n, cin, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
            let c = cin / (b * b)
            if size == 4 && (b == 2 || b == 4) {
                depthToSpace32(x.pointer, results[0].pointer, n: n, channels: c, height: h, width: w, block: b, crd: crd, threads: threads)
                return
            }
            // x as [n, c, b, b, h, w] (crd) or [n, b, b, c, h, w] (dcr), read as [n, c, h, b, w, b].
            let dims = [n, c, h, b, w, b]
            let strides = crd ? [cin * h * w, b * b * h * w, w, b * h * w, 1, h * w] : [cin * h * w, h * w, w, b * c * h * w, 1, c * h * w]
            strided(x, results[0].pointer, dims: dims, strides: strides, base: 0, threads: threads)
        case .spaceToDepth(let b, let crd):
            let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
            let (oh, ow) = (h / b, w / b)
            // Output [n, c, b, b, oh, ow] (crd) or [n, b, b, c, oh, ow] (dcr) read from x [n, c, oh, b, ow, b].
            let dims = crd ? [n, c, b, b, oh, ow] : [n, b, b, c, oh, ow]
            let strides = crd ? [c * h * w, h * w, w, 1, b * w, b] : [c * h * w, w, 1, h * w, b * w, b]
            strided(x, results[0].pointer, dims: dims, strides: strides, base: 0, threads: threads)
        default: break
        }
    }
}

extension MovementKernels {
    /// DepthToSpace of 4-byte elements with blocks of 2 or 4: each output row `(c, y, i)` interleaves
    /// the `b` input rows `(channel(c, i, j), y)`, j = 0..<b (`crd`: channel c·b² + i·b + j; DCR:
    /// (i·b + j)·c + c), four columns of each at a time.
    static func depthToSpace32(_ x: UnsafeRawPointer, _ out: UnsafeMutableRawPointer, n: Int, channels c: Int, height h: Int, width w: Int,
                               block b: Int, crd: Bool, threads: Int) {
        let src = x.assumingMemoryBound(to: UInt32.self), dst = out.assumingMemoryBound(to: UInt32.self)
        let plane = h * w, cin = c * b * b
        Parallel.forRanges(n * c * h * b, threads: threads, minimumPerThread: 64) { range in
            for row in range {
                let i = row % b, y = (row / b) % h, ch = (row / (b * h)) % c, image = row / (b * h * c)
                @inline(__always) func input(_ j: Int) -> UnsafePointer<UInt32> {
                    let channel = crd ? ch * b * b + i * b + j : (i * b + j) * c + ch
                    return UnsafePointer(src + (image * cin + channel) * plane + y * w)
                }
                let d = dst + row * w * b
                var xi = 0
                if b == 4 {
                    let (r0, r1, r2, r3) = (input(0), input(1), input(2), input(3))
                    while xi + 4 <= w {
                        // A 4 × 4 transpose: output columns 4·xi ..< 4·xi + 16.
                        let a = UnsafeRawPointer(r0 + xi).loadUnaligned(as: SIMD4<UInt32>.self), bb = UnsafeRawPointer(r1 + xi).loadUnaligned(as: SIMD4<UInt32>.self)
                        let cc = UnsafeRawPointer(r2 + xi).loadUnaligned(as: SIMD4<UInt32>.self), dd = UnsafeRawPointer(r3 + xi).loadUnaligned(as: SIMD4<UInt32>.self)
                        let o = SIMD16<UInt32>(a[0], bb[0], cc[0], dd[0], a[1], bb[1], cc[1], dd[1], a[2], bb[2], cc[2], dd[2], a[3], bb[3], cc[3], dd[3])
                        UnsafeMutableRawPointer(d + 4 * xi).storeBytes(of: o, as: SIMD16<UInt32>.self)
                        xi += 4
                    }
                    while xi < w { d[4 * xi] = r0[xi]; d[4 * xi + 1] = r1[xi]; d[4 * xi + 2] = r2[xi]; d[4 * xi + 3] = r3[xi]; xi += 1 }
                } else {
                    let (r0, r1) = (input(0), input(1))
                    while xi + 8 <= w {
                        let a = UnsafeRawPointer(r0 + xi).loadUnaligned(as: SIMD8<UInt32>.self), bb = UnsafeRawPointer(r1 + xi).loadUnaligned(as: SIMD8<UInt32>.self)
                        let o = SIMD16<UInt32>(a[0], bb[0], a[1], bb[1], a[2], bb[2], a[3], bb[3], a[4], bb[4], a[5], bb[5], a[6], bb[6], a[7], bb[7])
                        UnsafeMutableRawPointer(d + 2 * xi).storeBytes(of: o, as: SIMD16<UInt32>.self)
                        xi += 8
                    }
                    while xi < w { d[2 * xi] = r0[xi]; d[2 * xi + 1] = r1[xi]; xi += 1 }
                }
            }
        }
    }
}
