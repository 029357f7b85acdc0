import Plan
import Tensors

/// A 3×3 convolution (stride 1, padding 1) of an image enlarged twice by nearest neighbour
/// (`Conv2DKernel.upsample`), without the enlarged image: output pixel (2i + a, 2j + b) reads only
/// small-image rows {i − 1, i} (a = 0) or {i, i + 1} (a = 1), and likewise columns, so each of the four
/// phases (a, b) is a 2×2 convolution of the small image with summed taps — 4 multiplies an output
/// instead of 9. The phases' products read a padded band of the small image in place (the indirect
/// micro-kernel, as `FusedConvolution` does), two column phases of a row phase are interleaved into
/// the output rows as bias and epilogue are applied.
public enum UpsampleConvolution {
    /// Whether the phase path runs: our kernels, phase kernels `[4·oc, ic, 2, 2]`, no prologue, and the
    /// small image's rows whole micro-kernel panels.
    public static func eligible(_ k: Conv2DKernel, x: View, weight: View, gemm: Gemm) -> Bool {
        eligible(k, input: x.dims, weight: weight.dims, gemm: gemm)
    }

    public static func eligible(_ k: Conv2DKernel, input: [Int], weight: [Int], gemm: Gemm) -> Bool {
        !gemm.usesBLAS && k.groups == 1 && k.prologue == nil && weight.count == 4 && weight[0] % 4 == 0
            && weight[2] == 2 && weight[3] == 2 && input.count == 4 && input[3] % gemm.nr == 0
    }

    /// The four phase kernels `[4·oc, ic, 2, 2]` (f32 or bf16) as four groups of A panels for `gemm`
    /// (bf16 pairs when its precision is bf16).
    public static func packPhases(_ w: View, gemm: Gemm, threads: Int) -> PackedMatrix {
        precondition(gemm.precision == .bf16 || w.dtype == .f32, "f32 panels take f32 phase kernels")
        return WeightPacking.pack(w, .init(layout: gemm.precision == .bf16 ? .rowsBF16 : .rows, groups: 4, width: gemm.mr), threads: threads)
    }

    /// Without our kernels (or rows that are not whole panels): each phase a 2×2 convolution of the
    /// small image through `FusedConvolution` (padding 1 − a above and a below, likewise for columns),
    /// then interleaved with the epilogue applied. f32 phase kernels.
    public static func runPhasesSeparately(_ k: Conv2DKernel, x: View, weight: View, operands: [View], out: View, gemm: Gemm, threads: Int) {
        let (n, h, w) = (x.dims[0], x.dims[2], x.dims[3])
        let (oc, ic) = (weight.dims[0] / 4, weight.dims[1])
        let phases = (0..<4).map { _ in Tensor.zeros(.f32, Shape([n, oc, h, w])) }
        for p in 0..<4 {
            let (a, b) = (p / 2, p % 2)
            let sub = Conv2DKernel(strides: [1, 1], pads: [1 - a, 1 - b, a, b], dilations: [1, 1], groups: 1, hasBias: k.hasBias)
            let wp = View(pointer: UnsafeMutableRawPointer(weight.floats + p * oc * ic * 4), dtype: .f32, shape: Shape([oc, ic, 2, 2]))
            let y = View(pointer: UnsafeMutableRawPointer(mutating: phases[p].bytes.baseAddress!), dtype: .f32, shape: phases[p].shape)
            FusedConvolution.run(sub, x: x, weight: wp, operands: [x, wp] + (k.hasBias ? [operands[2]] : []), out: y, gemm: gemm, threads: threads)
        }
        let epilogue = ResolvedEpilogue(k.epilogue, operands: operands, plane: out.dims[2] * out.dims[3])
        let (oh, ow) = (2 * h, 2 * w)
        withExtendedLifetime(phases) {
            let src = phases.map { $0.bytes.baseAddress!.assumingMemoryBound(to: Float.self) }
            Parallel.forRanges(n * oc * oh, threads: threads) { range in
                for row in range {
                    let (plane, y) = (row / oh, row % oh)
                    let d = out.floats + row * ow
                    for xo in 0..<ow { d[xo] = src[(y % 2) * 2 + xo % 2][(plane * h + y / 2) * w + xo / 2] }
                    if !epilogue.isEmpty { epilogue.apply(d, count: ow, base: row * ow) }
                }
            }
        }
    }

    public static func run(_ k: Conv2DKernel, x: View, packed: PackedMatrix, operands: [View], out: View, gemm: Gemm, threads: Int) {
        let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
        let oc = out.dims[1], (oh, ow) = (2 * h, 2 * w)
        let bf16 = gemm.precision == .bf16
        let pairs = (c + 1) / 2, words = bf16 ? pairs : c
        // f32: steps over (channel, tap), the weights' order; bf16: over (tap, pair of channels).
        let steps = 4 * words
        let epilogue = ResolvedEpilogue(k.epilogue, operands: operands, plane: out.dims[2] * out.dims[3])
        let bias: UnsafePointer<Float>? = k.hasBias ? UnsafePointer(operands[2].floats) : nil
        // Bands of small-image rows (about 1024 columns a product), then blocks of output channels
        // until there are four tiles a thread.
        let (bandRows, bands, ocBlock, ocBlocks) = Tiling.bandsAndBlocks(images: n, rows: h, perBand: 1024 / max(w, 1), channels: oc, threads: threads)
        // The padded band: small-image rows r0 − 1 ..< r0 + rows + 1, columns −1 ..< w + 1.
        let paddedRows = bandRows + 2, paddedWidth = w + 2
        let offsets: [[Int]] = (0..<4).map { p in
            let (a, b) = (p / 2, p % 2)
            return (0..<steps).map { step in
                let tap = bf16 ? step / pairs : step % 4, ci = bf16 ? step % pairs : step / 4
                return (ci * paddedRows + a + tap / 2) * paddedWidth + b + tap % 2
            }
        }
        let tiles = n * bands * ocBlocks
        let xf = UnsafePointer(x.floats), o = out.floats
        Tiling.runRemembering(tiles, threads: threads) { tile, worker, memo in
            let ob = tile % ocBlocks, band = (tile / ocBlocks) % bands, b = tile / (ocBlocks * bands)
            let o0 = ob * ocBlock, orows = min(ocBlock, oc - o0)
            let r0 = band * bandRows, rows = min(bandRows, h - r0), cols = rows * w
            let buffer = worker.floats(0, words * paddedRows * paddedWidth + (bf16 ? 2 * w : 0))
            let phase0 = worker.floats(1, orows * cols), phase1 = worker.floats(2, orows * cols)
            // The band's rows are made once per (image, band) on a thread.
            if memo[0] != b || memo[1] != band {
                let xb = xf + b * c * h * w
                let pair = buffer + words * paddedRows * paddedWidth
                for ci in 0..<words {
                    for t in 0..<(rows + 2) {
                        let d = buffer + (ci * paddedRows + t) * paddedWidth, iy = r0 - 1 + t
                        guard iy >= 0 && iy < h else { d.initialize(repeating: 0, count: paddedWidth); continue }
                        d[0] = 0
                        d[w + 1] = 0
                        if bf16 {
                            pair.update(from: xb + (2 * ci * h + iy) * w, count: w)
                            let second = 2 * ci + 1 < c
                            if second { (pair + w).update(from: xb + ((2 * ci + 1) * h + iy) * w, count: w) }
                            Gemm.pairRows(pair, second ? pair + w : nil, d + 1, w)
                        } else {
                            (d + 1).update(from: xb + (ci * h + iy) * w, count: w)
                        }
                    }
                }
                memo[0] = b
                memo[1] = band
            }
            for a in 0..<2 {
                for (bb, phase) in [phase0, phase1].enumerated() {
                    offsets[2 * a + bb].withUnsafeBufferPointer { table in
                        gemm.run(m: orows, n: cols, k: steps, a: packed.operand(group: 2 * a + bb, first: o0),
                                 b: .indirect(UnsafePointer(buffer), offsets: table.baseAddress!, width: w, rowStride: paddedWidth),
                                 c: phase, ldc: cols, accumulate: false, scratch: worker.gemm)
                    }
                }
                // Output rows 2(r0 + i) + a: the two column phases interleaved, then bias and epilogue.
                for oi in 0..<orows {
                    let ch = o0 + oi
                    for i in 0..<rows {
                        let row = (b * oc + ch) * oh * ow + (2 * (r0 + i) + a) * ow
                        let d = o + row, s0 = phase0 + oi * cols + i * w, s1 = phase1 + oi * cols + i * w
                        var j = 0
                        while j + 8 <= w {
                            let e = UnsafeRawPointer(s0 + j).loadUnaligned(as: SIMD8<Float>.self)
                            let f = UnsafeRawPointer(s1 + j).loadUnaligned(as: SIMD8<Float>.self)
                            let lo = SIMD8<Float>(e[0], f[0], e[1], f[1], e[2], f[2], e[3], f[3])
                            let hi = SIMD8<Float>(e[4], f[4], e[5], f[5], e[6], f[6], e[7], f[7])
                            UnsafeMutableRawPointer(d + 2 * j).storeBytes(of: lo, as: SIMD8<Float>.self)
                            UnsafeMutableRawPointer(d + 2 * j + 8).storeBytes(of: hi, as: SIMD8<Float>.self)
                            j += 8
                        }
                        while j < w { d[2 * j] = s0[j]; d[2 * j + 1] = s1[j]; j += 1 }
                        if bias != nil || !epilogue.isEmpty { epilogue.apply(d, count: ow, base: row, scalarBias: bias?[ch] ?? 0) }
                    }
                }
            }
        }
    }
}
