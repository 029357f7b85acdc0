import Dispatch
import CKernels
import Plan
import Tensors

/// Convolution weights `[oc, ic, kh, kw]` int8 (one scale per output channel) packed for the int8
/// × int8 micro-kernels: A panels of 12 output channels whose steps run tap by tap and, within a
/// tap, over quads of input channels (a word holds the weights of four consecutive channels as
/// unsigned bytes `w + 128`; past the last channel and the last row, 128, i.e. zero).
public final class Int8ConvWeights: Int8PackedPanels, @unchecked Sendable {
    public let oc: Int
    public let ic: Int
    public let kh: Int
    public let kw: Int
    public var taps: Int { kh * kw }
    public var quads: Int { (ic + 3) / 4 }
    public var steps: Int { taps * quads }
    let memory: Int8PanelMemory
    var words: UnsafeMutablePointer<UInt32> { memory.words }
    var scales: UnsafeMutablePointer<Float> { memory.scales }
    var panels: Int { (oc + Int8Gemm.mr - 1) / Int8Gemm.mr }
    public var byteCount: Int { memory.byteCount }
    /// Whether the panels are a plan's packed form, mapped.
    public var borrowed: Bool { memory.borrowed }

    public init(_ w: UnsafePointer<Int8>, scales s: UnsafePointer<Float>, oc: Int, ic: Int, kh: Int, kw: Int, threads: Int = 1) {
        let mr = Int8Gemm.mr
        self.oc = oc
        self.ic = ic
        self.kh = kh
        self.kw = kw
        let taps = kh * kw
        let quads = (ic + 3) / 4, steps = taps * quads
        let panels = (oc + mr - 1) / mr
        memory = Int8PanelMemory(panelWords: panels * steps * mr, scaleCount: panels * mr)
        let (words, scales) = (memory.words, memory.scales)
        Parallel.forRanges(panels, threads: threads) { range in
            for panel in range {
                for r in 0..<mr {
                    let o = panel * mr + r
                    let d = words + panel * steps * mr + r
                    guard o < oc else {
                        for st in 0..<steps { d[st * mr] = 0x8080_8080 }
                        scales[o] = 0
                        continue
                    }
                    let row = w + o * ic * taps
                    for t in 0..<taps {
                        for cq in 0..<quads {
                            var word: UInt32 = 0x8080_8080
                            for q in 0..<4 where 4 * cq + q < ic {
                                word ^= UInt32(UInt8(bitPattern: row[(4 * cq + q) * taps + t])) << (8 * q)
                            }
                            d[(t * quads + cq) * mr] = word
                        }
                    }
                    scales[o] = s[o]
                }
            }
        }
    }

    /// Panels already packed at `pointer` (a plan's packed form, `PanelLayout.int8Taps`: the words,
    /// then the scales), used in place. The caller has checked that `byteCount` bytes lie behind it.
    public init(borrowing pointer: UnsafeRawPointer, oc: Int, ic: Int, kh: Int, kw: Int) {
        (self.oc, self.ic, self.kh, self.kw) = (oc, ic, kh, kw)
        let panels = (oc + Int8Gemm.mr - 1) / Int8Gemm.mr
        memory = Int8PanelMemory(borrowing: pointer, panelWords: panels * kh * kw * ((ic + 3) / 4) * Int8Gemm.mr, scaleCount: panels * Int8Gemm.mr)
    }

    /// Writes the words, then the scales (`byteCount` bytes): a plan's packed form.
    public func write(into destination: UnsafeMutableRawPointer) { memory.write(into: destination) }

    deinit { memory.free() }
}

/// Convolutions with int8 weights and int8 activations (`--activations int8`, groups 1): the input
/// (after the group-norm prologue and SiLU) is quantised once per image, symmetric, one scale per
/// pixel and block of `4 · blockSteps` channels (64 when the channel count allows: `s = max |y| /
/// 127`, `q = round(y / s)`), into a padded copy whose words hold four consecutive channels of a
/// pixel (0 in the padding), with the scales and each block's `128 · s · Σ q` beside it. Each band of
/// output pixels gathers its taps from it once into B panels with one scale per column and block
/// (in parallel; widened to 16-bit values for the AVX2 kernel), shared by the blocks of output
/// channels, which run the blocked int8 micro-kernel (VNNI or AVX2): exact int32 sums per block of
/// k, scaled by the block's activation scale into f32. The weights enter as `w + 128`, so the
/// result is `s_w[o] · (Σ_blocks s · Σ (w + 128) q − Σ_blocks 128 · s · Σ q)`, then bias and epilogue.
public enum Int8Convolution {
    static let bandPixels = 512
    /// Words of four channels per block of activation scales at most: blocks of 64 channels (the
    /// linear layers keep 32). Against 32, the denoise step took 5–7 % less time for 2.48 % error
    /// instead of 2.38 % (the blocked kernel converts and scales its sums once a block).
    public static let blockStepsMaximum = 16

    /// Words of four channels per block of activation scales for `quads` words of a tap.
    public static func activationBlockSteps(_ quads: Int) -> Int { Int8Gemm.activationBlockSteps(quads, maximum: blockStepsMaximum) }

    /// The int8 micro-kernel that runs this convolution with the f32 kernel choice `isa` (ungrouped only).
    public static func kernel(_ k: Conv2DKernel, isa: ISA) -> Int8Gemm.Kernel? { k.groups == 1 ? Int8Gemm.Kernel.matching(isa) : nil }

    /// Without VNNI, int8 × int8 products are no faster than f32 ones, and 3×3 convolutions of 32×32
    /// outputs or more run faster as Winograd on the int8 weights, transformed as used, with f32
    /// activations: F(2,3), and F(4,3) from 64×64 (the denoise step's, AVX2: 320 channels at 64×64
    /// 302 → 205 ms as F(2,3); 640 at 32×32 173 → 124 ms; on 16×16 and smaller, the int8 × int8
    /// products are as fast or faster). Whether convolution `k` of `weight` into `output` runs so.
    public static func runsAsF32Winograd(_ k: Conv2DKernel, weight: [Int], output: [Int], isa: ISA) -> Bool {
        kernel(k, isa: isa) == .avx2 && k.upsample != true && Winograd.eligible(k, weight: weight) && weight[0] >= 32 && weight[1] >= 32
            && output.count == 4 && output[2] * output[3] >= 32 * 32
    }

    /// Whether an upsampling convolution runs as one int8 2×2 convolution (`runUpsample`).
    public static func upsampleEligible(_ k: Conv2DKernel, input: [Int], weight: [Int]) -> Bool {
        k.upsample == true && k.prologue == nil && weight.count == 4 && weight[0] % 4 == 0 && weight[2] == 2 && weight[3] == 2
            && upsampleFits(x: input, oc: weight[0] / 4)
    }

    /// `Conv2DKernel.upsample` (a 3×3 convolution of the image enlarged twice by nearest neighbour)
    /// in int8 × int8: the four 2×2 phase kernels (`wq`: `[4·oc, ic, 2, 2]`, phase 2a + b the
    /// major index) run as one 2×2 convolution of the small image padded by 1 on every side, into
    /// `[n, 4·oc, h + 1, w + 1]` (phase (a, b) of output pixel (2i + a, 2j + b) is its value at
    /// (i + a, j + b)), then interleaved into the output with bias and epilogue.
    /// The most memory `runUpsample`'s four phase planes may take: larger images (a VAE decoder's
    /// upsampling at 256 × 256 would need 270 MB) run their phases in f32 through
    /// `UpsampleConvolution`, which reads the small image in place.
    public static let upsampleScratchBytes = 16 << 20

    /// Whether `runUpsample` takes a small image of dimensions `x` (NCHW) into `oc` channels within
    /// `upsampleScratchBytes`.
    public static func upsampleFits(x: [Int], oc: Int) -> Bool {
        x.count == 4 && x[0] * 4 * oc * (x[2] + 1) * (x[3] + 1) * 4 <= upsampleScratchBytes
    }

    public static func runUpsample(_ k: Conv2DKernel, x: View, weights wq: Int8ConvWeights, operands: [View], out: View, kernel: Int8Gemm.Kernel,
                                   threads: Int) {
        let (n, h, w) = (x.dims[0], x.dims[2], x.dims[3])
        let oc = out.dims[1], (oh, ow) = (2 * h, 2 * w), (th, tw) = (h + 1, w + 1)
        precondition(wq.oc == 4 * oc && wq.kh == 2 && wq.kw == 2 && k.prologue == nil && out.dims[2] == oh && out.dims[3] == ow,
                     "upsampling convolution: [4·oc, ic, 2, 2] phase kernels, no prologue")
        let scratch = ScratchPool.shared.take()
        defer { ScratchPool.shared.give(scratch) }
        let phases = scratch.floats(7, n * 4 * oc * th * tw)
        let joint = Conv2DKernel(strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, hasBias: false)
        run(joint, x: x, weights: wq, operands: [x], out: View(pointer: UnsafeMutableRawPointer(phases), dtype: .f32, shape: Shape([n, 4 * oc, th, tw])),
            kernel: kernel, threads: threads)
        let epilogue = ResolvedEpilogue(k.epilogue, operands: operands, plane: oh * ow)
        let bias: UnsafePointer<Float>? = k.hasBias ? UnsafePointer(operands[2].floats) : nil
        let src = UnsafePointer(phases)
        Parallel.forRanges(n * oc * oh, threads: threads) { range in
            for row in range {
                let (plane, y) = (row / oh, row % oh)
                let (b, o) = (plane / oc, plane % oc)
                let (a, i) = (y % 2, y / 2)
                // Phases (a, 0) and (a, 1): columns j and j + 1 of row i + a of their planes.
                let even = src + ((b * 4 + 2 * a) * oc + o) * th * tw + (i + a) * tw
                let odd = src + ((b * 4 + 2 * a + 1) * oc + o) * th * tw + (i + a) * tw + 1
                let d = out.floats + row * ow
                var j = 0
                while j + 8 <= w {
                    Winograd.storeInterleaved(UnsafeRawPointer(even + j).loadUnaligned(as: SIMD8<Float>.self),
                                              UnsafeRawPointer(odd + j).loadUnaligned(as: SIMD8<Float>.self), d + 2 * j)
                    j += 8
                }
                while j < w { d[2 * j] = even[j]; d[2 * j + 1] = odd[j]; j += 1 }
                if bias != nil || !epilogue.isEmpty { epilogue.apply(d, count: ow, base: row * ow, scalarBias: bias?[o] ?? 0) }
            }
        }
    }

    public static func run(_ k: Conv2DKernel, x: View, weights wq: Int8ConvWeights, operands: [View], out: View, kernel: Int8Gemm.Kernel, threads: Int) {
        let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3])
        let (oc, oh, ow) = (out.dims[1], out.dims[2], out.dims[3])
        let kw = wq.kw, taps = wq.taps
        let (sh, sw) = (k.strides[0], k.strides[1]), (dh, dw) = (k.dilations[0], k.dilations[1])
        let (pt, pl, pb, pr) = (k.pads[0], k.pads[1], k.pads[2], k.pads[3])
        let (mr, nr) = (Int8Gemm.mr, Int8Gemm.nr)
        let quads = wq.quads, steps = wq.steps, plane = oh * ow
        let (ph, pw) = (h + pt + pb, w + pl + pr), padded = ph * pw
        // Blocks of activation scales: `bs` quads of channels within a tap.
        let bs = activationBlockSteps(quads), channelBlocks = quads / bs, blocks = taps * channelBlocks
        let blocksPerCall = max(1, kernel.blockSteps / bs)
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
        // Blocks of output channels: at least two per thread in each band (the bands run one after the
        // other; each block streams the band's packed input once, so fewer blocks read it less: four a
        // thread measured ~2 % slower on the denoise step's convolutions). Block b holds panels
        // `b · P / B ..< (b + 1) · P / B` of the P panels of 12 channels, so that the threads' shares
        // differ by at most a panel (blocks of 84 channels for 320 gave one thread 168, the other 152).
        let ocPanels = (oc + mr - 1) / mr
        let ocBlocks = max(1, min(ocPanels, 2 * threads))
        // Buffers kept between calls (fresh large allocations would cost page faults every call).
        let shared = ScratchPool.shared.take()
        defer { ScratchPool.shared.give(shared) }
        let quantized = UnsafeMutableRawPointer(shared.floats(0, max(1, quads * padded))).assumingMemoryBound(to: UInt32.self)
        // Per channel block and padded pixel: the scale, and 128 · scale · Σ q (0 in the padding).
        let pixelScales = shared.floats(2, max(1, channelBlocks * padded))
        let pixelOffsets = shared.floats(3, max(1, channelBlocks * padded))
        let (scalesOut, offsetsOut) = (pixelScales, pixelOffsets)
        for b in 0..<n {
            // The prologue's output y = a·x + b (then SiLU) for channel ch, eight values at a time.
            @inline(__always) func prologue(_ ch: Int, _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
                guard !affine.isEmpty else { dst.update(from: src, count: count); return }
                let (sa, sb) = (affine[(b * c + ch) * 2], affine[(b * c + ch) * 2 + 1])
                if silu { VectorMath.map(src, dst, count) { VectorMath.silu($0 * sa + sb) } } else { VectorMath.map(src, dst, count) { $0 * sa + sb } }
            }
            let xb = x.floats + b * c * h * w
            // The padded quantised copy, in parallel over (channel block, padded row).
            let bc = 4 * bs
            Parallel.forRanges(channelBlocks * ph, threads: threads) { range in
                let worker = ScratchPool.shared.take()
                defer { ScratchPool.shared.give(worker) }
                let rows = worker.floats(0, bc * w + 16)
                let maxima = worker.floats(1, w + 16)
                let bytes = UnsafeMutableRawPointer(worker.floats(2, bc * w / 4 + 16)).assumingMemoryBound(to: Int8.self)
                for item in range {
                    let cb = item / ph, y = item % ph
                    let sRow = scalesOut + cb * padded + y * pw, oRow = offsetsOut + cb * padded + y * pw
                    let iy = y - pt
                    guard iy >= 0 && iy < h else {
                        for cq in (cb * bs)..<((cb + 1) * bs) { (quantized + cq * padded + y * pw).initialize(repeating: 0, count: pw) }
                        sRow.initialize(repeating: 0, count: pw)
                        oRow.initialize(repeating: 0, count: pw)
                        continue
                    }
                    for cq in (cb * bs)..<((cb + 1) * bs) {
                        let d = quantized + cq * padded + y * pw
                        if pl > 0 { d.initialize(repeating: 0, count: pl) }
                        if pr > 0 { (d + pl + w).initialize(repeating: 0, count: pr) }
                    }
                    if pl > 0 { sRow.initialize(repeating: 0, count: pl); oRow.initialize(repeating: 0, count: pl) }
                    if pr > 0 { (sRow + pl + w).initialize(repeating: 0, count: pr); (oRow + pl + w).initialize(repeating: 0, count: pr) }
                    // The block's rows after the prologue, and each pixel's largest magnitude.
                    maxima.initialize(repeating: 0, count: w)
                    for i in 0..<bc {
                        let ch = cb * bc + i
                        let r = rows + i * w
                        if ch < c { prologue(ch, xb + (ch * h + iy) * w, r, w) } else { r.initialize(repeating: 0, count: w) }
                        var p = 0
                        while p + 8 <= w {
                            let v = UnsafeRawPointer(r + p).loadUnaligned(as: SIMD8<Float>.self)
                            let a = v.replacing(with: -v, where: v .< 0)
                            let m = UnsafeRawPointer(maxima + p).loadUnaligned(as: SIMD8<Float>.self)
                            UnsafeMutableRawPointer(maxima + p).storeBytes(of: m.replacing(with: a, where: a .> m), as: SIMD8<Float>.self)
                            p += 8
                        }
                        while p < w { maxima[p] = max(maxima[p], abs(r[p])); p += 1 }
                    }
                    // Scales (inverse in `maxima`), then each channel's row of s8 values.
                    for p in 0..<w {
                        let m = maxima[p]
                        sRow[pl + p] = m / 127
                        maxima[p] = m > 0 ? 127 / m : 0
                    }
                    let sums = UnsafeMutableRawPointer(worker.floats(3, w + 16)).assumingMemoryBound(to: Int32.self)
                    sums.initialize(repeating: 0, count: w)
                    for i in 0..<bc {
                        let r = rows + i * w, u = bytes + i * w
                        var p = 0
                        while p + 8 <= w {
                            let v = UnsafeRawPointer(r + p).loadUnaligned(as: SIMD8<Float>.self) * UnsafeRawPointer(maxima + p).loadUnaligned(as: SIMD8<Float>.self)
                            let t = Int8Linear.roundToInt32(v.replacing(with: -127, where: v .< -127).replacing(with: 127, where: v .> 127))
                            UnsafeMutableRawPointer(u + p).storeBytes(of: SIMD8<Int8>(truncatingIfNeeded: t), as: SIMD8<Int8>.self)
                            let sum = UnsafeRawPointer(sums + p).loadUnaligned(as: SIMD8<Int32>.self) &+ t
                            UnsafeMutableRawPointer(sums + p).storeBytes(of: sum, as: SIMD8<Int32>.self)
                            p += 8
                        }
                        while p < w {
                            let t = Int32(min(127, max(-127, r[p] * maxima[p])).rounded(.toNearestOrEven))
                            u[p] = Int8(t)
                            sums[p] &+= t
                            p += 1
                        }
                    }
                    for p in 0..<w { oRow[pl + p] = 128 * sRow[pl + p] * Float(sums[p]) }
                    // Interleave four channels' rows into words.
                    for j in 0..<bs {
                        let o = quantized + (cb * bs + j) * padded + y * pw + pl
                        let q0 = UnsafeRawPointer(bytes + 4 * j * w)
                        var p = 0
                        while p + 8 <= w {
                            let b0 = SIMD8<UInt32>(truncatingIfNeeded: q0.loadUnaligned(fromByteOffset: p, as: SIMD8<UInt8>.self))
                            let b1 = SIMD8<UInt32>(truncatingIfNeeded: q0.loadUnaligned(fromByteOffset: w + p, as: SIMD8<UInt8>.self))
                            let b2 = SIMD8<UInt32>(truncatingIfNeeded: q0.loadUnaligned(fromByteOffset: 2 * w + p, as: SIMD8<UInt8>.self))
                            let b3 = SIMD8<UInt32>(truncatingIfNeeded: q0.loadUnaligned(fromByteOffset: 3 * w + p, as: SIMD8<UInt8>.self))
                            UnsafeMutableRawPointer(o + p).storeBytes(of: b0 | (b1 &<< 8) | (b2 &<< 16) | (b3 &<< 24), as: SIMD8<UInt32>.self)
                            p += 8
                        }
                        let q = q0.assumingMemoryBound(to: UInt8.self)
                        while p < w {
                            o[p] = UInt32(q[p]) | UInt32(q[w + p]) << 8 | UInt32(q[2 * w + p]) << 16 | UInt32(q[3 * w + p]) << 24
                            p += 1
                        }
                    }
                }
            }
            let src = UnsafePointer(quantized)
            let ob = out.floats + b * oc * plane
            // Per band: B packed once (all steps, panel-major, in parallel over steps) with its scales
            // per column and block and each column's offset (Σ over blocks of 128 · s · Σ q); then the
            // blocks of output channels in parallel, `blocksPerCall` blocks of B at a time.
            // The AVX2 kernel takes B widened to 16 bits (a 64-bit word per column and step).
            let wide = kernel.widensActivations
            let bPanelsMax = (band + nr - 1) / nr
            let packedB = UnsafeMutableRawPointer(shared.floats(1, max(1, bPanelsMax * steps * nr * (wide ? 2 : 1)))).assumingMemoryBound(to: UInt32.self)
            let packedWide = UnsafeMutableRawPointer(packedB).assumingMemoryBound(to: UInt64.self)
            let columnScales = shared.floats(4, max(1, bPanelsMax * blocks * nr))
            // Each output pixel's offset: the sum over its blocks (taps × channel blocks) of
            // 128 · s · Σ q; for the whole plane in one parallel pass (per band, it was a third of
            // the convolutions' parallel regions).
            let planePanels = (plane + nr - 1) / nr
            let columnOffsets = shared.floats(5, max(1, planePanels * nr))
            Parallel.forRanges(planePanels, threads: threads) { range in
                for p in (range.lowerBound * nr)..<(range.upperBound * nr) {
                    var total: Float = 0
                    if p < plane {
                        let base = (p / ow) * sh * pw + (p % ow) * sw
                        for t in 0..<taps {
                            let at = base + (t / kw) * dh * pw + (t % kw) * dw
                            for cb in 0..<channelBlocks { total += offsetsOut[cb * padded + at] }
                        }
                    }
                    columnOffsets[p] = total
                }
            }
            for bi in 0..<bands {
                let p0 = bi * band, cols = min(band, plane - p0)
                let bPanels = (cols + nr - 1) / nr
                // The band's runs of columns (the same for every step): where each starts in a panel
                // (`jp · steps · nr + j`, and `jp · blocks · nr + j` for its scales), where it reads
                // (offset in a padded channel plane; −1: past the last pixel, zeros) and its length.
                var runs: [(at: Int, scaleAt: Int, from: Int, count: Int)] = []
                var p = p0
                let end = p0 + bPanels * nr
                while p < end {
                    let jp = (p - p0) / nr, j = (p - p0) % nr
                    let at = jp * steps * nr + j, scaleAt = jp * blocks * nr + j
                    guard p < plane else {
                        runs.append((at, scaleAt, -1, nr - j))
                        p += nr - j
                        continue
                    }
                    let (oy, ox) = (p / ow, p % ow)
                    let run = min(ow - ox, nr - j, plane - p)
                    runs.append((at, scaleAt, oy * sh * pw + ox * sw, run))
                    p += run
                }
                runs.withUnsafeBufferPointer { runTable in
                Parallel.forRanges(steps, threads: threads) { range in
                    for step in range {
                        let t = step / quads, cq = step % quads
                        let (ky, kx) = (t / kw, t % kw)
                        let tap = ky * dh * pw + kx * dw
                        let channel = src + cq * padded + tap
                        // The first step of a block also gathers its scales.
                        let blockStart = cq % bs == 0, block = t * channelBlocks + cq / bs
                        let scaleSource = UnsafePointer(scalesOut) + (cq / bs) * padded + tap
                        for r in runTable {
                            let at = r.at + step * nr, sAt = r.scaleAt + block * nr, run = r.count
                            guard r.from >= 0 else {
                                if wide { (packedWide + at).initialize(repeating: 0, count: run) } else { (packedB + at).initialize(repeating: 0, count: run) }
                                if blockStart { (columnScales + sAt).initialize(repeating: 0, count: run) }
                                continue
                            }
                            let from = channel + r.from
                            if wide {
                                for i in 0..<run { packedWide[at + i] = Int8Gemm.widenSigned(from[i * sw]) }
                            } else if sw == 1 {
                                (packedB + at).update(from: from, count: run)
                            } else {
                                let d = packedB + at
                                for i in 0..<run { d[i] = from[i * sw] }
                            }
                            if blockStart {
                                let sFrom = scaleSource + r.from
                                if sw == 1 { (columnScales + sAt).update(from: sFrom, count: run) } else { for i in 0..<run { columnScales[sAt + i] = sFrom[i * sw] } }
                            }
                        }
                    }
                }
                }
                let sharedB = UnsafeRawPointer(packedB), word = wide ? 8 : 4
                let scalesB = UnsafePointer(columnScales), offsetsB = UnsafePointer(columnOffsets + p0)
                // Tiles: the blocks of output channels, handed out as asked. (Splitting each block's
                // columns in two as well, so that 27 panels of 320 channels split evenly, streamed each
                // block's weights twice: 5 % slower on the denoise step's convolutions.)
                Tiling.runDynamic(ocBlocks, threads: threads, setup: { ScratchPool.shared.take() }, cleanup: { ScratchPool.shared.give($0) }) { ocb, worker in
                    let firstPanel = ocb * ocPanels / ocBlocks, aPanels = (ocb + 1) * ocPanels / ocBlocks - firstPanel
                    let o0 = firstPanel * mr, orows = min(aPanels * mr, oc - o0)
                    let ldc = bPanels * nr
                    let acc = worker.floats(0, aPanels * mr * ldc)
                    var b0 = 0
                    while b0 < blocks {
                        let nb = min(blocksPerCall, blocks - b0), s0 = b0 * bs
                        for jp in 0..<bPanels {
                            let bp = sharedB + (jp * steps + s0) * nr * word
                            let sp = scalesB + (jp * blocks + b0) * nr
                            for ip in 0..<aPanels {
                                let ap = UnsafePointer(wq.words + ((o0 / mr + ip) * steps + s0) * mr)
                                kernel.convBlocked(nb, bs, ap, bp, acc + ip * mr * ldc + jp * nr, ldc, sp, b0 > 0)
                            }
                        }
                        b0 += nb
                    }
                    // The weights' scale, less the offsets of `w + 128`; then bias and epilogue, one
                    // output channel's run of pixels at a time.
                    for r in 0..<orows {
                        let o = o0 + r
                        let factor = wq.scales[o], add = bias?[o] ?? 0
                        let a = acc + r * ldc
                        let d = ob + o * plane + p0
                        var i = 0
                        while i + 16 <= cols {
                            let v = (UnsafeRawPointer(a + i).loadUnaligned(as: SIMD16<Float>.self) - UnsafeRawPointer(offsetsB + i).loadUnaligned(as: SIMD16<Float>.self)) * factor + add
                            UnsafeMutableRawPointer(d + i).storeBytes(of: v, as: SIMD16<Float>.self)
                            i += 16
                        }
                        while i < cols { d[i] = (a[i] - offsetsB[i]) * factor + add; i += 1 }
                        if !epilogue.isEmpty { epilogue.apply(d, count: cols, base: (b * oc + o) * plane + p0) }
                    }
                }
            }
        }
    }
}
