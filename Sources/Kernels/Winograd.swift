#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif
import Plan
import Tensors

/// Winograd F(2,3) for 3×3, stride-1, undilated, ungrouped convolutions (Lavin & Gray, 2016): each
/// 2×2 block of outputs is `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` over a 4×4 input tile d, so the products become
/// 16 GEMMs `M_ξ = U_ξ · V_ξ` (output channels × input channels × tiles) with 16/36 of the direct
/// multiplies. The weights are transformed and packed once (`PackedMatrix.winogradWeights`, or
/// `winogradWeights16` for bf16); the input tiles are transformed sixteen at a time straight into the
/// GEMMs' B panels from a padded (normalised, for a prologue) copy of a band of input rows; the output
/// transform writes the band's rows, then bias and epilogue.
public enum Winograd {
    /// Whether `k` on this weight can run here.
    public static func eligible(_ k: Conv2DKernel, weight: [Int]) -> Bool {
        weight.count == 4 && weight[2] == 3 && weight[3] == 3 && k.strides == [1, 1] && k.dilations == [1, 1] && k.groups == 1
            && k.pads.allSatisfy { $0 <= 2 }
    }

    /// Sixteen bf16 words: `a` (rounded to nearest even) in the low halves, `b` in the high halves.
    @inline(__always)
    static func bf16Words(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
        @inline(__always) func rounded(_ v: SIMD16<Float>) -> SIMD16<UInt32> {
            let bits = unsafeBitCast(v, to: SIMD16<UInt32>.self)
            return bits &+ 0x7FFF &+ ((bits &>> 16) & 1)
        }
        let word = (rounded(a) &>> 16) | (rounded(b) & 0xFFFF_0000)
        return unsafeBitCast(word, to: SIMD16<Float>.self)
    }

    /// u = G g Gᵀ for one 3×3 kernel g (9 values, row-major) into 16 values (row-major 4×4).
    @inline(__always)
    static func transformKernel(_ g: UnsafePointer<Float>, into u: UnsafeMutablePointer<Float>) {
        // G g: 4×3, then (G g) Gᵀ: 4×4.
        var t = (SIMD4<Float>(), SIMD4<Float>(), SIMD4<Float>())  // columns j = 0, 1, 2 of G g
        for j in 0..<3 {
            let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j])
            let col = SIMD4<Float>(g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2)
            if j == 0 { t.0 = col } else if j == 1 { t.1 = col } else { t.2 = col }
        }
        for i in 0..<4 {
            let (a, b, c) = (t.0[i], t.1[i], t.2[i])
            u[i * 4 + 0] = a
            u[i * 4 + 1] = 0.5 * (a + b + c)
            u[i * 4 + 2] = 0.5 * (a - b + c)
            u[i * 4 + 3] = c
        }
    }

    /// `transformKernel` for a panel's rows at once: `g` holds `channels` kernels of `width` rows as
    /// expanded A panels (`g[(ci·9 + t)·width + r]`); U_ξ of row r and channel ci goes to
    /// `u[ξ·groupStride + ci·width + r]`. Four rows a vector (the last four overlapping when `width`
    /// is not a multiple of 4), the same operations in the same order as `transformKernel`.
    static func transformKernels(_ g: UnsafePointer<Float>, channels: Int, width: Int, into u: UnsafeMutablePointer<Float>, groupStride: Int) {
        precondition(width >= 4)
        typealias V = SIMD4<Float>
        let half = V(repeating: 0.5)
        for ci in 0..<channels {
            let src = g + ci * 9 * width, dst = u + ci * width
            var r = 0
            while r < width {
                let r0 = min(r, width - 4)
                @inline(__always) func tap(_ t: Int) -> V { UnsafeRawPointer(src + t * width + r0).loadUnaligned(as: V.self) }
                // Columns j of G g: (g0j, ½(g0j + g1j + g2j), ½(g0j − g1j + g2j), g2j), row i of g at taps 3i ..< 3i + 3.
                var t0 = (V(), V(), V(), V()), t1 = t0, t2 = t0
                for j in 0..<3 {
                    let (g0, g1, g2) = (tap(j), tap(3 + j), tap(6 + j))
                    let col = (g0, half * (g0 + g1 + g2), half * (g0 - g1 + g2), g2)
                    if j == 0 { t0 = col } else if j == 1 { t1 = col } else { t2 = col }
                }
                @inline(__always) func store(_ xi: Int, _ v: V) { UnsafeMutableRawPointer(dst + xi * groupStride + r0).storeBytes(of: v, as: V.self) }
                @inline(__always) func row(_ i: Int, _ a: V, _ b: V, _ c: V) {
                    store(i * 4 + 0, a)
                    store(i * 4 + 1, half * (a + b + c))
                    store(i * 4 + 2, half * (a - b + c))
                    store(i * 4 + 3, c)
                }
                row(0, t0.0, t1.0, t2.0)
                row(1, t0.1, t1.1, t2.1)
                row(2, t0.2, t1.2, t2.2)
                row(3, t0.3, t1.3, t2.3)
                r += 4
            }
        }
    }

    /// How the threads split the work: whole bands each, or each band together (`run`'s comment).
    public enum Schedule: Sendable { case automatic, bandPerThread, sharedBands }

    public static func run(_ k: Conv2DKernel, x: View, packed: PackedMatrix, operands: [View], out: View, gemm: Gemm, threads: Int,
                           affine: [Float], schedule: Schedule = .automatic) {
        let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
        let (oc, oh, ow) = (out.dims[1], out.dims[2], out.dims[3])
        let (pt, pl) = (k.pads[0], k.pads[1])
        let silu = k.prologue?.silu ?? false
        let epilogue = ResolvedEpilogue(k.epilogue, operands: operands, plane: out.dims[2] * out.dims[3])
        let bias: UnsafePointer<Float>? = k.hasBias ? UnsafePointer(operands[2].floats) : nil
        let plane = oh * ow
        let (mr, nr) = (gemm.mr, gemm.nr)
        // bf16: the GEMMs step over pairs of input channels.
        let bf16 = gemm.precision == .bf16
        // Quantised weights (int8, int8 blocks, f16: A panels of `[oc, c·9]`): transformed per call,
        // block of output channels and chunk of input channels at a time, into f32 U panels
        // (`transformQuantized`) just before their sixteen GEMMs, never as a whole matrix.
        let quantized: QuantizedPanels?
        if packed.element != nil, case .quantized(let q) = packed.operand() {
            precondition(!bf16 && packed.groups == 1 && packed.k == c * 9 && packed.width == gemm.mr, "quantised Winograd weights: f32 GEMMs on [oc, c·9] panels")
            quantized = q
        } else {
            quantized = nil
        }
        let steps = bf16 ? (c + 1) / 2 : c
        let perStep = bf16 ? 2 : 1
        let tilesWide = (ow + 1) / 2, tilesHigh = (oh + 1) / 2
        // Bands of whole tile rows, about 256 tiles each. With enough bands (large images), or
        // transformed weights small enough to stay in cache, each thread takes whole bands (halved
        // until there are four a thread): it transforms a band's tiles into its own V, then runs the
        // sixteen GEMMs and the output transform for all output channels, block by block. Otherwise
        // (few bands of large weights) the bands run one after the other and the threads share each:
        // they split its channels to transform it into one V, then its output channels. Either way no
        // band is transformed twice, and the transformed weights (16/9 of the kernel's) are read once
        // a band, each element used for its ~256 tiles rather than re-streamed for small bands.
        var bandTiles = max(1, min(tilesHigh, 256 / max(tilesWide, 1)))
        var bands = (tilesHigh + bandTiles - 1) / bandTiles
        let transformedBytes = quantized == nil ? packed.byteCount : 16 * packed.panels * packed.width * c * 4
        let bandParallel = schedule == .automatic ? n * bands >= 4 * threads || transformedBytes <= 3 << 20 : schedule == .bandPerThread
        while bandParallel && bandTiles > 1 && n * bands < 4 * threads {
            bandTiles = (bandTiles + 1) / 2
            bands = (tilesHigh + bandTiles - 1) / bandTiles
        }
        // Padded band: 2·bandTiles + 2 input rows, 2·tilesWide + 2 columns (zeros outside the input).
        // (Rounded up so that sixteen tiles' 34 columns can always be loaded: the extra ones are zeros.)
        let paddedRows = 2 * bandTiles + 2, paddedWidth = (2 * tilesWide + 2 + 31) / 32 * 32 + 2
        let maxTiles = bandTiles * tilesWide
        let tilePanels = (maxTiles + nr - 1) / nr
        let vStride = tilePanels * steps * nr + 16  // one ξ's B panels (+ 64 bytes: see Winograd43.run)
        // Output channels in blocks of whole A panels (at most 8); shared bands: a multiple of `threads` blocks.
        let aPanels = (oc + mr - 1) / mr
        let blocks = bandParallel ? (aPanels + 7) / 8 : min(aPanels, threads * max(1, (aPanels + 8 * threads - 1) / (8 * threads)))
        let blockRows = ((aPanels + blocks - 1) / blocks) * mr
        let mStride = blockRows * tilePanels * nr + 16  // one ξ's M block
        // Quantised weights: input channels in chunks of about 384 (U for a block: 16 × blockRows ×
        // chunk floats, ~2.4 MB at 96 rows), the GEMMs accumulating over the chunks.
        let channelChunks = (c + 383) / 384, channelChunk = (c + channelChunks - 1) / channelChunks
        // Shared bands: channels transformed in chunks of 8 steps.
        let stepChunk = 8, chunks = (steps + stepChunk - 1) / stepChunk
        affine.withUnsafeBufferPointer { aff in
            /// The band's tiles of the channels of `stepRange`, into `v`.
            func transform(_ b: Int, _ band: Int, _ stepRange: Range<Int>, _ v: UnsafeMutablePointer<Float>, _ worker: WorkerScratch) {
                let ty0 = band * bandTiles, tr = min(bandTiles, tilesHigh - ty0)
                let c0 = stepRange.lowerBound * perStep, c1 = min(c, stepRange.upperBound * perStep)
                let padded = worker.floats(0, (c1 - c0) * paddedRows * paddedWidth + 64)
                // The band's input rows of these channels, normalised, with zero borders.
                copyBand(x.floats + b * c * h * w, channels: c0..<c1, height: h, width: w, firstRow: 2 * ty0 - pt, left: pl, rows: paddedRows,
                         rowWidth: paddedWidth, affine: aff.isEmpty ? nil : UnsafePointer(aff.baseAddress! + b * c * 2), silu: silu, into: padded)
                transformInput(padded, channels: c, firstChannel: c0, steps: stepRange, paddedRows: paddedRows, paddedWidth: paddedWidth,
                               tileRows: tr, tilesWide: tilesWide, nr: nr, into: v, vStride: vStride, bf16: bf16)
            }
            /// The output channels of A panels `block·aPanels/blocks ..<` of the band, from its tiles in `v`.
            func multiply(_ b: Int, _ band: Int, _ block: Int, _ v: UnsafeMutablePointer<Float>, _ worker: WorkerScratch) {
                let ty0 = band * bandTiles, tr = min(bandTiles, tilesHigh - ty0)
                let tiles = tr * tilesWide
                let p0 = block * aPanels / blocks, p1 = (block + 1) * aPanels / blocks
                let o0 = p0 * mr, orows = min(p1 * mr, oc) - o0
                guard orows > 0 else { return }
                let m = worker.floats(2, 16 * mStride)
                if let quantized {
                    let blockPanels = p1 - p0
                    let u = worker.floats(4, 16 * blockPanels * channelChunk * mr), g = worker.floats(5, channelChunk * 9 * mr)
                    var c0 = 0
                    while c0 < c {
                        let cc = min(channelChunk, c - c0), uStride = blockPanels * cc * mr
                        for p in p0..<p1 {
                            quantized.expand(panels: p..<(p + 1), depth: (c0 * 9)..<((c0 + cc) * 9), width: mr, into: g)
                            transformKernels(g, channels: cc, width: mr, into: u + (p - p0) * cc * mr, groupStride: uStride)
                        }
                        for xi in 0..<16 {
                            gemm.run(m: orows, n: tiles, k: cc, a: .panels(u + xi * uStride, panelStride: cc * mr),
                                     b: .panels(v + xi * vStride + c0 * nr, panelStride: steps * nr), c: m + xi * mStride, ldc: tiles,
                                     accumulate: c0 > 0, scratch: worker.gemm)
                        }
                        c0 += cc
                    }
                } else {
                  for xi in 0..<16 {
                    let u = packed.pointer + xi * packed.groupStride + p0 * packed.panelStride
                    gemm.run(m: orows, n: tiles, k: steps, a: .panels(u, panelStride: packed.panelStride),
                             b: .panels(v + xi * vStride, panelStride: steps * nr), c: m + xi * mStride, ldc: tiles, accumulate: false,
                             scratch: worker.gemm)
                  }
                }
                let ob = out.floats + b * oc * plane
                outputTransform(m, mStride: mStride, channels: orows, tileRows: tr, tilesWide: tilesWide, firstTileRow: ty0,
                                out: ob + o0 * plane, oh: oh, ow: ow, rows: worker.floats(3, 8 * 16 + 16))
                finishRows(epilogue, bias: bias, image: b, channels: o0..<(o0 + orows), outputChannels: oc, firstRow: 2 * ty0,
                           rows: min(2 * tr, oh - 2 * ty0), width: ow, plane: plane, out: ob)
            }
            let take = { ScratchPool.shared.take() }, give = { (s: WorkerScratch) in ScratchPool.shared.give(s) }
            if bandParallel {
                Tiling.run(n * bands, threads: threads, setup: take, cleanup: give) { item, worker in
                    let v = worker.floats(1, 16 * vStride)
                    transform(item / bands, item % bands, 0..<steps, v, worker)
                    for block in 0..<blocks { multiply(item / bands, item % bands, block, v, worker) }
                }
                return
            }
            let shared = take()
            defer { give(shared) }
            let v = shared.floats(1, 16 * vStride)
            for b in 0..<n {
                for band in 0..<bands {
                    Tiling.run(chunks, threads: threads, setup: take, cleanup: give) { chunk, worker in
                        transform(b, band, (chunk * stepChunk)..<min(steps, (chunk + 1) * stepChunk), v, worker)
                    }
                    Tiling.run(blocks, threads: threads, setup: take, cleanup: give) { block, worker in multiply(b, band, block, v, worker) }
                }
            }
        }
    }

    /// Bias and epilogue over output rows `firstRow ..< firstRow + rows` of `channels` of image `image`
    /// (`out`: that image's `[outputChannels, plane]` output).
    static func finishRows(_ epilogue: ResolvedEpilogue, bias: UnsafePointer<Float>?, image b: Int, channels: Range<Int>, outputChannels oc: Int,
                           firstRow r0: Int, rows: Int, width ow: Int, plane: Int, out ob: UnsafeMutablePointer<Float>) {
        guard bias != nil || !epilogue.isEmpty else { return }
        for ch in channels {
            epilogue.apply(ob + ch * plane + r0 * ow, count: rows * ow, base: (b * oc + ch) * plane + r0 * ow, scalarBias: bias?[ch] ?? 0)
        }
    }

    /// Rows `firstRow ..< firstRow + rows` of channels `channels` of a `[C, height, width]` image into
    /// `into` (channel `channels.lowerBound` first, rows of `rowWidth` floats, the image's columns from
    /// `left`), zeros outside the image; with `affine` (a scale and a shift per channel, the
    /// group-norm prologue), normalised on the way, then SiLU when `silu`.
    static func copyBand(_ x: UnsafePointer<Float>, channels: Range<Int>, height h: Int, width w: Int, firstRow y0: Int, left pl: Int, rows: Int,
                         rowWidth: Int, affine: UnsafePointer<Float>?, silu: Bool, into padded: UnsafeMutablePointer<Float>) {
        for ci in channels {
            let (sa, sb): (Float, Float) = affine.map { ($0[ci * 2], $0[ci * 2 + 1]) } ?? (1, 0)
            for t in 0..<rows {
                let d = padded + ((ci - channels.lowerBound) * rows + t) * rowWidth, iy = y0 + t
                d.initialize(repeating: 0, count: rowWidth)
                guard iy >= 0 && iy < h else { continue }
                let count = min(w, rowWidth - pl)
                let src = x + (ci * h + iy) * w
                if affine == nil {
                    (d + pl).update(from: src, count: count)
                } else if silu {
                    VectorMath.map(src, d + pl, count) { VectorMath.silu($0 * sa + sb) }
                } else {
                    VectorMath.map(src, d + pl, count) { $0 * sa + sb }
                }
            }
        }
    }

    /// Y = Aᵀ M A for each (channel, tile) of a band, sixteen tiles of a tile row at a time, into the
    /// output rows `2·firstTileRow ...` of `channels` channels from `out`.
    /// `dst[2l] = a[l]`, `dst[2l + 1] = b[l]` for the 16 lanes, with AVX2 shuffles (the baseline):
    /// lanes reordered 0 1 4 5 2 3 6 7 in each half, then unpacked in 128-bit lanes.
    @inline(__always)
    static func storeInterleaved(_ a: SIMD16<Float>, _ b: SIMD16<Float>, _ dst: UnsafeMutablePointer<Float>) {
        storeInterleaved(a.lowHalf, b.lowHalf, dst)
        storeInterleaved(a.highHalf, b.highHalf, dst + 16)
    }

    /// The same for 8 lanes (16 floats).
    @inline(__always)
    static func storeInterleaved(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ dst: UnsafeMutablePointer<Float>) {
        let order = _mm256_set_epi32(7, 6, 3, 2, 5, 4, 1, 0)
        let p = _mm256_permutevar8x32_ps(a, order)
        let q = _mm256_permutevar8x32_ps(b, order)
        _mm256_storeu_ps(dst, _mm256_unpacklo_ps(p, q))
        _mm256_storeu_ps(dst + 8, _mm256_unpackhi_ps(p, q))
    }

    static func outputTransform(_ m: UnsafePointer<Float>, mStride: Int, channels: Int, tileRows tr: Int, tilesWide: Int, firstTileRow ty0: Int,
                                out: UnsafeMutablePointer<Float>, oh: Int, ow: Int, rows scratch: UnsafeMutablePointer<Float>) {
        let tiles = tr * tilesWide, plane = oh * ow
        let rows = UnsafeMutableRawPointer(scratch).alignedUp(toMultipleOf: 64).bindMemory(to: SIMD16<Float>.self, capacity: 8)
        for o in 0..<channels {
            for tyl in 0..<tr {
                var tx0 = 0
                while tx0 < tilesWide {
                    let count = min(16, tilesWide - tx0)
                    let t0 = tyl * tilesWide + tx0
                    @inline(__always) func load(_ xi: Int) -> SIMD16<Float> {
                        let src = m + xi * mStride + o * tiles + t0
                        if count == 16 { return UnsafeRawPointer(src).loadUnaligned(as: SIMD16<Float>.self) }
                        // (Images under 32 columns: one copy, not a lane at a time.)
                        var v = SIMD16<Float>()
                        withUnsafeMutableBytes(of: &v) { $0.copyMemory(from: UnsafeRawBufferPointer(start: src, count: count * 4)) }
                        return v
                    }
                    // Rows of Aᵀ M: s0 = m0 + m1 + m2, s1 = m1 − m2 − m3 (per column q).
                    for q in 0..<4 {
                        let (m0, m1, m2, m3) = (load(q), load(4 + q), load(8 + q), load(12 + q))
                        rows[q] = m0 + m1 + m2
                        rows[4 + q] = m1 - m2 - m3
                    }
                    let ty = ty0 + tyl
                    for i in 0..<2 {
                        let oy = 2 * ty + i
                        guard oy < oh else { continue }
                        let sr = rows + 4 * i
                        let y0 = sr[0] + sr[1] + sr[2], y1 = sr[1] - sr[2] - sr[3]
                        let row = out + o * plane + oy * ow + 2 * tx0
                        let pairs = min(count, (ow - 2 * tx0) / 2)
                        var done = 0
                        if pairs == 16 {
                            storeInterleaved(y0, y1, row)
                            done = 16
                        } else if pairs >= 8 {
                            storeInterleaved(y0.lowHalf, y1.lowHalf, row)
                            done = 8
                        }
                        for l in done..<pairs { row[2 * l] = y0[l]; row[2 * l + 1] = y1[l] }
                        if pairs < count { row[2 * pairs] = y0[pairs] }  // odd width: the last column
                    }
                    tx0 += 16
                }
            }
        }
    }

    /// V_ξ = (Bᵀ d B)_ξ for the channels of `steps` and every tile of the band, as B panels:
    /// `v[ξ·vStride + (panel·steps + step)·nr + j]` for tile `panel·nr + j` (zeros past the last tile).
    /// `padded` holds the band's rows of those channels, from `firstChannel`.
    static func transformInput(_ padded: UnsafePointer<Float>, channels: Int, firstChannel: Int, steps stepRange: Range<Int>, paddedRows: Int,
                               paddedWidth: Int, tileRows: Int, tilesWide: Int, nr: Int, into v: UnsafeMutablePointer<Float>, vStride: Int,
                               bf16: Bool = false) {
        let tiles = tileRows * tilesWide
        let panels = (tiles + nr - 1) / nr
        let d = UnsafeMutablePointer<SIMD16<Float>>.allocate(capacity: 16), t = UnsafeMutablePointer<SIMD16<Float>>.allocate(capacity: 16)
        let low = UnsafeMutablePointer<SIMD16<Float>>.allocate(capacity: 16)
        defer { d.deallocate(); t.deallocate(); low.deallocate() }
        // bf16: steps are pairs of channels (2s in the low half of each word, 2s+1 in the high half).
        let steps = bf16 ? (channels + 1) / 2 : channels
        for step in stepRange {
            for ty in 0..<tileRows {
                var tx0 = 0
                while tx0 < tilesWide {
                  let count = min(16, tilesWide - tx0)
                  // bf16: channel 2·step (kept in `low`), then 2·step+1 (a zero when absent), stored together.
                  for half in 0..<(bf16 ? 2 : 1) {
                    let ci = bf16 ? 2 * step + half : step
                    let absent = ci >= channels
                    let base = padded + (min(ci, channels - 1) - firstChannel) * paddedRows * paddedWidth
                    // d[r][q] for sixteen tiles: columns 2·tx + q of input row 2·ty + r (even/odd halves of 32 floats).
                    for r in 0..<4 {
                        let row = base + (2 * ty + r) * paddedWidth + 2 * tx0
                        let a = UnsafeRawPointer(row).loadUnaligned(as: SIMD32<Float>.self)
                        let b = UnsafeRawPointer(row + 2).loadUnaligned(as: SIMD32<Float>.self)
                        d[r * 4] = a.evenHalf; d[r * 4 + 1] = a.oddHalf; d[r * 4 + 2] = b.evenHalf; d[r * 4 + 3] = b.oddHalf
                    }
                    // Bᵀ d (rows), then (Bᵀ d) B (columns).
                    for q in 0..<4 {
                        t[q] = d[q] - d[8 + q]
                        t[4 + q] = d[4 + q] + d[8 + q]
                        t[8 + q] = d[8 + q] - d[4 + q]
                        t[12 + q] = d[4 + q] - d[12 + q]
                    }
                    let first = ty * tilesWide + tx0
                    let inOnePanel = first % nr + count <= nr
                    let dst = v + ((first / nr) * steps + step) * nr + first % nr
                    for r in 0..<4 {
                        let row = r * 4
                        for q in 0..<4 {
                            var value = q == 0 ? t[row] - t[row + 2] : q == 1 ? t[row + 1] + t[row + 2] : q == 2 ? t[row + 2] - t[row + 1] : t[row + 1] - t[row + 3]
                            if bf16 {
                                if absent { value = .zero }
                                if half == 0 { low[row + q] = value; continue }
                                value = Winograd.bf16Words(low[row + q], value)
                            }
                            let xi = row + q
                            if inOnePanel && count == 16 {
                                UnsafeMutableRawPointer(dst + xi * vStride).storeBytes(of: value, as: SIMD16<Float>.self)
                            } else if inOnePanel {
                                // (Images under 32 columns: one copy, not a lane at a time.)
                                withUnsafeBytes(of: value) { UnsafeMutableRawPointer(dst + xi * vStride).copyMemory(from: $0.baseAddress!, byteCount: count * 4) }
                            } else {
                                for l in 0..<count {
                                    let tt = first + l
                                    v[xi * vStride + ((tt / nr) * steps + step) * nr + tt % nr] = value[l]
                                }
                            }
                        }
                    }
                  }
                    tx0 += 16
                }
            }
            // Zeros past the last tile of the last panel.
            for tt in tiles..<(panels * nr) {
                for xi in 0..<16 { v[xi * vStride + ((tt / nr) * steps + step) * nr + tt % nr] = 0 }
            }
        }
    }
}

extension PackedMatrix {
    /// `winogradWeights` for the bf16 kernels: each U_ξ as bf16 A panels stepping over pairs of input
    /// channels; the weights may be f32 or bf16.
    public static func winogradWeights16(_ w: View, oc: Int, ic: Int, width: Int, threads: Int = 1) -> PackedMatrix {
        let pairs = (ic + 1) / 2
        let p = PackedMatrix(extent: oc, k: pairs, width: width, groups: 16)
        Parallel.forRanges(p.panels, threads: threads) { range in
            let g = UnsafeMutablePointer<Float>.allocate(capacity: 9), u = UnsafeMutablePointer<Float>.allocate(capacity: 32)
            defer { g.deallocate(); u.deallocate() }
            for panel in range {
                for r in 0..<width {
                    let o = panel * width + r
                    for cp in 0..<pairs {
                        for half in 0..<2 {
                            let ci = 2 * cp + half
                            if o < oc && ci < ic {
                                for t in 0..<9 { g[t] = element(w, (o * ic + ci) * 9 + t) }
                                Winograd.transformKernel(g, into: u + 16 * half)
                            } else {
                                (u + 16 * half).initialize(repeating: 0, count: 16)
                            }
                        }
                        for xi in 0..<16 { p.pointer[xi * p.groupStride + panel * p.panelStride + cp * width + r] = Gemm.bf16Pair(u[xi], u[16 + xi]) }
                    }
                }
            }
        }
        return p
    }

    /// The 16 transformed kernels U_ξ = (G g Gᵀ)_ξ of `[oc, ic, 3, 3]` f32 weights, each as A panels
    /// (`groups` = 16: one per ξ).
    public static func winogradWeights(_ w: UnsafePointer<Float>, oc: Int, ic: Int, width: Int, threads: Int = 1) -> PackedMatrix {
        transformedKernels(w, oc: oc, ic: ic, width: width, threads: threads, count: 16, transform: Winograd.transformKernel)
    }

    /// `count` transformed values of each 3×3 kernel of `[oc, ic, 3, 3]` f32 weights (`transform`), as
    /// `count` groups of A panels (zeros past the last output channel).
    static func transformedKernels(_ w: UnsafePointer<Float>, oc: Int, ic: Int, width: Int, threads: Int, count: Int,
                                   transform: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> PackedMatrix {
        let p = PackedMatrix(extent: oc, k: ic, width: width, groups: count)
        Parallel.forRanges(p.panels, threads: threads) { range in
            let u = UnsafeMutablePointer<Float>.allocate(capacity: count)
            defer { u.deallocate() }
            for panel in range {
                for r in 0..<width {
                    let o = panel * width + r
                    for ci in 0..<ic {
                        if o < oc { transform(w + (o * ic + ci) * 9, u) } else { u.initialize(repeating: 0, count: count) }
                        for xi in 0..<count { p.pointer[xi * p.groupStride + panel * p.panelStride + ci * width + r] = u[xi] }
                    }
                }
            }
        }
        return p
    }
}
