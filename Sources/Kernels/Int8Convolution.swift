import Dispatch
import CKernels
import Plan
import Tensors

/// Convolution weights `[oc, ic, kh, kw]` int8 (one scale per output channel) packed for the s8 × u8
/// int8 micro-kernels: A panels of 12 output channels whose steps run tap by tap and, within a
/// tap, over quads of input channels (a word holds the weights of four consecutive channels; zeros
/// past the last channel and the last row), with `Σ_k w[o, k]` per row for the activations' zero point.
public final class Int8ConvWeights: @unchecked Sendable {
    public let oc: Int
    public let ic: Int
    public let kh: Int
    public let kw: Int
    public var taps: Int { kh * kw }
    public var quads: Int { (ic + 3) / 4 }
    public var steps: Int { taps * quads }
    let words: UnsafeMutablePointer<UInt32>
    let scales: UnsafeMutablePointer<Float>
    let sums: UnsafeMutablePointer<Int32>
    var panels: Int { (oc + Int8Gemm.mr - 1) / Int8Gemm.mr }
    public var byteCount: Int { panels * steps * Int8Gemm.mr * 4 + panels * Int8Gemm.mr * 8 }

    public init(_ w: UnsafePointer<Int8>, scales s: UnsafePointer<Float>, oc: Int, ic: Int, kh: Int, kw: Int, threads: Int = 1) {
        let mr = Int8Gemm.mr
        self.oc = oc
        self.ic = ic
        self.kh = kh
        self.kw = kw
        let taps = kh * kw
        let quads = (ic + 3) / 4, steps = taps * quads
        let panels = (oc + mr - 1) / mr
        words = .allocate(capacity: max(1, panels * steps * mr))
        scales = .allocate(capacity: max(1, panels * mr))
        sums = .allocate(capacity: max(1, panels * mr))
        let (words, scales, sums) = (self.words, self.scales, self.sums)
        Parallel.forRanges(panels, threads: threads) { range in
            for panel in range {
                for r in 0..<mr {
                    let o = panel * mr + r
                    let d = words + panel * steps * mr + r
                    guard o < oc else {
                        for st in 0..<steps { d[st * mr] = 0 }
                        scales[o] = 0
                        sums[o] = 0
                        continue
                    }
                    let row = w + o * ic * taps
                    var sum: Int32 = 0
                    for i in 0..<(ic * taps) { sum &+= Int32(row[i]) }
                    for t in 0..<taps {
                        for cq in 0..<quads {
                            var word: UInt32 = 0
                            for q in 0..<4 where 4 * cq + q < ic {
                                word |= UInt32(UInt8(bitPattern: row[(4 * cq + q) * taps + t])) << (8 * q)
                            }
                            d[(t * quads + cq) * mr] = word
                        }
                    }
                    scales[o] = s[o]
                    sums[o] = sum
                }
            }
        }
    }

    deinit { words.deallocate(); scales.deallocate(); sums.deallocate() }
}

/// Convolutions with int8 weights and int8 activations (`--activations int8`, groups 1): the input
/// (after the group-norm prologue and SiLU) is quantised once per image, asymmetric over the whole
/// tensor (`u = round(y / s) + z`, u8, `s = (max − min) / 255`; padding is `z`, i.e. 0), into a
/// padded copy whose words hold four consecutive channels of a pixel. Each band of output pixels
/// gathers its taps from it once into B panels (in parallel; widened to 16-bit values for the AVX2
/// kernel), shared by the blocks of output channels, which run the int8 micro-kernel (VNNI or AVX2)
/// `kernel.blockSteps` steps at a time (exact int32 sums); the result is
/// `s_w[o] · s · (Σ − z · Σ_k w[o, k])`, then bias and epilogue.
public enum Int8Convolution {
    static let bandPixels = 512

    /// The int8 micro-kernel that runs this convolution with the f32 kernel choice `isa` (ungrouped only).
    public static func kernel(_ k: Conv2DKernel, isa: ISA) -> Int8Gemm.Kernel? { k.groups == 1 ? Int8Gemm.Kernel.matching(isa) : nil }

    public static func run(_ k: Conv2DKernel, x: View, weights wq: Int8ConvWeights, operands: [View], out: View, kernel: Int8Gemm.Kernel, threads: Int) {
        let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
        let (oc, oh, ow) = (out.dims[1], out.dims[2], out.dims[3])
        let kw = wq.kw
        let (sh, sw) = (k.strides[0], k.strides[1]), (dh, dw) = (k.dilations[0], k.dilations[1])
        let (pt, pl, pb, pr) = (k.pads[0], k.pads[1], k.pads[2], k.pads[3])
        let (mr, nr) = (Int8Gemm.mr, Int8Gemm.nr)
        let quads = wq.quads, steps = wq.steps, plane = oh * ow
        let (ph, pw) = (h + pt + pb, w + pl + pr)
        var affine: [Float] = []
        if let p = k.prologue {
            affine = FusedConvolution.prologueAffine(x, p, scale: operands[p.scaleOperand].floats, bias: operands[p.biasOperand].floats, threads: threads)
        }
        let silu = k.prologue?.silu ?? false
        let epilogue = ResolvedEpilogue(k.epilogue, operands: operands, plane: out.dims[2] * out.dims[3])
        let bias: UnsafePointer<Float>? = k.hasBias ? UnsafePointer(operands[2].floats) : nil
        // Bands of whole panels of output pixels.
        let band = min(bandPixels, (plane + nr - 1) / nr * nr)
        let bands = (plane + band - 1) / band
        // Blocks of output channels: at least four per thread in each band (the bands run one after the other).
        var ocBlock = (oc + mr - 1) / mr * mr
        while ocBlock > mr && (oc + ocBlock - 1) / ocBlock < 4 * threads {
            ocBlock = max(mr, ((ocBlock + 1) / 2 + mr - 1) / mr * mr)
        }
        let ocBlocks = (oc + ocBlock - 1) / ocBlock
        // Buffers kept between calls (fresh large allocations would cost page faults every call).
        let shared = ScratchPool.shared.take()
        defer { ScratchPool.shared.give(shared) }
        let quantized = UnsafeMutableRawPointer(shared.floats(0, max(1, quads * ph * pw))).assumingMemoryBound(to: UInt32.self)
        for b in 0..<n {
            // The prologue's output y = a·x + b (then SiLU) for channel ch, eight values at a time.
            @inline(__always) func prologue(_ ch: Int, _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
                guard !affine.isEmpty else { dst.update(from: src, count: count); return }
                let (sa, sb) = (affine[(b * c + ch) * 2], affine[(b * c + ch) * 2 + 1])
                if silu { VectorMath.map(src, dst, count) { VectorMath.silu($0 * sa + sb) } } else { VectorMath.map(src, dst, count) { $0 * sa + sb } }
            }
            let xb = x.floats + b * c * h * w
            // The range of y over the image (per channel in parallel, then reduced).
            // Per channel: min and max (written by disjoint threads into preallocated storage).
            let stats = UnsafeMutableBufferPointer<Double>.allocate(capacity: 2 * c)
            defer { stats.deallocate() }
            Parallel.forRanges(c, threads: threads) { chans in
                let row = UnsafeMutablePointer<Float>.allocate(capacity: h * w)
                defer { row.deallocate() }
                for ch in chans {
                    prologue(ch, xb + ch * h * w, row, h * w)
                    var lo = SIMD8<Float>(repeating: 0), hi = lo
                    var i = 0
                    while i + 8 <= h * w {
                        let v = UnsafeRawPointer(row + i).loadUnaligned(as: SIMD8<Float>.self)
                        lo = lo.replacing(with: v, where: v .< lo); hi = hi.replacing(with: v, where: v .> hi)
                        i += 8
                    }
                    var (l, u) = (lo.min(), hi.max())
                    while i < h * w { l = min(l, row[i]); u = max(u, row[i]); i += 1 }
                    stats[2 * ch] = Double(l)
                    stats[2 * ch + 1] = Double(u)
                }
            }
            // The whole range (clipping the tails at 3, 4 or 6 standard deviations was measured: it
            // made the UNet's error larger, 4.6 % → 15.7 %, 7.6 %, 4.6 %).
            var (minimum, maximum) = (0.0, 0.0)
            for ch in 0..<c { (minimum, maximum) = (min(minimum, stats[2 * ch]), max(maximum, stats[2 * ch + 1])) }
            let lo = Float(minimum), hi = Float(maximum)
            let scale = hi > lo ? (hi - lo) / 255 : 1
            let zero = min(255, max(0, (-lo / scale).rounded(.toNearestOrEven)))
            let z = UInt8(zero)
            let zeroWord = UInt32(z) * 0x0101_0101
            // The padded quantised copy: words of four channels, `z` in the padding.
            Parallel.forRanges(quads, threads: threads) { qs in
                let rows = UnsafeMutablePointer<Float>.allocate(capacity: 4 * w)
                let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: 4 * w + 16)
                defer { rows.deallocate(); bytes.deallocate() }
                let inv = 1 / scale
                for cq in qs {
                    let base = quantized + cq * ph * pw
                    for y in 0..<ph {
                        let d = base + y * pw
                        let iy = y - pt
                        guard iy >= 0 && iy < h else { d.initialize(repeating: zeroWord, count: pw); continue }
                        if pl > 0 { d.initialize(repeating: zeroWord, count: pl) }
                        if pr > 0 { (d + pl + w).initialize(repeating: zeroWord, count: pr) }
                        for q in 0..<4 {
                            let ch = 4 * cq + q
                            let r = rows + q * w
                            if ch < c { prologue(ch, xb + (ch * h + iy) * w, r, w) } else { r.initialize(repeating: 0, count: w) }
                            // u8 of this channel's row.
                            let u = bytes + q * w
                            var i = 0
                            while i + 8 <= w {
                                let v = UnsafeRawPointer(r + i).loadUnaligned(as: SIMD8<Float>.self) * inv + zero
                                let t = Int8Linear.roundToInt32(v.replacing(with: 0, where: v .< 0).replacing(with: 255, where: v .> 255))
                                UnsafeMutableRawPointer(u + i).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: t), as: SIMD8<UInt8>.self)
                                i += 8
                            }
                            while i < w { u[i] = UInt8(min(255, max(0, (r[i] * inv + zero).rounded(.toNearestOrEven)))); i += 1 }
                        }
                        // Interleave the four rows into words.
                        let o = d + pl
                        var i = 0
                        while i + 8 <= w {
                            let b0 = SIMD8<UInt32>(truncatingIfNeeded: UnsafeRawPointer(bytes + i).loadUnaligned(as: SIMD8<UInt8>.self))
                            let b1 = SIMD8<UInt32>(truncatingIfNeeded: UnsafeRawPointer(bytes + w + i).loadUnaligned(as: SIMD8<UInt8>.self))
                            let b2 = SIMD8<UInt32>(truncatingIfNeeded: UnsafeRawPointer(bytes + 2 * w + i).loadUnaligned(as: SIMD8<UInt8>.self))
                            let b3 = SIMD8<UInt32>(truncatingIfNeeded: UnsafeRawPointer(bytes + 3 * w + i).loadUnaligned(as: SIMD8<UInt8>.self))
                            UnsafeMutableRawPointer(o + i).storeBytes(of: b0 | (b1 &<< 8) | (b2 &<< 16) | (b3 &<< 24), as: SIMD8<UInt32>.self)
                            i += 8
                        }
                        while i < w {
                            o[i] = UInt32(bytes[i]) | UInt32(bytes[w + i]) << 8 | UInt32(bytes[2 * w + i]) << 16 | UInt32(bytes[3 * w + i]) << 24
                            i += 1
                        }
                    }
                }
            }
            let src = UnsafePointer(quantized)
            let ob = out.floats + b * oc * plane
            // Per band: B packed once (all steps, panel-major, in parallel over steps), then the blocks of
            // output channels in parallel, each `kernel.blockSteps` of B at a time (a panel's block stays in L1).
            // The AVX2 kernel takes B widened to 16 bits (a 64-bit word per column and step).
            let wide = kernel.widensActivations
            let packedB = UnsafeMutableRawPointer(shared.floats(1, max(1, ((band + nr - 1) / nr) * steps * nr * (wide ? 2 : 1)))).assumingMemoryBound(to: UInt32.self)
            let packedWide = UnsafeMutableRawPointer(packedB).assumingMemoryBound(to: UInt64.self)
            for bi in 0..<bands {
                let p0 = bi * band, cols = min(band, plane - p0)
                let bPanels = (cols + nr - 1) / nr
                Parallel.forRanges(steps, threads: threads) { range in
                    for step in range {
                        let t = step / quads, cq = step % quads
                        let (ky, kx) = (t / kw, t % kw)
                        let channel = src + cq * ph * pw + ky * dh * pw + kx * dw
                        var p = p0
                        let end = p0 + bPanels * nr
                        while p < end {
                            let jp = (p - p0) / nr, j = (p - p0) % nr
                            let at = (jp * steps + step) * nr + j
                            guard p < plane else {
                                if wide { for i in 0..<(nr - j) { packedWide[at + i] = Int8Gemm.widen(zeroWord) } } else { for i in 0..<(nr - j) { packedB[at + i] = zeroWord } }
                                p += nr - j
                                continue
                            }
                            let (oy, ox) = (p / ow, p % ow)
                            let run = min(ow - ox, nr - j, plane - p)
                            let from = channel + oy * sh * pw + ox * sw
                            if wide {
                                for i in 0..<run { packedWide[at + i] = Int8Gemm.widen(from[i * sw]) }
                            } else {
                                let d = packedB + at
                                if sw == 1 { for i in 0..<run { d[i] = from[i] } } else { for i in 0..<run { d[i] = from[i * sw] } }
                            }
                            p += run
                        }
                    }
                }
                let shared = UnsafeRawPointer(packedB), word = wide ? 8 : 4
                Tiling.run(ocBlocks, threads: threads, setup: { ScratchPool.shared.take() }, cleanup: { ScratchPool.shared.give($0) }) { ocb, worker in
                let o0 = ocb * ocBlock, orows = min(ocBlock, oc - o0)
                let aPanels = (orows + mr - 1) / mr
                let ldc = bPanels * nr
                let acc = UnsafeMutableRawPointer(worker.floats(0, aPanels * mr * ldc)).assumingMemoryBound(to: Int32.self)
                var s0 = 0
                while s0 < steps {
                    let ks = min(kernel.blockSteps, steps - s0)
                    for jp in 0..<bPanels {
                        let bp = shared + (jp * steps + s0) * nr * word
                        for ip in 0..<aPanels {
                            let ap = UnsafePointer(wq.words + ((o0 / mr + ip) * steps + s0) * mr)
                            kernel.s8u8(ks, ap, bp, acc + ip * mr * ldc + jp * nr, ldc, s0 > 0)
                        }
                    }
                    s0 += ks
                }
                // Back to f32, then bias and epilogue, one output channel's run of pixels at a time.
                let zi = Int32(z)
                for r in 0..<orows {
                    let o = o0 + r
                    let factor = wq.scales[o] * scale, offset = zi &* wq.sums[o], add = bias?[o] ?? 0
                    let a = acc + r * ldc
                    let d = ob + o * plane + p0
                    var i = 0
                    while i + 16 <= cols {
                        let v = SIMD16<Float>(UnsafeRawPointer(a + i).loadUnaligned(as: SIMD16<Int32>.self) &- offset) * factor + add
                        UnsafeMutableRawPointer(d + i).storeBytes(of: v, as: SIMD16<Float>.self)
                        i += 16
                    }
                    while i < cols { d[i] = Float(a[i] &- offset) * factor + add; i += 1 }
                    if !epilogue.isEmpty { epilogue.apply(d, count: cols, base: (b * oc + o) * plane + p0) }
                }
                }
            }
        }
    }
}
