import Dispatch
import CKernels
import Plan
import Tensors

/// Linear weights `[n, k]` int8 (one scale per output feature) packed for the u8 × s8 int8
/// micro-kernels: panels of 32 columns of Wᵀ, each step a word of four consecutive k (zeros past k
/// and past the last column), with `128 · Σ_k w[j, k]` per column for the activations' offset.
public final class Int8WeightPanels: @unchecked Sendable {
    public let n: Int
    public let k: Int
    public let steps: Int
    let words: UnsafeMutablePointer<UInt32>
    let scales: UnsafeMutablePointer<Float>
    let compensation: UnsafeMutablePointer<Int32>
    var panels: Int { (n + Int8Gemm.nr - 1) / Int8Gemm.nr }
    public var byteCount: Int { panels * steps * Int8Gemm.nr * 4 + panels * Int8Gemm.nr * 8 }

    public init(_ w: UnsafePointer<Int8>, scales s: UnsafePointer<Float>, n: Int, k: Int, threads: Int = 1) {
        let nr = Int8Gemm.nr
        self.n = n
        self.k = k
        steps = (k + 3) / 4
        let panels = (n + nr - 1) / nr
        words = .allocate(capacity: max(1, panels * steps * nr))
        scales = .allocate(capacity: max(1, panels * nr))
        compensation = .allocate(capacity: max(1, panels * nr))
        let (words, scales, compensation, steps) = (self.words, self.scales, self.compensation, self.steps)
        Parallel.forRanges(panels, threads: threads) { range in
            for panel in range {
                for j in 0..<nr {
                    let col = panel * nr + j
                    let d = words + panel * steps * nr + j
                    guard col < n else {
                        for st in 0..<steps { d[st * nr] = 0 }
                        scales[col] = 0
                        compensation[col] = 0
                        continue
                    }
                    let row = UnsafeRawPointer(w + col * k)
                    var sum: Int32 = 0
                    for i in 0..<k { sum &+= Int32(w[col * k + i]) }
                    for st in 0..<steps {
                        if 4 * st + 4 <= k {
                            d[st * nr] = row.loadUnaligned(fromByteOffset: 4 * st, as: UInt32.self)
                        } else {
                            var word: UInt32 = 0
                            for q in 0..<4 where 4 * st + q < k { word |= UInt32(UInt8(bitPattern: w[col * k + 4 * st + q])) << (8 * q) }
                            d[st * nr] = word
                        }
                    }
                    scales[col] = s[col]
                    compensation[col] = 128 &* sum
                }
            }
        }
    }

    deinit { words.deallocate(); scales.deallocate(); compensation.deallocate() }
}

/// Linear layers with int8 weights and int8 activations (`--activations int8`): each row of the
/// input (after the layer-norm prologue) is quantised on the fly, symmetric with its own scale
/// `max |x| / 127`, stored as u8 (`q + 128`; widened to 16 bits for the AVX2 kernel); the int8
/// micro-kernel (VNNI or AVX2) sums exactly in int32; the result is
/// `s_row · s_col · (Σ − 128 · Σ_k w)`, then bias and epilogue as in `FusedLinear`.
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

    /// The int8 micro-kernel for layers of `rows` rows run with the f32 kernel choice `isa`, if the
    /// int8 × int8 path applies (VNNI, or AVX2 widening to 16 bits).
    public static func kernel(rows: Int, isa: ISA) -> Int8Gemm.Kernel? { rows >= minimumRows ? Int8Gemm.Kernel.matching(isa) : nil }

    /// Quantises `rows` rows of `x [rows, k]` and packs them as u8 A panels of 12 rows (words of four
    /// consecutive k, or 64-bit words of four 16-bit values when `wide`; rows past the end are 128,
    /// i.e. zero). `rowScales[r]` receives each row's scale.
    static func quantizeRows(_ x: UnsafePointer<Float>, rows: Int, k: Int, into raw: UnsafeMutableRawPointer, wide: Bool,
                             rowScales: UnsafeMutablePointer<Float>, row8: UnsafeMutablePointer<UInt8>) {
        let mr = Int8Gemm.mr, steps = (k + 3) / 4
        let panels = (rows + mr - 1) / mr
        let zero = UInt32(0x8080_8080)
        let dst = raw.assumingMemoryBound(to: UInt32.self), dstWide = raw.assumingMemoryBound(to: UInt64.self)
        for r in 0..<(panels * mr) {
            let at = (r / mr) * steps * mr + r % mr
            guard r < rows else {
                if wide { for st in 0..<steps { dstWide[at + st * mr] = Int8Gemm.widen(zero) } } else { for st in 0..<steps { dst[at + st * mr] = zero } }
                rowScales[r] = 0
                continue
            }
            let src = x + r * k
            var m = SIMD16<Float>(repeating: 0)
            var i = 0
            while i + 16 <= k {
                let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<Float>.self)
                let a = v.replacing(with: -v, where: v .< 0)
                m = m.replacing(with: a, where: a .> m)
                i += 16
            }
            var mx = m.max()
            while i < k { mx = max(mx, abs(src[i])); i += 1 }
            let scale = mx > 0 ? mx / 127 : 1
            rowScales[r] = scale
            let inv = 1 / scale
            i = 0
            while i + 16 <= k {
                let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<Float>.self) * inv
                let q = Int8Linear.roundToInt32(v) &+ 128
                UnsafeMutableRawPointer(row8 + i).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: q), as: SIMD16<UInt8>.self)
                i += 16
            }
            while i < k { row8[i] = UInt8(Int32((src[i] * inv).rounded(.toNearestOrEven)) + 128); i += 1 }
            var tail = k
            while tail % 4 != 0 { row8[tail] = 128; tail += 1 }
            let words = UnsafeRawPointer(row8)
            if wide {
                for st in 0..<steps { dstWide[at + st * mr] = Int8Gemm.widen(words.loadUnaligned(fromByteOffset: 4 * st, as: UInt32.self)) }
            } else {
                for st in 0..<steps { dst[at + st * mr] = words.loadUnaligned(fromByteOffset: 4 * st, as: UInt32.self) }
            }
        }
    }

    /// `out[rows, n] = x[rows, k] · Wᵀ + bias` (then `finish` for the epilogue per tile of rows).
    static func product(x: UnsafePointer<Float>, rows: Int, weights w: Int8WeightPanels, bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>,
                        kernel: Int8Gemm.Kernel, threads: Int,
                        prepare: ((Int, Int, UnsafeMutablePointer<Float>) -> Void)?,
                        finish: (Range<Int>, Range<Int>) -> Void) {
        let (mr, nr, k, n, steps) = (Int8Gemm.mr, Int8Gemm.nr, w.k, w.n, w.steps)
        let panels = (rows + mr - 1) / mr
        // Buffers kept between calls (fresh large allocations would cost page faults every call).
        let shared = ScratchPool.shared.take()
        defer { ScratchPool.shared.give(shared) }
        let word = kernel.widensActivations ? 8 : 4
        let a = UnsafeMutableRawPointer(shared.floats(0, panels * steps * mr * word / 4))
        let rowScales = shared.floats(1, panels * mr)
        // 1. Every row quantised and packed (after the prologue), in parallel over blocks of rows.
        let chunk = rowTile / mr
        Parallel.forRanges((panels + chunk - 1) / chunk, threads: threads) { range in
            let worker = ScratchPool.shared.take()
            defer { ScratchPool.shared.give(worker) }
            let row8 = UnsafeMutableRawPointer(worker.floats(2, (k + 67) / 4)).assumingMemoryBound(to: UInt8.self)
            for c in range {
                let r0 = c * rowTile, count = min(rowTile, rows - r0)
                var src = x + r0 * k
                if let prepare {
                    // The rows as the linear reads them (normalised, gathered through a layout).
                    let prepared = worker.floats(4, count * k)
                    prepare(r0, count, prepared)
                    src = UnsafePointer(prepared)
                }
                quantizeRows(src, rows: count, k: k, into: a + c * chunk * steps * mr * word, wide: word == 8, rowScales: rowScales + r0, row8: row8)
            }
        }
        // 2. Tiles of (rows, blocks of columns): at least four per thread when the rows are few.
        let rowTiles = (rows + rowTile - 1) / rowTile
        var blockPanels = w.panels
        while blockPanels > 1 && rowTiles * ((w.panels + blockPanels - 1) / blockPanels) < 4 * threads { blockPanels = (blockPanels + 1) / 2 }
        let colBlocks = (w.panels + blockPanels - 1) / blockPanels
        let aPanels = UnsafeRawPointer(a), scalesOfRows = UnsafePointer(rowScales)
        Tiling.run(rowTiles * colBlocks, threads: threads, setup: { ScratchPool.shared.take() }, cleanup: { ScratchPool.shared.give($0) }) { t, worker in
            let rt = t / colBlocks, cb = t % colBlocks
            let r0 = rt * rowTile, count = min(rowTile, rows - r0)
            let p0 = r0 / mr, tilePanels = (count + mr - 1) / mr
            let tile = UnsafeMutableRawPointer(worker.floats(3, mr * nr)).assumingMemoryBound(to: Int32.self)
            let jps = (cb * blockPanels)..<min(w.panels, (cb + 1) * blockPanels)
            for jp in jps {
                let cols = min(nr, n - jp * nr)
                let b = UnsafePointer(w.words + jp * steps * nr)
                let sw = w.scales + jp * nr, comp = w.compensation + jp * nr
                let sw0 = UnsafeRawPointer(sw).loadUnaligned(as: SIMD16<Float>.self), sw1 = UnsafeRawPointer(sw + 16).loadUnaligned(as: SIMD16<Float>.self)
                let c0 = UnsafeRawPointer(comp).loadUnaligned(as: SIMD16<Int32>.self), c1 = UnsafeRawPointer(comp + 16).loadUnaligned(as: SIMD16<Int32>.self)
                var b0 = SIMD16<Float>(), b1 = SIMD16<Float>()
                if let bias { for j in 0..<cols { if j < 16 { b0[j] = bias[jp * nr + j] } else { b1[j - 16] = bias[jp * nr + j] } } }
                for ip in 0..<tilePanels {
                    kernel.u8s8(steps, aPanels + (p0 + ip) * steps * mr * word, b, tile, nr, false)
                    for r in 0..<min(mr, count - ip * mr) {
                        let row = r0 + ip * mr + r
                        let sx = scalesOfRows[row]
                        let acc = UnsafeRawPointer(tile + r * nr)
                        let v0 = SIMD16<Float>(acc.loadUnaligned(as: SIMD16<Int32>.self) &- c0) * (sw0 * sx) + b0
                        let v1 = SIMD16<Float>(acc.loadUnaligned(fromByteOffset: 64, as: SIMD16<Int32>.self) &- c1) * (sw1 * sx) + b1
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
}
