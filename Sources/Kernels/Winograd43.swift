#if arch(x86_64)
import _Builtin_intrinsics.intel
import KernelsAVX512
#endif
import Plan
import Tensors

/// Winograd F(4,3) for f32 3×3, stride-1, undilated, ungrouped convolutions (Lavin & Gray, 2016,
/// interpolation points 0, ±1, ±2, ∞): each 4×4 block of outputs is `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` over
/// a 6×6 input tile d, so the products become 36 GEMMs `M_ξ = U_ξ · V_ξ` (output channels × input
/// channels × tiles) with 36/144 of the direct multiplies (F(2,3): 64/144), and the transformed
/// input is 36/16 of the output's size (F(2,3): 16/4). The same organisation as `Winograd.run`
/// (bands of tile rows, transformed into the GEMMs' B panels from a padded, normalised copy of the
/// band's input rows; the output transform writes the band's rows with the bias, then the epilogue),
/// for f32 packed weights only (`PackedMatrix.winogradWeights43`). With AVX-512 GEMMs the transforms
/// take sixteen tiles a vector (`winograd43InputAVX512`, `winograd43Output16AVX512`), read the input
/// itself when there is no prologue (masked loads make the zero borders), and apply a lone PReLU or
/// leaky ReLU epilogue in registers. Its error is a few times F(2,3)'s (the transforms'
/// coefficients reach 8 and 1/24), still ~1e-6 of the output's scale.
public enum Winograd43 {
    /// The transformed kernel u = G g Gᵀ (6×6, row-major) of one 3×3 kernel g (row-major).
    @inline(__always)
    static func transformKernel(_ g: UnsafePointer<Float>, into u: UnsafeMutablePointer<Float>) {
        // G g: 6×3 (rows of G applied to each column of g), then (G g) Gᵀ: 6×6.
        @inline(__always) func gRows(_ a: Float, _ b: Float, _ c: Float) -> (Float, Float, Float, Float, Float, Float) {
            (a / 4, -(a + b + c) / 6, -(a - b + c) / 6, a / 24 + b / 12 + c / 6, a / 24 - b / 12 + c / 6, c)
        }
        let c0 = gRows(g[0], g[3], g[6]), c1 = gRows(g[1], g[4], g[7]), c2 = gRows(g[2], g[5], g[8])
        for i in 0..<6 {
            @inline(__always) func pick(_ t: (Float, Float, Float, Float, Float, Float)) -> Float {
                switch i { case 0: return t.0; case 1: return t.1; case 2: return t.2; case 3: return t.3; case 4: return t.4; default: return t.5 }
            }
            let r = gRows(pick(c0), pick(c1), pick(c2))
            u[i * 6 + 0] = r.0; u[i * 6 + 1] = r.1; u[i * 6 + 2] = r.2; u[i * 6 + 3] = r.3; u[i * 6 + 4] = r.4; u[i * 6 + 5] = r.5
        }
    }

    public static func run(_ k: Conv2DKernel, x: View, packed: PackedMatrix, operands: [View], out: View, gemm: Gemm, threads: Int, affine: [Float]) {
        precondition(packed.element == nil && packed.groups == 36 && gemm.precision != .bf16, "Winograd F(4,3): f32 transformed weights")
        run(k, x: x, u: UnsafePointer(packed.pointer), groupStride: packed.groupStride, panelStride: packed.panelStride, operands: operands, out: out,
            gemm: gemm, threads: threads, affine: affine)
    }

    /// Whether `runQuantized` takes `[oc, c, 3, 3]` weights within `Conv2DKernel.quantizedWinograd43Bytes`
    /// of scratch (the denoise step's largest at 64×64 outputs, 960 → 320 channels, takes 44 MB).
    public static func quantizedFits(oc: Int, c: Int) -> Bool { 36 * oc * c * 4 <= Conv2DKernel.quantizedWinograd43Bytes }

    /// F(4,3) with quantised weights (int8, int8 blocks, f16: A panels of `[oc, c·9]`): the 36
    /// transformed kernels of every output channel computed once a call into shared scratch (the plan
    /// and the packed weights keep only the quantised values), then the bands as with f32 transformed
    /// weights. F(2,3) transforms them per band and block instead, which F(4,3)'s 36 kernels a pair
    /// of channels would make cost more than its multiplies save.
    public static func runQuantized(_ k: Conv2DKernel, x: View, packed: PackedMatrix, operands: [View], out: View, gemm: Gemm, threads: Int,
                                    affine: [Float]) {
        let (c, oc, mr) = (x.dims[1], out.dims[1], gemm.mr)
        guard case .quantized(let q) = packed.operand(), packed.groups == 1, packed.k == c * 9, packed.width == mr, gemm.precision != .bf16,
              quantizedFits(oc: oc, c: c) else {
            preconditionFailure("Winograd F(4,3) on quantised weights: f32 GEMMs on [oc, c·9] panels within \(Conv2DKernel.quantizedWinograd43Bytes) bytes")
        }
        let panels = (oc + mr - 1) / mr
        let panelStride = c * mr, groupStride = panels * panelStride + 16
        let shared = ScratchPool.shared.take()
        defer { ScratchPool.shared.give(shared) }
        let u = shared.floats(0, 36 * groupStride)
        transformQuantized(q, panels: panels, c: c, width: mr, into: u, groupStride: groupStride, threads: threads)
        run(k, x: x, u: UnsafePointer(u), groupStride: groupStride, panelStride: panelStride, operands: operands, out: out, gemm: gemm,
            threads: threads, affine: affine)
    }

    /// U_ξ of quantised `[oc, c·9]` panels of `width` rows: `u[ξ·groupStride + (panel·c + ci)·width + r]`,
    /// eight rows of a panel at a time (`transformKernel`'s arithmetic on vectors, in the same order).
    static func transformQuantized(_ q: QuantizedPanels, panels: Int, c: Int, width: Int, into u: UnsafeMutablePointer<Float>, groupStride: Int,
                                   threads: Int) {
        Parallel.forRanges(panels, threads: threads) { range in
            // One panel expanded to f32 (`[(ci·9 + t)·width + r]`), with room to read eight lanes past its end.
            let expanded = UnsafeMutablePointer<Float>.allocate(capacity: c * 9 * width + 16)
            defer { expanded.deallocate() }
            expanded.initialize(repeating: 0, count: c * 9 * width + 16)
            var lanes = [Float](repeating: 0, count: 36 * 8)
            lanes.withUnsafeMutableBufferPointer { lanes in
                let l = lanes.baseAddress!
                for panel in range {
                    q.expand(panels: panel..<(panel + 1), depth: 0..<(c * 9), width: width, into: expanded)
                    for ci in 0..<c {
                        for r0 in stride(from: 0, to: width, by: 8) {
                            @inline(__always) func g(_ t: Int) -> SIMD8<Float> {
                                UnsafeRawPointer(expanded + (ci * 9 + t) * width + r0).loadUnaligned(as: SIMD8<Float>.self)
                            }
                            @inline(__always) func gRows(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>)
                                -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
                                (a / 4, -(a + b + c) / 6, -(a - b + c) / 6, a / 24 + b / 12 + c / 6, a / 24 - b / 12 + c / 6, c)
                            }
                            let c0 = gRows(g(0), g(3), g(6)), c1 = gRows(g(1), g(4), g(7)), c2 = gRows(g(2), g(5), g(8))
                            for i in 0..<6 {
                                @inline(__always) func pick(_ t: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)) -> SIMD8<Float> {
                                    switch i { case 0: return t.0; case 1: return t.1; case 2: return t.2; case 3: return t.3; case 4: return t.4; default: return t.5 }
                                }
                                let t = gRows(pick(c0), pick(c1), pick(c2))
                                @inline(__always) func put(_ j: Int, _ v: SIMD8<Float>) { UnsafeMutableRawPointer(l + (i * 6 + j) * 8).storeBytes(of: v, as: SIMD8<Float>.self) }
                                put(0, t.0); put(1, t.1); put(2, t.2); put(3, t.3); put(4, t.4); put(5, t.5)
                            }
                            let rows = min(8, width - r0)
                            let base = (panel * c + ci) * width + r0
                            for xi in 0..<36 {
                                let d = u + xi * groupStride + base
                                for r in 0..<rows { d[r] = l[xi * 8 + r] }
                            }
                        }
                    }
                }
            }
        }
    }

    static func run(_ k: Conv2DKernel, x: View, u transformed: UnsafePointer<Float>, groupStride: Int, panelStride: Int, operands: [View], out: View,
                    gemm: Gemm, threads: Int, affine: [Float]) {
        let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
        let (oc, oh, ow) = (out.dims[1], out.dims[2], out.dims[3])
        let (pt, pl) = (k.pads[0], k.pads[1])
        let silu = k.prologue?.silu ?? false
        let epilogue = ResolvedEpilogue(k.epilogue, operands: operands, plane: oh * ow)
        let bias: UnsafePointer<Float>? = k.hasBias ? UnsafePointer(operands[2].floats) : nil
        let plane = oh * ow
        let (mr, nr) = (gemm.mr, gemm.nr)
        // With AVX-512 GEMMs, the transforms take sixteen tiles a vector (masked at the ends of rows and
        // panels), and the input's straight from it when there is no prologue to apply on the way.
        let avx512 = gemm.isa == .avx512
        // A PReLU or leaky ReLU epilogue applied by the output transform, in registers.
        let fusedSlope = epilogue.negativeSlope(plane: 0) != nil
        let tilesWide = (ow + 3) / 4, tilesHigh = (oh + 3) / 4
        // Bands of whole tile rows, about 96 tiles each (V of a band: 36 × 96 × c floats), at least
        // four bands a thread when the image allows it.
        var bandTiles = max(1, min(tilesHigh, 96 / max(tilesWide, 1)))
        var bands = (tilesHigh + bandTiles - 1) / bandTiles
        while bandTiles > 1 && n * bands < 4 * threads {
            bandTiles = (bandTiles + 1) / 2
            bands = (tilesHigh + bandTiles - 1) / bandTiles
        }
        // The band height (up to that one) whose bands share out best over the threads: the fewest
        // tile rows for the busiest thread, then the tallest bands (11 bands on 2 threads leave one
        // thread a band behind; 16 of 2 rows do not).
        var best = (rows: Int.max, tiles: bandTiles)
        for t in stride(from: bandTiles, through: max(1, bandTiles / 2), by: -1) {
            let b = (tilesHigh + t - 1) / t
            let rows = (n * b + threads - 1) / threads * t
            if rows < best.rows { best = (rows, t) }
        }
        bandTiles = best.tiles
        bands = (tilesHigh + bandTiles - 1) / bandTiles
        // Padded band: 4·bandTiles + 2 input rows; columns so that eight tiles' 32 + 4 floats can be loaded.
        let paddedRows = 4 * bandTiles + 2, paddedWidth = 32 * ((tilesWide + 7) / 8) + 8
        let maxTiles = bandTiles * tilesWide
        let tilePanels = (maxTiles + nr - 1) / nr
        // (The 36 V_ξ and M_ξ blocks 64 bytes more than their size apart: at a multiple of 4 KB, the
        // transforms' 36 streams of loads and stores would fall in the same L1 sets; 8% faster.)
        let vStride = tilePanels * c * nr + 16
        let aPanels = (oc + mr - 1) / mr
        let blocks = (aPanels + 7) / 8
        let blockRows = ((aPanels + blocks - 1) / blocks) * mr
        let mStride = blockRows * tilePanels * nr + 16
        affine.withUnsafeBufferPointer { aff in
            let take = { ScratchPool.shared.take() }, give = { (s: WorkerScratch) in ScratchPool.shared.give(s) }
            Tiling.run(n * bands, threads: threads, setup: take, cleanup: give) { item, worker in
                let (b, band) = (item / bands, item % bands)
                let ty0 = band * bandTiles, tr = min(bandTiles, tilesHigh - ty0)
                let tiles = tr * tilesWide
                let v = worker.floats(1, 36 * vStride)
                let xb = x.floats + b * c * h * w
                /// V of the band's tiles.
                func transformBand() {
                    #if arch(x86_64)
                    if avx512 && aff.isEmpty && !silu {
                        // Straight from the input: the transform's masked loads give the zero borders.
                        transformInputAVX512(channels: c, tileRows: tr, tilesWide: tilesWide, nr: nr, into: v, vStride: vStride) { ci, tyl in
                            (UnsafePointer(xb + ci * h * w), h, w, 4 * (ty0 + tyl) - pt, -pl)
                        }
                        return
                    }
                    #endif
                    let padded = worker.floats(0, c * paddedRows * paddedWidth + 64)
                    Winograd.copyBand(xb, channels: 0..<c, height: h, width: w, firstRow: 4 * ty0 - pt, left: pl, rows: paddedRows,
                                      rowWidth: paddedWidth, affine: aff.isEmpty ? nil : UnsafePointer(aff.baseAddress! + b * c * 2), silu: silu, into: padded)
                    #if arch(x86_64)
                    if avx512 {
                        transformInputAVX512(channels: c, tileRows: tr, tilesWide: tilesWide, nr: nr, into: v, vStride: vStride) { ci, tyl in
                            (UnsafePointer(padded + ci * paddedRows * paddedWidth), paddedRows, paddedWidth, 4 * tyl, 0)
                        }
                        return
                    }
                    #endif
                    transformInput(padded, channels: c, paddedRows: paddedRows, paddedWidth: paddedWidth, tileRows: tr, tilesWide: tilesWide,
                                   nr: nr, into: v, vStride: vStride)
                }
                transformBand()
                let m = worker.floats(2, 36 * mStride)
                let ob = out.floats + b * oc * plane
                for block in 0..<blocks {
                    let p0 = block * aPanels / blocks, p1 = (block + 1) * aPanels / blocks
                    let o0 = p0 * mr, orows = min(p1 * mr, oc) - o0
                    guard orows > 0 else { continue }
                    for xi in 0..<36 {
                        let u = transformed + xi * groupStride + p0 * panelStride
                        gemm.run(m: orows, n: tiles, k: c, a: .panels(u, panelStride: panelStride),
                                 b: .panels(v + xi * vStride, panelStride: c * nr), c: m + xi * mStride, ldc: tiles, accumulate: false,
                                 scratch: worker.gemm)
                    }
                    outputTransform(m, mStride: mStride, channels: orows, tileRows: tr, tilesWide: tilesWide, firstTileRow: ty0,
                                    out: ob + o0 * plane, oh: oh, ow: ow, bias: bias.map { $0 + o0 }, scratch: worker.floats(3, 4 * 64 + 16),
                                    avx512: avx512, slope: fusedSlope ? { epilogue.negativeSlope(plane: b * oc + o0 + $0)! } : nil)
                    if fusedSlope { continue }
                    Winograd.finishRows(epilogue, bias: nil, image: b, channels: o0..<(o0 + orows), outputChannels: oc, firstRow: 4 * ty0,
                                        rows: min(4 * tr, oh - 4 * ty0), width: ow, plane: plane, out: ob)
                }
            }
        }
    }

    /// Columns `q` = 0...3 of eight consecutive 6×6 tiles (stride 4 floats) starting at `p`, one vector
    /// per column, lane l = tile l: a 4×4 transpose of each pair of tiles (AVX2 unpacks).
    @inline(__always)
    static func columns(_ p: UnsafePointer<Float>) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        // a = [tile0 | tile4], b = [tile1 | tile5], c = [tile2 | tile6], d = [tile3 | tile7] (four columns each).
        let a = _mm256_loadu2_m128(p + 16, p), b = _mm256_loadu2_m128(p + 20, p + 4)
        let c = _mm256_loadu2_m128(p + 24, p + 8), d = _mm256_loadu2_m128(p + 28, p + 12)
        let t0 = _mm256_castps_pd(_mm256_unpacklo_ps(a, b)), t1 = _mm256_castps_pd(_mm256_unpackhi_ps(a, b))
        let t2 = _mm256_castps_pd(_mm256_unpacklo_ps(c, d)), t3 = _mm256_castps_pd(_mm256_unpackhi_ps(c, d))
        return (_mm256_castpd_ps(_mm256_unpacklo_pd(t0, t2)), _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t2)),
                _mm256_castpd_ps(_mm256_unpacklo_pd(t1, t3)), _mm256_castpd_ps(_mm256_unpackhi_pd(t1, t3)))
    }

    /// V_ξ = (Bᵀ d B)_ξ for every channel and tile of the band, as B panels:
    /// `v[ξ·vStride + (panel·channels + channel)·nr + j]` for tile `panel·nr + j` (zeros past the last tile).
    static func transformInput(_ padded: UnsafePointer<Float>, channels: Int, paddedRows: Int, paddedWidth: Int, tileRows: Int, tilesWide: Int,
                               nr: Int, into v: UnsafeMutablePointer<Float>, vStride: Int) {
        typealias V = SIMD8<Float>
        let tiles = tileRows * tilesWide
        let panels = (tiles + nr - 1) / nr
        let d = UnsafeMutablePointer<V>.allocate(capacity: 36), t = UnsafeMutablePointer<V>.allocate(capacity: 36)
        defer { d.deallocate(); t.deallocate() }
        let four = V(repeating: 4), five = V(repeating: 5), two = V(repeating: 2)
        @inline(__always) func bt(_ x0: V, _ x1: V, _ x2: V, _ x3: V, _ x4: V, _ x5: V) -> (V, V, V, V, V, V) {
            let a = x4 - four * x2, b = x3 - four * x1, e = x4 - x2, f = two * (x3 - x1)
            return (four * x0 - five * x2 + x4, a + b, a - b, e + f, e - f, four * x1 - five * x3 + x5)
        }
        for ci in 0..<channels {
            let base = padded + ci * paddedRows * paddedWidth
            for ty in 0..<tileRows {
                var tx0 = 0
                while tx0 < tilesWide {
                    let count = min(8, tilesWide - tx0)
                    // d[r][q] for eight tiles: column 4·tx + q of input row 4·ty + r.
                    for r in 0..<6 {
                        let row = UnsafePointer(base + (4 * ty + r) * paddedWidth + 4 * tx0)
                        let (q0, q1, q2, q3) = columns(row)
                        let (q4, q5, _, _) = columns(row + 4)
                        d[r * 6] = q0; d[r * 6 + 1] = q1; d[r * 6 + 2] = q2; d[r * 6 + 3] = q3; d[r * 6 + 4] = q4; d[r * 6 + 5] = q5
                    }
                    // Bᵀ d over the rows (for each column q), then over the columns of each row.
                    for q in 0..<6 {
                        let r = bt(d[q], d[6 + q], d[12 + q], d[18 + q], d[24 + q], d[30 + q])
                        t[q] = r.0; t[6 + q] = r.1; t[12 + q] = r.2; t[18 + q] = r.3; t[24 + q] = r.4; t[30 + q] = r.5
                    }
                    let first = ty * tilesWide + tx0
                    let inOnePanel = first % nr + count <= nr
                    let dst = v + ((first / nr) * channels + ci) * nr + first % nr
                    @inline(__always) func store(_ xi: Int, _ value: V) {
                        if inOnePanel && count == 8 {
                            UnsafeMutableRawPointer(dst + xi * vStride).storeBytes(of: value, as: V.self)
                        } else {
                            for l in 0..<count {
                                let tt = first + l
                                v[xi * vStride + ((tt / nr) * channels + ci) * nr + tt % nr] = value[l]
                            }
                        }
                    }
                    for row in 0..<6 {
                        let r = bt(t[row * 6], t[row * 6 + 1], t[row * 6 + 2], t[row * 6 + 3], t[row * 6 + 4], t[row * 6 + 5])
                        store(row * 6, r.0); store(row * 6 + 1, r.1); store(row * 6 + 2, r.2)
                        store(row * 6 + 3, r.3); store(row * 6 + 4, r.4); store(row * 6 + 5, r.5)
                    }
                    tx0 += 8
                }
            }
            for tt in tiles..<(panels * nr) {
                for xi in 0..<36 { v[xi * vStride + ((tt / nr) * channels + ci) * nr + tt % nr] = 0 }
            }
        }
    }

    #if arch(x86_64)
    /// `transformInput` with AVX-512, sixteen tiles at a time, each channel's input read from the plane
    /// `source(channel, tileRow)` gives: its base, height and width, and the plane row and column of the
    /// tile row's first tile's top-left corner (zeros outside the plane).
    static func transformInputAVX512(channels: Int, tileRows: Int, tilesWide: Int, nr: Int, into v: UnsafeMutablePointer<Float>, vStride: Int,
                                     source: (Int, Int) -> (UnsafePointer<Float>, Int, Int, Int, Int)) {
        let tiles = tileRows * tilesWide
        let panels = (tiles + nr - 1) / nr
        for ci in 0..<channels {
            for ty in 0..<tileRows {
                let (plane, height, width, row, column) = source(ci, ty)
                var tx0 = 0
                while tx0 < tilesWide {
                    winograd43InputAVX512(plane, height: height, width: width, firstRow: row, firstColumn: column + 4 * tx0,
                                          count: min(16, tilesWide - tx0), v + ci * nr, xiStride: vStride, first: ty * tilesWide + tx0, nr: nr,
                                          panelStride: channels * nr)
                    tx0 += 16
                }
            }
            for tt in tiles..<(panels * nr) {
                for xi in 0..<36 { v[xi * vStride + ((tt / nr) * channels + ci) * nr + tt % nr] = 0 }
            }
        }
    }
    #endif

    /// Y = Aᵀ M A for each (channel, tile) of a band, sixteen tiles of a tile row at a time, into the
    /// output rows `4·firstTileRow ...` of `channels` channels from `out`.
    static func outputTransform(_ m: UnsafePointer<Float>, mStride: Int, channels: Int, tileRows tr: Int, tilesWide: Int, firstTileRow ty0: Int,
                                out: UnsafeMutablePointer<Float>, oh: Int, ow: Int, bias: UnsafePointer<Float>?, scratch: UnsafeMutablePointer<Float>,
                                avx512: Bool = false, slope: ((Int) -> Float)? = nil) {
        typealias V = SIMD16<Float>
        let tiles = tr * tilesWide, plane = oh * ow
        let buffer = UnsafeMutableRawPointer(scratch).alignedUp(toMultipleOf: 64).bindMemory(to: Float.self, capacity: 4 * 64)
        let two = V(repeating: 2), four = V(repeating: 4), eight = V(repeating: 8)
        let s = UnsafeMutablePointer<V>.allocate(capacity: 24)
        defer { s.deallocate() }
        @inline(__always) func at(_ x0: V, _ x1: V, _ x2: V, _ x3: V, _ x4: V, _ x5: V) -> (V, V, V, V) {
            let a = x1 + x2, b = x1 - x2, c = x3 + x4, d = x3 - x4
            return (x0 + a + c, b + two * d, a + four * c, b + eight * d + x5)
        }
        for o in 0..<channels {
            let b = bias?[o] ?? 0, bv = V(repeating: b)
            let sl = slope?(o) ?? 1, sv = V(repeating: sl)
            for tyl in 0..<tr {
                var tx0 = 0
                #if arch(x86_64)
                while avx512 && tx0 + 16 <= tilesWide && 4 * tx0 + 64 <= ow {
                    let ty = ty0 + tyl
                    winograd43Output16AVX512(m + o * tiles + tyl * tilesWide + tx0, mStride, out + o * plane + 4 * ty * ow + 4 * tx0, ow,
                                             min(4, oh - 4 * ty), b, activate: slope != nil, slope: sl)
                    tx0 += 16
                }
                #endif
                while tx0 < tilesWide {
                    let count = min(16, tilesWide - tx0)
                    let t0 = tyl * tilesWide + tx0
                    @inline(__always) func load(_ xi: Int) -> V {
                        let src = m + xi * mStride + o * tiles + t0
                        if count == 16 { return UnsafeRawPointer(src).loadUnaligned(as: V.self) }
                        var v = V()
                        withUnsafeMutableBytes(of: &v) { $0.copyMemory(from: UnsafeRawBufferPointer(start: src, count: count * 4)) }
                        return v
                    }
                    // Aᵀ M over the rows (for each column q): rows s[i][q].
                    for q in 0..<6 {
                        let r = at(load(q), load(6 + q), load(12 + q), load(18 + q), load(24 + q), load(30 + q))
                        s[q] = r.0; s[6 + q] = r.1; s[12 + q] = r.2; s[18 + q] = r.3
                    }
                    let ty = ty0 + tyl
                    for i in 0..<4 {
                        let oy = 4 * ty + i
                        guard oy < oh else { continue }
                        let y = at(s[6 * i], s[6 * i + 1], s[6 * i + 2], s[6 * i + 3], s[6 * i + 4], s[6 * i + 5])
                        @inline(__always) func finish(_ v: V) -> V {
                            let x = v + bv
                            return slope == nil ? x : x.replacing(with: x * sv, where: x .< 0)
                        }
                        let (y0, y1, y2, y3) = (finish(y.0), finish(y.1), finish(y.2), finish(y.3))
                        let row = out + o * plane + oy * ow + 4 * tx0
                        let columns = min(4 * count, ow - 4 * tx0)
                        if columns == 64 {
                            // dst[4l + j] = y_j[l]: interleave (y0, y2) and (y1, y3), then the two results.
                            Winograd.storeInterleaved(y0, y2, buffer)
                            Winograd.storeInterleaved(y1, y3, buffer + 32)
                            let p0 = UnsafeRawPointer(buffer).loadUnaligned(as: V.self), p1 = UnsafeRawPointer(buffer + 16).loadUnaligned(as: V.self)
                            let q0 = UnsafeRawPointer(buffer + 32).loadUnaligned(as: V.self), q1 = UnsafeRawPointer(buffer + 48).loadUnaligned(as: V.self)
                            Winograd.storeInterleaved(p0, q0, row)
                            Winograd.storeInterleaved(p1, q1, row + 32)
                        } else {
                            for l in 0..<count {
                                let x = 4 * l
                                if x < columns { row[x] = y0[l] }
                                if x + 1 < columns { row[x + 1] = y1[l] }
                                if x + 2 < columns { row[x + 2] = y2[l] }
                                if x + 3 < columns { row[x + 3] = y3[l] }
                            }
                        }
                    }
                    tx0 += 16
                }
            }
        }
    }
}

extension PackedMatrix {
    /// The 36 transformed kernels U_ξ = (G g Gᵀ)_ξ of F(4,3) of `[oc, ic, 3, 3]` f32 weights, each as A
    /// panels (`groups` = 36: one per ξ).
    public static func winogradWeights43(_ w: UnsafePointer<Float>, oc: Int, ic: Int, width: Int, threads: Int = 1) -> PackedMatrix {
        transformedKernels(w, oc: oc, ic: ic, width: width, threads: threads, count: 36, transform: Winograd43.transformKernel)
    }
}
