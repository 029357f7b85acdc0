#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif
import Dispatch
import CKernels
import Plan
import Tensors

/// Packed int8 weight panels (`Int8WeightPanels`, `Int8ConvWeights`), as a plan stores them
/// (`compile --prepack`): `byteCount` bytes, written by `write`.
public protocol Int8PackedPanels: AnyObject {
    var byteCount: Int { get }
    /// Whether the panels are a plan's packed form, mapped.
    var borrowed: Bool { get }
    /// Writes the words, then the scales (`byteCount` bytes).
    func write(into destination: UnsafeMutableRawPointer)
}

/// The memory of packed int8 weight panels (`Int8WeightPanels`, `Int8ConvWeights`): `panelWords`
/// words, then `scaleCount` f32 scales; allocated here, or borrowed from a plan's packed form (then
/// never written or freed). What a plan stores is the same bytes (`write`).
struct Int8PanelMemory {
    let words: UnsafeMutablePointer<UInt32>
    let scales: UnsafeMutablePointer<Float>
    let panelWords: Int
    let scaleCount: Int
    let borrowed: Bool

    init(panelWords: Int, scaleCount: Int) {
        words = .allocate(capacity: max(1, panelWords))
        scales = .allocate(capacity: max(1, scaleCount))
        (self.panelWords, self.scaleCount, borrowed) = (panelWords, scaleCount, false)
    }

    /// The caller has checked that `byteCount` bytes lie behind `pointer`, 4-byte aligned.
    init(borrowing pointer: UnsafeRawPointer, panelWords: Int, scaleCount: Int) {
        words = UnsafeMutablePointer(mutating: pointer.assumingMemoryBound(to: UInt32.self))
        scales = UnsafeMutablePointer(mutating: (pointer + panelWords * 4).assumingMemoryBound(to: Float.self))
        (self.panelWords, self.scaleCount, borrowed) = (panelWords, scaleCount, true)
    }

    var byteCount: Int { panelWords * 4 + scaleCount * 4 }

    func write(into destination: UnsafeMutableRawPointer) {
        destination.copyMemory(from: words, byteCount: panelWords * 4)
        (destination + panelWords * 4).copyMemory(from: scales, byteCount: scaleCount * 4)
    }

    func free() {
        guard !borrowed else { return }
        words.deallocate(); scales.deallocate()
    }
}

/// Linear weights `[n, k]` int8 (one scale per output feature) packed for the int8 × int8
/// micro-kernels: panels of 32 columns of Wᵀ, each step a word of four consecutive k as unsigned
/// bytes `w + 128` (128, i.e. zero, past k and past the last column).
public final class Int8WeightPanels: Int8PackedPanels, @unchecked Sendable {
    public let n: Int
    public let k: Int
    public let steps: Int
    let memory: Int8PanelMemory
    var words: UnsafeMutablePointer<UInt32> { memory.words }
    var scales: UnsafeMutablePointer<Float> { memory.scales }
    var panels: Int { (n + Int8Gemm.nr - 1) / Int8Gemm.nr }
    public var byteCount: Int { memory.byteCount }
    /// Whether the panels are a plan's packed form, mapped.
    public var borrowed: Bool { memory.borrowed }

    public init(_ w: UnsafePointer<Int8>, scales s: UnsafePointer<Float>, n: Int, k: Int, threads: Int = 1) {
        let nr = Int8Gemm.nr
        self.n = n
        self.k = k
        steps = (k + 3) / 4
        let panels = (n + nr - 1) / nr
        memory = Int8PanelMemory(panelWords: panels * steps * nr, scaleCount: panels * nr)
        let (words, scales, steps) = (memory.words, memory.scales, self.steps)
        Parallel.forRanges(panels, threads: threads) { range in
            for panel in range {
                for j in 0..<nr {
                    let col = panel * nr + j
                    let d = words + panel * steps * nr + j
                    guard col < n else {
                        for st in 0..<steps { d[st * nr] = 0x8080_8080 }
                        scales[col] = 0
                        continue
                    }
                    let row = UnsafeRawPointer(w + col * k)
                    for st in 0..<steps {
                        if 4 * st + 4 <= k {
                            d[st * nr] = row.loadUnaligned(fromByteOffset: 4 * st, as: UInt32.self) ^ 0x8080_8080
                        } else {
                            var word: UInt32 = 0x8080_8080
                            for q in 0..<4 where 4 * st + q < k { word ^= UInt32(UInt8(bitPattern: w[col * k + 4 * st + q])) << (8 * q) }
                            d[st * nr] = word
                        }
                    }
                    scales[col] = s[col]
                }
            }
        }
    }

    /// Panels already packed at `pointer` (a plan's packed form, `PanelLayout.int8Columns`: the words,
    /// then the scales), used in place. The caller has checked that `byteCount` bytes lie behind it.
    public init(borrowing pointer: UnsafeRawPointer, n: Int, k: Int) {
        self.n = n
        self.k = k
        steps = (k + 3) / 4
        let panels = (n + Int8Gemm.nr - 1) / Int8Gemm.nr
        memory = Int8PanelMemory(borrowing: pointer, panelWords: panels * steps * Int8Gemm.nr, scaleCount: panels * Int8Gemm.nr)
    }

    /// Writes the words, then the scales (`byteCount` bytes): a plan's packed form.
    public func write(into destination: UnsafeMutableRawPointer) { memory.write(into: destination) }

    deinit { memory.free() }
}

/// Linear layers with int8 weights and int8 activations (`--activations int8`): each row of the
/// input (after the layer-norm prologue) is quantised on the fly, symmetric, one scale per block of
/// 32 values of k where k allows (`Int8Gemm.activationBlockSteps`; `s = max |x| / 127`), as s8
/// (widened to 16 bits for the AVX2 kernel); the blocked int8 micro-kernel (VNNI or AVX2) sums each
/// block exactly in int32 and adds it scaled into f32. The weights enter as `w + 128`, so the result
/// is `s_col · (Σ_blocks s · Σ q (w + 128) − Σ_blocks 128 · s · Σ q)`, then bias and epilogue as in
/// `FusedLinear`.
public enum Int8Linear {
    /// Rows per tile (eight micro-kernel panels): its packed activations and one weight panel stay in L2.
    public static let rowTile = 96
    /// Fewer rows than this run the weight-only path (the quantisation would cost more than it saves).
    public static let minimumRows = 48

    /// Nearest integer (ties to even) of values below 2²² in magnitude: adding 1.5·2²³ leaves the
    /// rounded integer in the low mantissa bits (the standard library's conversion with a rounding
    /// rule runs lane by lane through a generic path, 20× slower here).
    @inline(__always)
    static func roundToInt32(_ v: SIMD16<Float>) -> SIMD16<Int32> {
        unsafeBitCast(v + 12_582_912, to: SIMD16<Int32>.self) &- 0x4B40_0000
    }

    @inline(__always)
    static func roundToInt32(_ v: SIMD8<Float>) -> SIMD8<Int32> {
        unsafeBitCast(v + 12_582_912, to: SIMD8<Int32>.self) &- 0x4B40_0000
    }

    /// |v| lane by lane (the sign bit cleared).
    @inline(__always)
    static func magnitude(_ v: SIMD16<Float>) -> SIMD16<Float> {
        unsafeBitCast(unsafeBitCast(v, to: SIMD16<UInt32>.self) & 0x7FFF_FFFF, to: SIMD16<Float>.self)
    }

    /// The largest lane of non-negative `a` and `b`, by halving (`vmaxps`; the standard library's
    /// `pointwiseMax` and `SIMD.max()` are not inlined, and ran lane by lane).
    @inline(__always)
    static func largestMagnitude(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> Float {
        let h8 = _mm256_max_ps(_mm256_max_ps(a.lowHalf, a.highHalf), _mm256_max_ps(b.lowHalf, b.highHalf))
        let h4 = _mm_max_ps(h8.lowHalf, h8.highHalf), h2 = _mm_max_ps(h4, SIMD4(h4[2], h4[3], 0, 0))
        return max(h2[0], h2[1])
    }

    /// The int8 micro-kernel for layers of `rows` rows run with the f32 kernel choice `isa`, if the
    /// int8 × int8 path applies (VNNI, or AVX2 widening to 16 bits).
    public static func kernel(rows: Int, isa: ISA) -> Int8Gemm.Kernel? { rows >= minimumRows ? Int8Gemm.Kernel.matching(isa) : nil }

    /// Quantises `rows` rows of `x [rows, k]` and packs them as s8 A panels of 12 rows (words of four
    /// consecutive k, or 64-bit words of four signed 16-bit values when `wide`; rows past the end
    /// and k past the end are 0). Per panel and block of `blockSteps` words, `blockScales[(panel ·
    /// blocks + block) · 12 + r]` receives each row's scale; `offsets[r]` each row's Σ over blocks of
    /// `128 · s · Σ q` (what the weights' `+ 128` adds).
    static func quantizeRows(_ x: UnsafePointer<Float>, rows: Int, k: Int, into raw: UnsafeMutableRawPointer, wide: Bool, blockSteps bs: Int,
                             blockScales: UnsafeMutablePointer<Float>, offsets: UnsafeMutablePointer<Float>, row8: UnsafeMutablePointer<Int8>) {
        let mr = Int8Gemm.mr, steps = (k + 3) / 4, blocks = steps / bs, width = 4 * bs
        // (Three floats a block, rounded up to whole vectors of eight blocks, for `quantizeRow32`.)
        let temporary = UnsafeMutablePointer<Float>.allocate(capacity: 3 * ((blocks + 7) / 8 * 8))
        defer { temporary.deallocate() }
        let panels = (rows + mr - 1) / mr
        let dst = raw.assumingMemoryBound(to: UInt32.self), dstWide = raw.assumingMemoryBound(to: UInt64.self)
        for r in 0..<(panels * mr) {
            let at = (r / mr) * steps * mr + r % mr
            let scales = blockScales + (r / mr) * blocks * mr + r % mr
            guard r < rows else {
                if wide { for st in 0..<steps { dstWide[at + st * mr] = 0 } } else { for st in 0..<steps { dst[at + st * mr] = 0 } }
                for blk in 0..<blocks { scales[blk * mr] = 0 }
                offsets[r] = 0
                continue
            }
            let src = x + r * k
            var offset: Float = 0
            if width == 32 && k % 32 == 0 {
                // Blocks of 32 (every linear layer of the plans): the row in three passes, so that the
                // divisions run eight blocks to a vector instead of stalling each block.
                offset = quantizeRow32(src, blocks: blocks, scales: scales, stride: mr, bytes: row8, temporary: temporary)
            } else {
                for blk in 0..<blocks {
                    let k0 = blk * width, count = min(width, k - k0)
                    let v = src + k0, u = row8 + k0
                    var m: Float = 0
                    var i = 0
                    // (Other blocks than whole 32s, which `quantizeRow32` takes: lane by lane for the maxima.)
                    while i < count { m = max(m, abs(v[i])); i += 1 }
                    let scale = m / 127, inv: Float = m > 0 ? 127 / m : 0
                    scales[blk * mr] = scale
                    var sum: Int32 = 0
                    var sums = SIMD16<Int32>()
                    i = 0
                    while i + 16 <= count {
                        let f = UnsafeRawPointer(v + i).loadUnaligned(as: SIMD16<Float>.self) * inv
                        let q = Int8Linear.roundToInt32(f.replacing(with: -127, where: f .< -127).replacing(with: 127, where: f .> 127))
                        UnsafeMutableRawPointer(u + i).storeBytes(of: SIMD16<Int8>(truncatingIfNeeded: q), as: SIMD16<Int8>.self)
                        sums &+= q
                        i += 16
                    }
                    sum = sums.wrappedSum()
                    while i < count {
                        let q = Int32(min(127, max(-127, v[i] * inv)).rounded(.toNearestOrEven))
                        u[i] = Int8(q)
                        sum &+= q
                        i += 1
                    }
                    offset += 128 * scale * Float(sum)
                }
            }
            offsets[r] = offset
            var tail = k
            while tail % 4 != 0 { row8[tail] = 0; tail += 1 }
            let words = UnsafeRawPointer(row8)
            if wide {
                for st in 0..<steps { dstWide[at + st * mr] = Int8Gemm.widenSigned(words.loadUnaligned(fromByteOffset: 4 * st, as: UInt32.self)) }
            } else {
                // (Pointer steps: the indexed form kept an overflow check per word.)
                var d = dst + at, w = words
                for _ in 0..<steps {
                    d.pointee = w.loadUnaligned(as: UInt32.self)
                    d += mr
                    w += 4
                }
            }
        }
    }

    /// The tiles of rows of `product`: about `rowTile` rows each (whole panels of 12), as many as a
    /// multiple of `threads` where the panels allow, so that each thread's share of the rows is the
    /// same within a panel (11 tiles of 96 rows of a 1024-row layer left one thread 6 tiles, the
    /// other 5). Tile t holds panels `t · P / T ..< (t + 1) · P / T` of the P panels.
    static func rowTiles(rows: Int, threads: Int) -> Int {
        let panels = (rows + Int8Gemm.mr - 1) / Int8Gemm.mr, perTile = rowTile / Int8Gemm.mr
        let least = (panels + perTile - 1) / perTile, t = max(1, threads)
        return max(1, min(panels, (least + t - 1) / t * t))
    }

    /// One row of k = 32 · `blocks` values quantised per block of 32 into `bytes` (in order), each
    /// block's scale to `scales[block · stride]`; returns the row's offset, Σ over blocks of
    /// `128 · s · Σ q`. The same numbers as the general loop: maxima, then `s = m / 127` and
    /// `inv = 127 / m` eight blocks at a time, then `round(x · inv)` with `vcvtps2dq`.
    @inline(__always)
    static func quantizeRow32(_ src: UnsafePointer<Float>, blocks: Int, scales: UnsafeMutablePointer<Float>, stride: Int,
                              bytes: UnsafeMutablePointer<Int8>, temporary: UnsafeMutablePointer<Float>) -> Float {
        let padded = (blocks + 7) / 8 * 8
        let maxima = temporary, blockScales = temporary + padded, inverses = temporary + 2 * padded
        var v = src
        for b in 0..<blocks {
            let a = UnsafeRawPointer(v).loadUnaligned(as: SIMD16<Float>.self), c = UnsafeRawPointer(v + 16).loadUnaligned(as: SIMD16<Float>.self)
            maxima[b] = largestMagnitude(magnitude(a), magnitude(c))
            v += 32
        }
        for b in blocks..<padded { maxima[b] = 0 }
        let v127 = _mm256_set1_ps(127), tiny = _mm256_set1_ps(.leastNormalMagnitude)
        for b in Swift.stride(from: 0, to: padded, by: 8) {
            let m = _mm256_loadu_ps(maxima + b)
            _mm256_storeu_ps(blockScales + b, _mm256_div_ps(m, v127))
            // 127 / m (m = 0 gives a block of zeros: its inverse is taken as 0 below).
            _mm256_storeu_ps(inverses + b, _mm256_div_ps(v127, _mm256_max_ps(m, tiny)))
        }
        var offset: Float = 0
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)
        for b in 0..<blocks {
            let v = src + 32 * b, vi = _mm256_set1_ps(maxima[b] > 0 ? inverses[b] : 0)
            @inline(__always) func q(_ o: Int) -> __m256i { _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v + o), vi)) }
            let (q0, q1, q2, q3) = (q(0), q(8), q(16), q(24))
            let packed = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3))
            _mm256_storeu_si256(UnsafeMutableRawPointer(bytes + 32 * b).assumingMemoryBound(to: __m256i.self), _mm256_permutevar8x32_epi32(packed, order))
            let total = _mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3))
            let h = _mm256_hadd_epi32(total, total)
            let sums = unsafeBitCast(_mm256_hadd_epi32(h, h), to: SIMD8<Int32>.self)
            let scale = blockScales[b]
            scales[b * stride] = scale
            offset += 128 * scale * Float(sums[0] &+ sums[4])
        }
        return offset
    }

    /// Weight panels per tile of `product`'s work split: all of them (each tile whole rows, `finish`
    /// called once per tile of rows with every column) unless the rows are too few to give each
    /// thread four tiles.
    public static func columnBlockPanels(rows: Int, weights w: Int8WeightPanels, threads: Int) -> Int {
        let rowTiles = rowTiles(rows: rows, threads: threads)
        var blockPanels = w.panels
        while blockPanels > 1 && rowTiles * ((w.panels + blockPanels - 1) / blockPanels) < 4 * threads { blockPanels = (blockPanels + 1) / 2 }
        return blockPanels
    }

    /// Every row of `x [rows, k]` quantised and packed into A panels (after `prepare`, the prologue),
    /// in parallel over the tiles of rows, into `shared`'s slots 0, 1 and 5: the panels, each panel's
    /// block scales and each row's offset.
    struct QuantizedRows {
        let panels: UnsafeRawPointer
        let blockScales: UnsafePointer<Float>
        let offsets: UnsafePointer<Float>
        let rowTiles: Int
        let panelCount: Int
        let blocks: Int
        let blockSteps: Int
        let word: Int
        /// Panels of row tile t: `t · P / T ..< (t + 1) · P / T`.
        @inline(__always) func tilePanels(_ t: Int) -> Range<Int> { (t * panelCount / rowTiles)..<((t + 1) * panelCount / rowTiles) }
    }

    static func quantizeAll(x: UnsafePointer<Float>, rows: Int, k: Int, steps: Int, kernel: Int8Gemm.Kernel, threads: Int, shared: WorkerScratch,
                            prepare: ((Int, Int, UnsafeMutablePointer<Float>) -> Void)?) -> QuantizedRows {
        let mr = Int8Gemm.mr
        let bs = Int8Gemm.activationBlockSteps(steps), blocks = steps / bs
        let panels = (rows + mr - 1) / mr
        let word = kernel.widensActivations ? 8 : 4
        let a = UnsafeMutableRawPointer(shared.floats(0, panels * steps * mr * word / 4))
        let blockScales = shared.floats(1, max(1, panels * blocks * mr))
        let rowOffsets = shared.floats(5, panels * mr)
        let q = QuantizedRows(panels: UnsafeRawPointer(a), blockScales: UnsafePointer(blockScales), offsets: UnsafePointer(rowOffsets),
                              rowTiles: rowTiles(rows: rows, threads: threads), panelCount: panels, blocks: blocks, blockSteps: bs, word: word)
        Parallel.forRanges(q.rowTiles, threads: threads) { range in
            let worker = ScratchPool.shared.take()
            defer { ScratchPool.shared.give(worker) }
            let row8 = UnsafeMutableRawPointer(worker.floats(2, (k + 67) / 4)).assumingMemoryBound(to: Int8.self)
            for c in range {
                let tp = q.tilePanels(c), r0 = tp.lowerBound * mr, count = min(tp.count * mr, rows - r0)
                var src = x + r0 * k
                if let prepare {
                    // The rows as the linear reads them (normalised, gathered through a layout).
                    let prepared = worker.floats(4, count * k)
                    prepare(r0, count, prepared)
                    src = UnsafePointer(prepared)
                }
                quantizeRows(src, rows: count, k: k, into: a + tp.lowerBound * steps * mr * word, wide: word == 8, blockSteps: bs,
                             blockScales: blockScales + tp.lowerBound * blocks * mr, offsets: rowOffsets + r0, row8: row8)
            }
        }
        return q
    }

    /// `out[rows, n] = x[rows, k] · Wᵀ + bias` (then `finish` for the epilogue per tile of rows).
    static func product(x: UnsafePointer<Float>, rows: Int, weights w: Int8WeightPanels, bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>,
                        kernel: Int8Gemm.Kernel, threads: Int,
                        prepare: ((Int, Int, UnsafeMutablePointer<Float>) -> Void)?,
                        finish: (Range<Int>, Range<Int>) -> Void) {
        let (mr, nr, n, steps) = (Int8Gemm.mr, Int8Gemm.nr, w.n, w.steps)
        // Buffers kept between calls (fresh large allocations would cost page faults every call).
        let shared = ScratchPool.shared.take()
        defer { ScratchPool.shared.give(shared) }
        // 1. Every row quantised and packed (after the prologue), in parallel over the tiles of rows.
        let q = quantizeAll(x: x, rows: rows, k: w.k, steps: steps, kernel: kernel, threads: threads, shared: shared, prepare: prepare)
        let (rowTiles, blocks, bs, word) = (q.rowTiles, q.blocks, q.blockSteps, q.word)
        // 2. Tiles of (rows, blocks of columns): at least four per thread when the rows are few.
        let blockPanels = columnBlockPanels(rows: rows, weights: w, threads: threads)
        let colBlocks = (w.panels + blockPanels - 1) / blockPanels
        let aPanels = q.panels, scalesOfBlocks = q.blockScales, offsetsOfRows = q.offsets
        Tiling.runDynamic(rowTiles * colBlocks, threads: threads, setup: { ScratchPool.shared.take() }, cleanup: { ScratchPool.shared.give($0) }) { t, worker in
            let rt = t / colBlocks, cb = t % colBlocks
            let tp = q.tilePanels(rt), p0 = tp.lowerBound, r0 = p0 * mr, count = min(tp.count * mr, rows - r0)
            let tilePanels = tp.count
            let tile = worker.floats(3, mr * nr)
            let jps = (cb * blockPanels)..<min(w.panels, (cb + 1) * blockPanels)
            for jp in jps {
                let cols = min(nr, n - jp * nr)
                let b = UnsafePointer(w.words + jp * steps * nr)
                let sw = w.scales + jp * nr
                let sw0 = UnsafeRawPointer(sw).loadUnaligned(as: SIMD16<Float>.self), sw1 = UnsafeRawPointer(sw + 16).loadUnaligned(as: SIMD16<Float>.self)
                var b0 = SIMD16<Float>(), b1 = SIMD16<Float>()
                if let bias { for j in 0..<cols { if j < 16 { b0[j] = bias[jp * nr + j] } else { b1[j - 16] = bias[jp * nr + j] } } }
                for ip in 0..<tilePanels {
                    kernel.linearBlocked(blocks, bs, aPanels + (p0 + ip) * steps * mr * word, b, tile, nr, scalesOfBlocks + (p0 + ip) * blocks * mr, false)
                    for r in 0..<min(mr, count - ip * mr) {
                        let row = r0 + ip * mr + r
                        let off = offsetsOfRows[row]
                        let acc = UnsafeRawPointer(tile + r * nr)
                        let v0 = (acc.loadUnaligned(as: SIMD16<Float>.self) - off) * sw0 + b0
                        let v1 = (acc.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self) - off) * sw1 + b1
                        let o = out + row * n + jp * nr
                        if cols == nr {
                            UnsafeMutableRawPointer(o).storeBytes(of: v0, as: SIMD16<Float>.self)
                            UnsafeMutableRawPointer(o + 16).storeBytes(of: v1, as: SIMD16<Float>.self)
                        } else {
                            for j in 0..<cols { o[j] = j < 16 ? v0[j] : v1[j - 16] }
                        }
                    }
                }
            }
            finish(r0..<(r0 + count), (jps.lowerBound * nr)..<min(n, jps.upperBound * nr))
        }
    }

    /// Output panels of 32 a tile of `productGEGLU` covers: its two halves' products of up to 96 rows
    /// stay within 256 KB (in L2).
    static let gegluBlockPanels = 10

    /// GEGLU (`x · Wᵀ + b` with 2h columns, `out[r, j] = y[r, j] · gelu(y[r, h + j])`, h a multiple
    /// of 32) with the product never leaving a tile: each tile of rows and up to `gegluBlockPanels`
    /// output panels runs the kernel on both halves' weight panels (panel jp and jp + h/32), scales the
    /// sums back into two small buffers, and combines them row by row into `out` with
    /// `VectorMath.gegluCombine` (the biases added there); `finish(rows, columns)` after each tile.
    /// (The whole-row product went through an 8 MB buffer and a second pass: 5.8 ms for 4096 rows ×
    /// 320 → 2 × 1280.)
    static func productGEGLU(x: UnsafePointer<Float>, rows: Int, weights w: Int8WeightPanels, half h: Int, bias: UnsafePointer<Float>?,
                             out: UnsafeMutablePointer<Float>, kernel: Int8Gemm.Kernel, threads: Int,
                             prepare: ((Int, Int, UnsafeMutablePointer<Float>) -> Void)?,
                             finish: (Range<Int>, Range<Int>) -> Void) {
        let (mr, nr, steps) = (Int8Gemm.mr, Int8Gemm.nr, w.steps)
        precondition(h % nr == 0 && w.n == 2 * h, "GEGLU halves of whole panels")
        let shared = ScratchPool.shared.take()
        defer { ScratchPool.shared.give(shared) }
        let q = quantizeAll(x: x, rows: rows, k: w.k, steps: steps, kernel: kernel, threads: threads, shared: shared, prepare: prepare)
        let (blocks, bs, word) = (q.blocks, q.blockSteps, q.word)
        let halfPanels = h / nr
        let colBlocks = (halfPanels + gegluBlockPanels - 1) / gegluBlockPanels
        Tiling.runDynamic(q.rowTiles * colBlocks, threads: threads, setup: { ScratchPool.shared.take() }, cleanup: { ScratchPool.shared.give($0) }) { t, worker in
            let rt = t / colBlocks, cb = t % colBlocks
            let tp = q.tilePanels(rt), p0 = tp.lowerBound, r0 = p0 * mr, count = min(tp.count * mr, rows - r0)
            let jps = (cb * gegluBlockPanels)..<min(halfPanels, (cb + 1) * gegluBlockPanels)
            let width = jps.count * nr, c0 = jps.lowerBound * nr
            let tile = worker.floats(3, mr * nr)
            let ya = worker.floats(6, count * width), yg = worker.floats(7, count * width)
            for jp in jps {
                for gate in 0..<2 {
                    let panel = jp + gate * halfPanels, y = gate == 0 ? ya : yg
                    let b = UnsafePointer(w.words + panel * steps * nr)
                    let sw = w.scales + panel * nr
                    let sw0 = UnsafeRawPointer(sw).loadUnaligned(as: SIMD16<Float>.self), sw1 = UnsafeRawPointer(sw + 16).loadUnaligned(as: SIMD16<Float>.self)
                    for ip in 0..<tp.count {
                        kernel.linearBlocked(blocks, bs, q.panels + (p0 + ip) * steps * mr * word, b, tile, nr, q.blockScales + (p0 + ip) * blocks * mr, false)
                        for r in 0..<min(mr, count - ip * mr) {
                            let off = q.offsets[r0 + ip * mr + r]
                            let acc = UnsafeRawPointer(tile + r * nr)
                            let d = UnsafeMutableRawPointer(y + (ip * mr + r) * width + (jp - jps.lowerBound) * nr)
                            d.storeBytes(of: (acc.loadUnaligned(as: SIMD16<Float>.self) - off) * sw0, as: SIMD16<Float>.self)
                            d.storeBytes(of: (acc.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self) - off) * sw1, toByteOffset: 64, as: SIMD16<Float>.self)
                        }
                    }
                }
            }
            for r in 0..<count {
                VectorMath.gegluCombine(ya + r * width, yg + r * width, biasA: bias.map { $0 + c0 }, biasG: bias.map { $0 + h + c0 },
                                        out + (r0 + r) * h + c0, width)
            }
            finish(r0..<(r0 + count), c0..<(c0 + width))
        }
    }
}
