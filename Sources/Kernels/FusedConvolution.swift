import Synchronization
import Foundation
import Plan
import Tensors

/// The next tile of `Tiling.runDynamic`.
final class TileCounter: Sendable {
    let value = Atomic<Int>(0)
}

/// Work split into tiles, each run start to finish on one thread (OpenBLAS single-threaded inside it,
/// so its own threads never spin against ours). Results are bit-identical for any `--threads`: on the
/// OpenBLAS path the tiles depend only on the shapes; our kernels may size tiles by the thread count,
/// but sum every output in the same order whatever the tile (tests run 1, 2 and 3 threads).
public enum Tiling {
    /// Target bytes of a tile's packed im2col panel (fits the L2 of one core with room to spare).
    public static let panelBytes = 1 << 20

    /// Bands of `rows` units (at most `perBand` units a band), then blocks of the `channels` output
    /// channels (multiples of 48, every micro-kernel's rows), halved until `images` × bands × blocks
    /// gives four tiles a thread.
    static func bandsAndBlocks(images: Int, rows: Int, perBand: Int, channels: Int, threads: Int)
        -> (bandRows: Int, bands: Int, channelBlock: Int, channelBlocks: Int) {
        var bandRows = max(1, min(rows, perBand))
        while bandRows > 1 && images * ((rows + bandRows - 1) / bandRows) < 4 * threads { bandRows = (bandRows + 1) / 2 }
        let bands = (rows + bandRows - 1) / bandRows
        let quantum = 48
        var block = channels
        while block > quantum && images * bands * ((channels + block - 1) / block) < 4 * threads {
            block = max(quantum, ((block + 1) / 2 + quantum - 1) / quantum * quantum)
        }
        return (bandRows, bands, block, (channels + block - 1) / block)
    }

    /// `run` with a worker's scratch from the pool and two memo words (−1 at first), with which a
    /// worker remembers the (image, band) whose input rows it prepared last.
    static func runRemembering(_ count: Int, threads: Int, _ body: (Int, WorkerScratch, UnsafeMutablePointer<Int>) -> Void) {
        run(count, threads: threads, setup: { () -> (WorkerScratch, UnsafeMutablePointer<Int>) in
            let memo = UnsafeMutablePointer<Int>.allocate(capacity: 2)
            memo.initialize(repeating: -1, count: 2)
            return (ScratchPool.shared.take(), memo)
        }, cleanup: { ScratchPool.shared.give($0.0); $0.1.deallocate() }) { tile, s in body(tile, s.0, s.1) }
    }

    /// As `run`, with the tiles handed out one at a time as the workers ask (in order): a worker that
    /// started late or runs slower (the two cores of a VM seldom run at the same speed) takes fewer.
    /// For tiles that share nothing a worker prepares (no memo), so any split gives the same results.
    static func runDynamic<S>(_ count: Int, threads: Int, setup: () -> S, cleanup: (S) -> Void = { _ in }, _ body: (Int, S) -> Void) {
        let workers = max(1, min(threads, count))
        guard workers > 1 else {
            let s = setup()
            for t in 0..<count { body(t, s) }
            cleanup(s)
            return
        }
        let next = TileCounter()
        Parallel.forRanges(workers, threads: workers) { _ in
            let s = setup()
            while true {
                let t = next.value.add(1, ordering: .relaxed).oldValue
                if t >= count { break }
                body(t, s)
            }
            cleanup(s)
        }
    }

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

    /// `packed`: the weights as A panels of `gemm` (per group), when `gemm` is not OpenBLAS.
    /// `winogradSchedule` forces the Winograd path's split of work (tests run both).
    public static func run(_ k: Conv2DKernel, x: View, weight: View, packed: PackedMatrix? = nil, operands: [View], out: View,
                           gemm: Gemm = Gemm(.openblas), threads: Int, sharedPackLimit: Int = sharedPackBytes,
                           winogradSchedule: Winograd.Schedule = .automatic) {
        if !gemm.usesBLAS {
            runOwn(k, x: x, weight: weight, packed: packed, operands: operands, out: out, gemm: gemm, threads: threads,
                   sharedPackLimit: sharedPackLimit, winogradSchedule: winogradSchedule)
            return
        }
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
        let epilogue = ResolvedEpilogue(k.epilogue, operands: operands, plane: out.dims[2] * out.dims[3])
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
                func product(_ b: UnsafePointer<Float>, _ ldb: Int) {
                    BLAS.sgemm(m: ocg, n: cols, k: kk, a: wg, lda: kk, b: b, ldb: ldb, c: og, ldc: plane)
                }
                if direct {
                    product(xg + r0 * ow, h * w)
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
                    product(s.col, cols)
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

    /// With our micro-kernels: tiles of (image, group, band of output rows, block of output channels),
    /// enough of them to keep every thread busy (the tiling never changes a result: each output is
    /// summed in the same order whatever the tile). The weights are packed A panels. Stride-1
    /// convolutions whose output rows fill whole micro-kernel panels read their taps in place from a
    /// padded copy of the band's input rows (normalised there when there is a prologue): no im2col.
    /// Others pack B block by block straight from the input (implicit GEMM).
    static func runOwn(_ k: Conv2DKernel, x: View, weight: View, packed: PackedMatrix?, operands: [View], out: View, gemm: Gemm, threads: Int,
                       sharedPackLimit: Int, winogradSchedule: Winograd.Schedule = .automatic) {
        let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
        let (oc, icg, kh, kw) = (weight.dims[0], weight.dims[1], weight.dims[2], weight.dims[3])
        let (oh, ow) = (out.dims[2], out.dims[3])
        let (sh, sw) = (k.strides[0], k.strides[1]), (dh, dw) = (k.dilations[0], k.dilations[1])
        let (pt, pl, pr) = (k.pads[0], k.pads[1], k.pads[3])
        let groups = k.groups, ocg = oc / groups, kk = icg * kh * kw
        // bf16: steps over (tap, pair of input channels); f32: over (channel, tap), the weights' order.
        let bf16 = gemm.precision == .bf16
        precondition(!bf16 || packed != nil, "bf16 convolutions take packed weights")
        let pairs = (icg + 1) / 2
        let steps = bf16 ? kh * kw * pairs : kk
        let words = bf16 ? pairs : icg  // channels of words in the padded band
        var affine: [Float] = []
        if let p = k.prologue {
            affine = prologueAffine(x, p, scale: operands[p.scaleOperand].floats, bias: operands[p.biasOperand].floats, threads: threads)
        }
        // (Transformed f32/bf16 kernels, or quantised `[oc, c·9]` panels transformed as they are used.)
        if k.winograd == true, k.winogradTile == 4, let packed, Winograd.eligible(k, weight: weight.dims), packed.element == nil,
           packed.groups == 36, !bf16 {
            Winograd43.run(k, x: x, packed: packed, operands: operands, out: out, gemm: gemm, threads: threads, affine: affine)
            return
        }
        if k.winograd == true, k.winogradTile == 4, let packed, Winograd.eligible(k, weight: weight.dims), packed.element != nil,
           packed.groups == 1, packed.k == c * 9, packed.width == gemm.mr, !bf16, Winograd43.quantizedFits(oc: oc, c: c) {
            Winograd43.runQuantized(k, x: x, packed: packed, operands: operands, out: out, gemm: gemm, threads: threads, affine: affine)
            return
        }
        if k.winograd == true, let packed, Winograd.eligible(k, weight: weight.dims),
           packed.element == nil ? packed.groups == 16 : packed.groups == 1 && !bf16 {
            Winograd.run(k, x: x, packed: packed, operands: operands, out: out, gemm: gemm, threads: threads, affine: affine,
                         schedule: winogradSchedule)
            return
        }
        let silu = k.prologue?.silu ?? false
        let epilogue = ResolvedEpilogue(k.epilogue, operands: operands, plane: out.dims[2] * out.dims[3])
        let bias: UnsafePointer<Float>? = k.hasBias ? UnsafePointer(operands[2].floats) : nil
        let plane = oh * ow
        let pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 && k.pads.allSatisfy { $0 == 0 } && affine.isEmpty
        var inPlace = !pointwise && sh == 1 && sw == 1 && ow % gemm.nr == 0
        // In place, each band reads all the weights again: on a small image cut into many bands for
        // the threads, packing B once for every block of output channels reads far less (a UNet's
        // 16×16 level with 16-column panels, AVX2: eight bands of 32 pixels, 1280 channels, read
        // 472 MB of weights a call instead of 59; the f32 denoise step 5.55 → 5.19–5.33 s there,
        // unchanged with AVX-512's 32-column panels). The sums are the same either way.
        // Bands of about 2048 output columns, halved until there are 4 tiles per thread.
        func bandRowsInBands() -> Int {
            var rows = max(1, min(oh, 2048 / max(ow, 1)))
            while rows > 1 && n * groups * ((oh + rows - 1) / rows) < 4 * threads { rows = (rows + 1) / 2 }
            return rows
        }
        if inPlace {
            let rows = bandRowsInBands(), bandCount = n * groups * ((oh + rows - 1) / rows)
            let weightBytes = oc * steps * 4, packedBytes = steps * plane * n * groups * 4
            if packedBytes <= sharedPackLimit && bandCount * weightBytes > 4 * packedBytes { inPlace = false }
        }
        // Small images (the deep levels of a UNet) have few columns and many output channels: their B
        // is packed once for all the channel blocks, in parallel, before the products (pointwise ones
        // too, up to 1024 columns: in bands their B would be re-packed, and their weights re-read, for
        // bands of a few columns).
        let sharedB = !inPlace && (!pointwise || n * plane <= 1024) && steps * plane * n * groups * 4 <= sharedPackLimit
        // One band when B is shared, else bands as above; then blocks of output channels until there are 4 tiles per thread.
        let bandRows = sharedB ? oh : bandRowsInBands()
        let bands = (oh + bandRows - 1) / bandRows
        // Output channels in blocks of whole weight panels (48 rows when the weights are not packed),
        // as many as make 4 tiles a thread and a multiple of the threads (so that no thread waits for
        // one more block than the other has), their sizes differing by one panel at most.
        let quantum = packed?.width ?? 48
        let units = (ocg + quantum - 1) / quantum
        let tilesPerBlock = n * groups * bands
        var ocBlocks = min(units, max(1, (4 * threads + tilesPerBlock - 1) / tilesPerBlock))
        while ocBlocks < units && (tilesPerBlock * ocBlocks) % threads != 0 { ocBlocks += 1 }
        // The padded band: input rows r0 - pt ..< r0 - pt + paddedRows, columns -pl ..< w + pr.
        let paddedRows = (bandRows - 1) * sh + (kh - 1) * dh + 1, paddedWidth = w + pl + pr
        let offsets: [Int] = inPlace ? (0..<steps).map { step in
            let tap = bf16 ? step / pairs : step % (kh * kw), ci = bf16 ? step % pairs : step / (kh * kw)
            let i = tap / kw, j = tap % kw
            return (ci * paddedRows + i * dh) * paddedWidth + j * dw
        } : []
        let inputRows = min(h, paddedRows)
        let tiles = n * groups * bands * ocBlocks
        var packedB: UnsafeMutablePointer<Float>? = nil
        let panelsPerImage = (plane + gemm.nr - 1) / gemm.nr
        let shared = ScratchPool.shared.take()
        defer { ScratchPool.shared.give(shared) }
        if sharedB {
            packedB = prepackTaps(k, x: x, kh: kh, kw: kw, affine: affine, silu: silu, panels: panelsPerImage, gemm: gemm, oh: oh, ow: ow,
                                  threads: threads, scratch: shared)
        }
        // Quantised weights used by several bands (or images): expanded to f32 once for the call, in
        // parallel, rather than once per band and block of output channels (up to 8 M values, the
        // GEMM's own limit for expanding an operand whole).
        var expandedA: UnsafeMutablePointer<Float>? = nil
        if let p = packed, p.element != nil, n * bands > 1, groups * p.groupStride <= 8 << 20 {
            let buffer = shared.floats(6, groups * p.groupStride)
            let panels = p.panels
            Parallel.forRanges(groups * panels, threads: threads) { range in
                for item in range {
                    guard case .quantized(let q) = p.operand(group: item / panels) else { continue }
                    q.expand(panels: (item % panels)..<(item % panels + 1), depth: 0..<p.k, width: p.width,
                             into: buffer + item * p.panelStride)
                }
            }
            expandedA = buffer
        }
        affine.withUnsafeBufferPointer { affineBuffer in
            offsets.withUnsafeBufferPointer { offsetBuffer in
                let aff = affine.isEmpty ? nil : affineBuffer.baseAddress
                let rowsCapacity = inPlace ? words * paddedRows * paddedWidth + (bf16 ? 2 * w : 0) : (aff == nil ? 1 : icg * inputRows * w)
                Tiling.run(tiles, threads: threads, setup: {
                    let memo = UnsafeMutablePointer<Int>.allocate(capacity: 3)
                    memo.initialize(repeating: -1, count: 3)
                    let worker = ScratchPool.shared.take()
                    return (worker.floats(0, rowsCapacity), worker.gemm, memo, worker)
                }, cleanup: { $0.2.deallocate(); ScratchPool.shared.give($0.3) }) { tile, scratch in
                    let (buffer, gemmScratch) = (scratch.0, scratch.1)
                    let ob = tile % ocBlocks, band = (tile / ocBlocks) % bands
                    let g = (tile / (ocBlocks * bands)) % groups, b = tile / (ocBlocks * bands * groups)
                    let o0 = ob * units / ocBlocks * quantum, orows = min((ob + 1) * units / ocBlocks * quantum, ocg) - o0
                    let r0 = band * bandRows, rows = min(bandRows, oh - r0), cols = rows * ow
                    let xg = x.floats + (b * c + g * icg) * h * w
                    let og = out.floats + (b * oc + g * ocg + o0) * plane + r0 * ow
                    let a: GemmOperand = expandedA.map { e in packed.map { .panels(e + (g * $0.panels + o0 / $0.width) * $0.panelStride, panelStride: $0.panelStride) }! }
                        ?? packed.map { $0.operand(group: g, first: o0) }
                        ?? .matrix(weight.floats + (g * ocg + o0) * kk, ld: kk, transposed: false)
                    func normalizeRow(_ ci: Int, _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
                        guard let aff else { dst.update(from: src, count: count); return }
                        let ch = g * icg + ci
                        let (sa, sb) = (aff[(b * c + ch) * 2], aff[(b * c + ch) * 2 + 1])
                        if silu {
                            VectorMath.map(src, dst, count) { VectorMath.silu($0 * sa + sb) }
                        } else {
                            VectorMath.map(src, dst, count) { $0 * sa + sb }
                        }
                    }
                    // The band's source rows are made once per band: tiles of the same band on one thread reuse them.
                    let fresh = scratch.2[0] != b || scratch.2[1] != g || scratch.2[2] != band
                    if let packedB {
                        gemm.run(m: orows, n: cols, k: steps, a: a,
                                 b: .panels(packedB + (b * groups + g) * panelsPerImage * steps * gemm.nr, panelStride: steps * gemm.nr),
                                 c: og, ldc: plane, accumulate: false, scratch: gemmScratch)
                    } else if pointwise {
                        gemm.run(m: orows, n: cols, k: steps, depth: icg, a: a, b: .matrix(xg + r0 * ow, ld: h * w, transposed: false),
                                 c: og, ldc: plane, accumulate: false, scratch: gemmScratch)
                    } else if inPlace {
                        if fresh {
                            let y0 = r0 - pt, used = (rows - 1) + (kh - 1) * dh + 1
                            let pair = buffer + words * paddedRows * paddedWidth  // two f32 rows (bf16)
                            for ci in 0..<words {
                                for t in 0..<used {
                                    let d = buffer + (ci * paddedRows + t) * paddedWidth, iy = y0 + t
                                    if iy < 0 || iy >= h { d.initialize(repeating: 0, count: paddedWidth); continue }
                                    if pl > 0 { d.initialize(repeating: 0, count: pl) }
                                    if bf16 {
                                        // Channels 2ci and 2ci+1 interleaved as bf16 pairs.
                                        normalizeRow(2 * ci, xg + (2 * ci * h + iy) * w, pair, w)
                                        let second = 2 * ci + 1 < icg
                                        if second { normalizeRow(2 * ci + 1, xg + ((2 * ci + 1) * h + iy) * w, pair + w, w) }
                                        Gemm.pairRows(pair, second ? pair + w : nil, d + pl, w)
                                    } else {
                                        normalizeRow(ci, xg + (ci * h + iy) * w, d + pl, w)
                                    }
                                    if pr > 0 { (d + pl + w).initialize(repeating: 0, count: pr) }
                                }
                            }
                        }
                        gemm.run(m: orows, n: cols, k: steps, a: a,
                                 b: .indirect(UnsafePointer(buffer), offsets: offsetBuffer.baseAddress!, width: ow, rowStride: paddedWidth),
                                 c: og, ldc: plane, accumulate: false, scratch: gemmScratch)
                    } else {
                        // Input rows [iy0, iy1) of the band, normalised into the buffer when there is a prologue.
                        let iy0 = max(0, r0 * sh - pt), iy1 = min(h, (r0 + rows - 1) * sh - pt + (kh - 1) * dh + 1)
                        var src0 = UnsafePointer(xg), cs = h * w, ro = 0
                        if aff != nil, iy1 > iy0 {
                            let span = iy1 - iy0
                            if fresh {
                                for ci in 0..<icg { normalizeRow(ci, xg + (ci * h + iy0) * w, buffer + ci * span * w, span * w) }
                            }
                            (src0, cs, ro) = (UnsafePointer(buffer), span * w, iy0)
                        }
                        let (base, channelStride, rowOrigin) = (src0, cs, ro)
                        gemm.run(m: orows, n: cols, k: steps, a: a, b: .packer({ dst, depth, columns, width in
                            packTaps(dst, depth: depth, columns: columns, width: width, base: base, channelStride: channelStride,
                                     rowOrigin: rowOrigin, w: w, h: h, ow: ow, kh: kh, kw: kw, r0: r0, sh: sh, sw: sw, dh: dh, dw: dw, pt: pt, pl: pl,
                                     bf16Channels: bf16 ? icg : nil)
                        }), c: og, ldc: plane, accumulate: false, scratch: gemmScratch)
                    }
                    scratch.2[0] = b; scratch.2[1] = g; scratch.2[2] = band
                    if bias != nil || !epilogue.isEmpty {
                        for o in 0..<orows {
                            let ch = g * ocg + o0 + o
                            epilogue.apply(og + o * plane, count: cols, base: (b * oc + ch) * plane + r0 * ow, scalarBias: bias?[ch] ?? 0)
                        }
                    }
                }
            }
        }
    }

    /// Largest B packed once for all the channel blocks of a convolution.
    public static let sharedPackBytes = 64 << 20

    /// The im2col of every (image, group) as B panels of the whole depth (`panels` per image),
    /// normalised first when there is a prologue; made in parallel.
    static func prepackTaps(_ k: Conv2DKernel, x: View, kh: Int, kw: Int, affine: [Float], silu: Bool, panels: Int, gemm: Gemm,
                            oh: Int, ow: Int, threads: Int, scratch: WorkerScratch) -> UnsafeMutablePointer<Float> {
        let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
        let groups = k.groups, icg = c / groups
        let bf16 = gemm.precision == .bf16
        let kk = bf16 ? kh * kw * ((icg + 1) / 2) : icg * kh * kw, nr = gemm.nr
        var source = UnsafePointer(x.floats)
        if !affine.isEmpty {
            let buffer = scratch.floats(1, x.count)
            affine.withUnsafeBufferPointer { aff in
                Parallel.forRanges(n * c, threads: threads) { range in
                    for nc in range {
                        let (sa, sb) = (aff[nc * 2], aff[nc * 2 + 1])
                        let src = x.floats + nc * h * w, dst = buffer + nc * h * w
                        if silu {
                            VectorMath.map(src, dst, h * w) { VectorMath.silu($0 * sa + sb) }
                        } else {
                            VectorMath.map(src, dst, h * w) { $0 * sa + sb }
                        }
                    }
                }
            }
            source = UnsafePointer(buffer)
        }
        let packed = scratch.floats(0, max(1, n * groups * panels * kk * nr))
        let chunk = 2
        let chunks = (panels + chunk - 1) / chunk
        let plane = oh * ow
        Parallel.forRanges(n * groups * chunks, threads: threads) { range in
            for item in range {
                let ch = item % chunks, bg = item / chunks
                let p0 = ch * chunk, p1 = min(panels, p0 + chunk)
                let columns = (p0 * nr)..<min(plane, p1 * nr)
                packTaps(packed + (bg * panels + p0) * kk * nr, depth: 0..<kk, columns: columns, width: nr,
                         base: source + bg * icg * h * w, channelStride: h * w, rowOrigin: 0, w: w, h: h, ow: ow,
                         kh: kh, kw: kw, r0: 0, sh: k.strides[0], sw: k.strides[1], dh: k.dilations[0], dw: k.dilations[1],
                         pt: k.pads[0], pl: k.pads[1], bf16Channels: bf16 ? icg : nil)
            }
        }
        return packed
    }

    /// Writes `B[depth, columns]` of a convolution's im2col (band-relative columns, taps in weight
    /// order) as panels of `width` columns, from input rows `base + ci·channelStride + (iy − rowOrigin)·w`.
    static func packTaps(_ dst: UnsafeMutablePointer<Float>, depth: Range<Int>, columns: Range<Int>, width: Int,
                         base: UnsafePointer<Float>, channelStride: Int, rowOrigin: Int, w: Int, h: Int, ow: Int,
                         kh: Int, kw: Int, r0: Int, sh: Int, sw: Int, dh: Int, dw: Int, pt: Int, pl: Int, bf16Channels: Int? = nil) {
        let kd = depth.count
        let pairs = bf16Channels.map { ($0 + 1) / 2 } ?? 0
        // The block's columns as runs within one output row and one panel (the same for every tap).
        var runs: [(offset: Int, row: Int, xo: Int, count: Int)] = []
        var col = columns.lowerBound
        while col < columns.upperBound {
            let local = col - columns.lowerBound, panel = local / width, inPanel = local % width
            let r = col / ow, xo = col % ow
            let count = min(width - inPanel, ow - xo, columns.upperBound - col)
            runs.append((panel * kd * width + inPanel, r, xo, count))
            col += count
        }
        let lastPanel = (columns.count - 1) / width, used = columns.count - lastPanel * width
        for p in 0..<kd {
            // f32: step = (channel, tap) in weight order; bf16: step = (tap, channel pair).
            let step = depth.lowerBound + p
            let tap = bf16Channels == nil ? step % (kh * kw) : step / pairs
            let ci = bf16Channels == nil ? step / (kh * kw) : 2 * (step % pairs)
            let i = tap / kw, j = tap % kw
            let shift = j * dw - pl
            let first = shift >= 0 ? 0 : (-shift + sw - 1) / sw
            let last = w - 1 - shift < 0 ? -1 : (w - 1 - shift) / sw
            let channel = base + ci * channelStride
            let second = bf16Channels.map { ci + 1 < $0 } ?? false
            for run in runs {
                let d = dst + run.offset + p * width
                let iy = (r0 + run.row) * sh - pt + i * dh
                if iy < 0 || iy >= h {
                    d.initialize(repeating: 0, count: run.count)
                    continue
                }
                let row = channel + (iy - rowOrigin) * w
                let lo = min(run.count, max(0, first - run.xo)), hi = max(lo, min(run.count, last + 1 - run.xo))
                if lo > 0 { d.initialize(repeating: 0, count: lo) }
                if bf16Channels != nil && sw == 1 {
                    if hi > lo { Gemm.pairRows(row + run.xo + lo + shift, second ? row + channelStride + run.xo + lo + shift : nil, d + lo, hi - lo) }
                } else if bf16Channels != nil {
                    let row1 = row + channelStride
                    for t in lo..<hi {
                        let x = (run.xo + t) * sw + shift
                        d[t] = Gemm.bf16Pair(row[x], second ? row1[x] : 0)
                    }
                } else if sw == 1 {
                    for t in lo..<hi { d[t] = row[run.xo + t + shift] }
                } else {
                    for t in lo..<hi { d[t] = row[(run.xo + t) * sw + shift] }
                }
                if hi < run.count { (d + hi).initialize(repeating: 0, count: run.count - hi) }
            }
            if used < width { (dst + (lastPanel * kd + p) * width + used).initialize(repeating: 0, count: width - used) }
        }
    }
}

/// Transposed convolution as GEMM + col2im: for a band of input rows, `cols = Wᵀ·x` (one column of
/// `out/g·kh·kw` per input pixel), computed in fixed row blocks on separate threads, then each column
/// is added into the output at its strided position, output channels in parallel (each channel's
/// additions in a fixed order, so the result does not depend on the thread count).
public enum TransposedConvolution {
    public static func run(_ k: ConvTransposeKernel, x: View, weight: View, bias: View?, out: View, gemm: Gemm = Gemm(.openblas), threads: Int) {
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
                            gemm.sgemm(transposeA: true, m: m, n: cols, k: icg, a: wg + m0, lda: rowsK, b: xg + r0 * w, ldb: h * w,
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

/// Scalar activations (elementwise kernels' tails and rare paths).
enum Activations {
    @inline(__always)
    static func apply(_ kind: ActivationKind, _ v: Float, _ alpha: Float) -> Float {
        switch kind {
        case .silu: return v / (1 + expf(-v))
        case .gelu: return 0.5 * v * (1 + erff(v * 0.70710678118654752))
        case .geluTanh: return 0.5 * v * (1 + tanhf(0.7978845608028654 * (v + 0.044715 * v * v * v)))
        case .relu: return max(v, 0)
        case .sigmoid: return 1 / (1 + expf(-v))
        case .leakyRelu: return v >= 0 ? v : alpha * v
        }
    }
}
