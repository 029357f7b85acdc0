import Foundation
import Plan
import Tensors

/// The linear kernel of plans: `x [rows, K] · Wᵀ` in tiles of rows (or, for few rows, of output
/// features), each tile one single-threaded sgemm with the layer-norm prologue applied to its rows
/// first and the bias and epilogue applied to its outputs after. Tile sizes depend on the shapes only.
public enum FusedLinear {
    public static let rowTile = 256
    public static let columnTile = 256
    /// The most f32 values of quantised weights a linear layer expands once per call rather than once
    /// per tile of rows (32 MB: the denoise step's largest, 2560 × 320 at 4096 rows, is 3.3 MB).
    static let expandOnceLimit = 8 << 20

    /// `packed`: the weights as B panels of `gemm` (columns of Wᵀ), when `gemm` is not OpenBLAS.
    /// `int8`: the weights packed for int8 × int8 products (`--activations int8`), used when
    /// `Int8Linear.kernel` has one for this many rows and `gemm.isa` (else `packed`, the weight-only path).
    public static func run(_ k: LinearKernel, x: View, weight: View, packed quantizedOrPacked: PackedMatrix? = nil, int8: Int8WeightPanels? = nil,
                           operands: [View], out: View, gemm: Gemm = Gemm(.openblas), threads: Int) {
        let (nOut, kk) = (weight.dims[0], weight.dims[1])
        // (Rows read through a layout: as many as its row table has.)
        let rows = k.inputOffsets.map { operands[$0].count } ?? x.count / max(kk, 1)
        // Quantised weights are expanded to f32 as each product packs them: once per tile of rows. With
        // many tiles, expand them once for the call instead (the same values, so the same results).
        var packed = quantizedOrPacked
        var expansion: WorkerScratch?
        defer { if let expansion { ScratchPool.shared.give(expansion) } }
        if let p = quantizedOrPacked, p.element != nil, p.groups == 1, !gemm.usesBLAS, gemm.precision == .f32,
           (rows + rowTile - 1) / rowTile >= 3, int8 == nil || Int8Linear.kernel(rows: rows, isa: gemm.isa) == nil,
           let count = Checked.count([p.panels, p.width, p.k], limit: expandOnceLimit), case .quantized(let q) = p.operand() {
            let scratch = ScratchPool.shared.take()
            expansion = scratch
            // (Its own slot, so that no other buffer of a recycled scratch is reallocated for it; and a
            // vector past the end, as packed panels have.)
            let buffer = scratch.floats(9, count + 16)
            Parallel.forRanges(p.panels, threads: threads) { range in
                q.expand(panels: range, depth: 0..<p.k, width: p.width, into: buffer + range.lowerBound * p.panelStride)
            }
            packed = PackedMatrix(borrowing: buffer, extent: p.extent, k: p.k, width: p.width, groups: 1)
        }
        let epilogue = ResolvedEpilogue(k.epilogue, operands: operands)
        let bias: UnsafePointer<Float>? = k.hasBias ? UnsafePointer(operands[2].floats) : nil
        let lnScale = k.prologue.map { UnsafePointer(operands[$0.scaleOperand].floats) }
        let lnBias = k.prologue?.biasOperand.map { UnsafePointer(operands[$0].floats) }
        let epsilon = k.prologue?.epsilon ?? 0
        func normalize(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
            for r in 0..<count {
                let row = src + r * kk, d = dst + r * kk
                let (mean, rstd) = Normalization.statistics(row, count: kk, epsilon: epsilon)
                Normalization.normalizeRow(row, d, kk, mean: Float(mean), rstd: Float(rstd), scale: lnScale!, bias: lnBias)
            }
        }
        func finish(_ o: UnsafeMutablePointer<Float>, rows r0: Range<Int>, columns c0: Range<Int>) {
            guard bias != nil || !epilogue.isEmpty else { return }
            for r in r0 {
                let i = r * nOut + c0.lowerBound
                epilogue.apply(o + i, count: c0.count, base: i, vectorBias: bias.map { $0 + c0.lowerBound })
            }
        }
        let o = out.floats
        if k.geglu == true, packed != nil, !gemm.usesBLAS, (nOut / 2) % gemm.nr != 0,
           int8 == nil || Int8Linear.kernel(rows: rows, isa: gemm.isa) == nil {
            // Weight panels hold whole groups of `gemm.nr` columns: unless the second half starts a
            // panel, the plain product (bias included) into a buffer, then the combination.
            let h = nOut / 2
            var plain = k
            (plain.geglu, plain.epilogue) = (nil, [])
            let y = UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows * nOut))
            defer { y.deallocate() }
            run(plain, x: x, weight: weight, packed: packed, operands: operands, out: View(pointer: UnsafeMutableRawPointer(y), dtype: .f32, shape: Shape([rows, nOut])),
                gemm: gemm, threads: threads)
            Parallel.forRanges(rows, threads: threads, minimumPerThread: 8) { range in
                for r in range {
                    VectorMath.gegluCombine(y + r * nOut, y + r * nOut + h, biasA: nil, biasG: nil, o + r * h, h)
                    if !epilogue.isEmpty { epilogue.apply(o + r * h, count: h, base: r * h) }
                }
            }
            return
        }
        if k.geglu == true {
            precondition(k.inputOffsets == nil && k.outputOffsets == nil && nOut % 2 == 0, "a GEGLU linear has no layouts and 2h outputs")
            runGEGLU(x: x, weight: weight, rows: rows, k: kk, half: nOut / 2, packed: packed, int8: int8, bias: bias, epilogue: epilogue, out: o,
                     gemm: gemm, threads: threads, normalize: lnScale == nil ? nil : normalize)
            return
        }
        if let int8, k.inputOffsets == nil, k.outputOffsets == nil, let kernel = Int8Linear.kernel(rows: rows, isa: gemm.isa) {
            // The bias is added as the int32 sums are scaled back; the epilogue follows per tile of rows.
            Int8Linear.product(x: x.floats, rows: rows, weights: int8, bias: bias, out: o, kernel: kernel, threads: threads,
                               prepare: lnScale == nil ? nil : { r0, count, dst in normalize(x.floats + r0 * kk, dst, count) },
                               finish: { r0, c0 in
                                   guard !epilogue.isEmpty else { return }
                                   for r in r0 { epilogue.apply(o + r * nOut + c0.lowerBound, count: c0.count, base: r * nOut + c0.lowerBound) }
                               })
            return
        }
        /// `out[rows, c0..<c0+n] = a[rows, K] · W[c0..<c0+n, K]ᵀ`
        func product(_ a: UnsafePointer<Float>, rows: Int, columns c0: Int, _ n: Int, _ out: UnsafeMutablePointer<Float>, _ scratch: GemmScratch) {
            if let packed, !gemm.usesBLAS {
                // (bf16: packed.k steps over pairs of the kk inputs.)
                gemm.run(m: rows, n: n, k: packed.k, depth: kk, a: .matrix(a, ld: kk, transposed: false),
                         b: packed.operand(first: c0),
                         c: out, ldc: nOut, accumulate: false, scratch: scratch)
            } else {
                precondition(gemm.precision == .f32, "bf16 linear layers take packed weights")
                gemm.sgemm(transposeB: true, m: rows, n: n, k: kk, a: a, lda: kk, b: weight.floats + c0 * kk, ldb: kk, c: out, ldc: nOut, scratch: scratch)
            }
        }
        if k.inputOffsets != nil || k.outputOffsets != nil {
            runWithLayouts(k, x: x, weight: weight, packed: packed, rows: rows, k: kk, n: nOut, int8: int8, operands: operands, out: o, gemm: gemm, threads: threads,
                           normalize: lnScale == nil ? nil : normalize, product: product)
            return
        }
        if rows >= 2 * rowTile || nOut < 2 * columnTile {
            // Tiles of rows.
            let tile = rows >= 2 * rowTile ? rowTile : max(1, (rows + 1) / 2)
            let tiles = (rows + tile - 1) / tile
            Tiling.run(tiles, threads: threads, setup: { () -> (UnsafeMutablePointer<Float>, GemmScratch, WorkerScratch) in
                let worker = ScratchPool.shared.take()
                return (worker.floats(0, lnScale == nil ? 1 : tile * kk), worker.gemm, worker)
            }, cleanup: { ScratchPool.shared.give($0.2) }) { t, scratch in
                let r0 = t * tile, n = min(tile, rows - r0)
                var a = UnsafePointer(x.floats + r0 * kk)
                if lnScale != nil {
                    normalize(a, scratch.0, n)
                    a = UnsafePointer(scratch.0)
                }
                product(a, rows: n, columns: 0, nOut, o + r0 * nOut, scratch.1)
                finish(o, rows: r0..<(r0 + n), columns: 0..<nOut)
            }
        } else {
            // Few rows: tiles of output features (each thread reads only its part of the weights).
            let normalized = lnScale == nil ? nil : UnsafeMutablePointer<Float>.allocate(capacity: rows * kk)
            defer { normalized?.deallocate() }
            if let normalized {
                Parallel.forRanges(rows, threads: threads, minimumPerThread: 8) { r in normalize(x.floats + r.lowerBound * kk, normalized + r.lowerBound * kk, r.count) }
            }
            columnTiles(UnsafePointer(normalized ?? x.floats), rows: rows, k: kk, n: nOut, weight: weight, packed: packed, out: o, gemm: gemm,
                        threads: threads) { columns in finish(o, rows: 0..<rows, columns: columns) }
        }
    }

    /// `out[rows, n] = a[rows, K] · Wᵀ` for few rows: tiles of whole B panels of output features, up
    /// to `columnTile` columns, as many as a multiple of the threads (1280 columns in 5 tiles of 256
    /// kept one thread idle a fifth of the time), each thread reading only its part of the weights;
    /// with our kernels the rows are packed once (A panels, in parallel) for all the tiles.
    /// `finish(columns)` runs after each tile's product, on its thread.
    static func columnTiles(_ a: UnsafePointer<Float>, rows: Int, k kk: Int, n nOut: Int, weight: View, packed: PackedMatrix?,
                            out o: UnsafeMutablePointer<Float>, gemm: Gemm, threads: Int, finish: (Range<Int>) -> Void) {
        let own = packed != nil && !gemm.usesBLAS
        let quantum = own ? gemm.nr : 16
        let units = (nOut + quantum - 1) / quantum, perTile = max(1, columnTile / quantum), t = max(1, threads)
        let tiles = min(units, t * ((units + t * perTile - 1) / (t * perTile)))
        func columns(_ i: Int) -> Range<Int> { (i * units / tiles * quantum)..<min(nOut, (i + 1) * units / tiles * quantum) }
        if let packed, own {
            let (mr, steps) = (gemm.mr, packed.k)
            let panels = (rows + mr - 1) / mr
            let shared = ScratchPool.shared.take()
            defer { ScratchPool.shared.give(shared) }
            let packedA = shared.floats(7, panels * mr * steps)
            Parallel.forRanges(panels, threads: threads) { range in
                let r = (range.lowerBound * mr)..<min(rows, range.upperBound * mr)
                if gemm.precision == .bf16 {
                    Gemm.packA16(a, lda: kk, transposed: false, rows: r, steps: 0..<steps, depth: kk, width: mr, into: packedA + range.lowerBound * mr * steps,
                                     isa: gemm.isa)
                } else {
                    Gemm.packA(a, lda: kk, transposed: false, rows: r, depth: 0..<kk, width: mr, into: packedA + range.lowerBound * mr * steps)
                }
            }
            let aPanels = UnsafePointer(packedA)
            Tiling.run(tiles, threads: threads, setup: { ScratchPool.shared.take() }, cleanup: { ScratchPool.shared.give($0) }) { i, worker in
                let c = columns(i)
                gemm.run(m: rows, n: c.count, k: steps, a: .panels(aPanels, panelStride: steps * mr), b: packed.operand(first: c.lowerBound),
                         c: o + c.lowerBound, ldc: nOut, accumulate: false, scratch: worker.gemm)
                finish(c)
            }
            return
        }
        precondition(gemm.precision == .f32, "bf16 linear layers take packed weights")
        Tiling.run(tiles, threads: threads, setup: { ScratchPool.shared.take() }, cleanup: { ScratchPool.shared.give($0) }) { i, worker in
            let c = columns(i)
            gemm.sgemm(transposeB: true, m: rows, n: c.count, k: kk, a: a, lda: kk, b: weight.floats + c.lowerBound * kk, ldb: kk,
                       c: o + c.lowerBound, ldc: nOut, scratch: worker.gemm)
            finish(c)
        }
    }
}

extension FusedLinear {
    /// The stride s when a row and column offset table pair is a channels-first transpose (row i at
    /// offset i, column j at j·s, s the number of rows), which is moved in 16 × 16 blocks.
    static func transposeStride(_ rows: View, _ columns: View) -> Int? {
        let (n, k) = (rows.count, columns.count)
        guard n >= 16, k >= 16 else { return nil }
        let r = rows.pointer.assumingMemoryBound(to: Int32.self), c = columns.pointer.assumingMemoryBound(to: Int32.self)
        for i in 0..<n where Int(r[i]) != i { return nil }
        for j in 0..<k where Int(c[j]) != j * n { return nil }
        return n
    }

    /// `dst[j·ldd + i] = src[i·lds + j]` for i < rows, j < columns: 16 × 16 blocks with the AVX-512
    /// kernel set, the edges (and every value with another) one at a time.
    static func transposeBlock(_ src: UnsafePointer<Float>, _ lds: Int, rows: Int, columns: Int, _ dst: UnsafeMutablePointer<Float>, _ ldd: Int,
                               isa: ISA) {
        var i0 = 0, j0 = 0
        if isa == .avx512 {
            let (rb, cb) = (rows / 16 * 16, columns / 16 * 16)
            for i in stride(from: 0, to: rb, by: 16) {
                for j in stride(from: 0, to: cb, by: 16) { Gemm.transpose16x16(src + i * lds + j, lds, dst + j * ldd + i, ldd) }
            }
            // The right and bottom edges.
            for i in 0..<rb { for j in cb..<columns { dst[j * ldd + i] = src[i * lds + j] } }
            (i0, j0) = (rb, 0)
        }
        for i in i0..<rows { for j in j0..<columns { dst[j * ldd + i] = src[i * lds + j] } }
    }

    /// Contiguous runs of a column offset table: (first column, its offset, length).
    struct Run { var column: Int; var offset: Int; var length: Int }

    static func runs(_ table: View) -> [Run] {
        let c = table.pointer.assumingMemoryBound(to: Int32.self)
        var result: [Run] = []
        for j in 0..<table.count {
            if let last = result.last, last.offset + last.length == Int(c[j]) { result[result.count - 1].length += 1 }
            else { result.append(Run(column: j, offset: Int(c[j]), length: 1)) }
        }
        return result
    }

    /// A linear whose input rows are gathered through offset tables and/or whose results are
    /// scattered through them (`LinearKernel.inputOffsets`, `.outputOffsets`): tiles of rows, each
    /// gathered (runs of columns copied) and normalised into a buffer, multiplied into a buffer,
    /// bias added, scattered run by run, and the epilogue applied at the destination (each run's
    /// elements are consecutive there, so residuals are read at the right index).
    static func runWithLayouts(_ k: LinearKernel, x: View, weight: View, packed: PackedMatrix?, rows: Int, k kk: Int, n nOut: Int,
                               int8: Int8WeightPanels?, operands: [View],
                               out o: UnsafeMutablePointer<Float>, gemm: Gemm, threads: Int,
                               normalize: ((UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void)?,
                               product: (UnsafePointer<Float>, Int, Int, Int, UnsafeMutablePointer<Float>, GemmScratch) -> Void) {
        let epilogue = ResolvedEpilogue(k.epilogue, operands: operands)
        let plain = ResolvedEpilogue([], operands: operands)
        let bias: UnsafePointer<Float>? = k.hasBias ? UnsafePointer(operands[2].floats) : nil
        let inRows = k.inputOffsets.map { UnsafePointer(operands[$0].pointer.assumingMemoryBound(to: Int32.self)) }
        let inRuns = k.inputOffsets.map { runs(operands[$0 + 1]) } ?? []
        let outRows = k.outputOffsets.map { UnsafePointer(operands[$0].pointer.assumingMemoryBound(to: Int32.self)) }
        let outRuns = k.outputOffsets.map { runs(operands[$0 + 1]) } ?? []
        let src = UnsafePointer(x.floats)
        let inStride = k.inputOffsets.flatMap { transposeStride(operands[$0], operands[$0 + 1]) }
        let outStride = k.outputOffsets.flatMap { transposeStride(operands[$0], operands[$0 + 1]) }
        /// Rows r0..<r0+count of the matrix the linear multiplies, into `dst` (contiguous).
        func fetch(_ r0: Int, _ count: Int, _ dst: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
            guard let inRows else {
                if let normalize { normalize(src + r0 * kk, dst, count); return UnsafePointer(dst) }
                return src + r0 * kk
            }
            if let s = inStride {
                // Channels-first input: the block [kk, count] at column r0 transposed.
                transposeBlock(src + r0, s, rows: kk, columns: count, dst, kk, isa: gemm.isa)
                if let normalize { normalize(dst, dst, count) }
                return UnsafePointer(dst)
            }
            for r in 0..<count {
                let from = src + Int(inRows[r0 + r]), to = dst + r * kk
                for run in inRuns { (to + run.column).update(from: from + run.offset, count: run.length) }
            }
            if let normalize { normalize(dst, dst, count) }
            return UnsafePointer(dst)
        }
        /// Results of rows r0..<r0+count (contiguous in `tile`, bias not yet added) to the output.
        func store(_ r0: Int, _ count: Int, _ tile: UnsafeMutablePointer<Float>) {
            if let s = outStride {
                // Channels-first output: the tile transposed into a staging block [nOut, count], then
                // each channel's run copied to columns r0..<r0+count of the [nOut, s] result with its
                // bias, and the epilogue along it. (Transposed straight into the result, each 16 × 16
                // block wrote 16 lines s floats apart, one cache set: 40 % of a 4096-row layer's time.)
                let staging = ScratchPool.shared.take()
                defer { ScratchPool.shared.give(staging) }
                let t = staging.floats(0, nOut * count)
                transposeBlock(tile, nOut, rows: count, columns: nOut, t, count, isa: gemm.isa)
                for j in 0..<nOut {
                    let d = o + j * s + r0, from = t + j * count
                    if let bias { let b = bias[j]; for i in 0..<count { d[i] = from[i] + b } } else { d.update(from: from, count: count) }
                    if !epilogue.isEmpty { epilogue.apply(d, count: count, base: j * s + r0) }
                }
                return
            }
            for r in 0..<count {
                let row = tile + r * nOut
                guard let outRows else {
                    let i = (r0 + r) * nOut
                    epilogue.apply(row, count: nOut, base: i, vectorBias: bias)
                    continue
                }
                if bias != nil { plain.apply(row, count: nOut, base: 0, vectorBias: bias) }
                let base = Int(outRows[r0 + r])
                for run in outRuns {
                    let d = base + run.offset
                    (o + d).update(from: row + run.column, count: run.length)
                    if !epilogue.isEmpty { epilogue.apply(o + d, count: run.length, base: d) }
                }
            }
        }
        let tile = min(FusedLinear.rowTile, max(1, (rows + 1) / 2))
        let tiles = (rows + tile - 1) / tile
        if let int8, let kernel = Int8Linear.kernel(rows: rows, isa: gemm.isa) {
            // int8 × int8, chunks of rows (a few tiles a thread, so that a scattered result needs only
            // a chunk's temporary): rows quantised from the gathered (and normalised) buffer, results
            // stored tile by tile.
            let shared = ScratchPool.shared.take()
            defer { ScratchPool.shared.give(shared) }
            // (Chunks of up to 2 M results, 8 MB: each chunk is three parallel passes.)
            let chunk = max(Int8Linear.rowTile * 4 * threads, 2 * tile, (2 << 20) / max(nOut, 1)) / tile * tile
            let temporary = outRows == nil ? nil : shared.floats(5, min(rows, chunk) * nOut)
            var c0 = 0
            while c0 < rows {
                let count = min(chunk, rows - c0), first = c0
                let results = temporary ?? o + c0 * nOut
                // When each tile of the product holds whole rows, they are stored as it finishes them
                // (still in cache); otherwise in a pass of their own.
                let storedByTiles = Int8Linear.columnBlockPanels(rows: count, weights: int8, threads: threads) == int8.panels
                Int8Linear.product(x: src + c0 * kk, rows: count, weights: int8, bias: nil, out: results, kernel: kernel, threads: threads,
                                   prepare: inRows == nil && normalize == nil ? nil : { r0, n, dst in
                                       let p = fetch(first + r0, n, dst)
                                       if p != UnsafePointer(dst) { dst.update(from: p, count: n * kk) }
                                   },
                                   finish: { rowRange, _ in
                                       guard storedByTiles else { return }
                                       let r0 = rowRange.lowerBound, n = rowRange.count
                                       if outRows == nil {
                                           for r in (first + r0)..<(first + r0 + n) { epilogue.apply(o + r * nOut, count: nOut, base: r * nOut, vectorBias: bias) }
                                       } else {
                                           store(first + r0, n, results + r0 * nOut)
                                       }
                                   })
                c0 += count
                if storedByTiles { continue }
                let chunkTiles = (count + tile - 1) / tile
                Parallel.forRanges(chunkTiles, threads: threads) { range in
                    for t in range {
                        let r0 = t * tile, n = min(tile, count - r0)
                        if outRows == nil {
                            for r in (first + r0)..<(first + r0 + n) { epilogue.apply(o + r * nOut, count: nOut, base: r * nOut, vectorBias: bias) }
                        } else {
                            store(first + r0, n, results + r0 * nOut)
                        }
                    }
                }
            }
            return
        }
        if rows < 2 * FusedLinear.rowTile && nOut >= 2 * FusedLinear.columnTile {
            // Few rows: gathered (and normalised) in parallel, then tiles of output features as the
            // plain layer runs them, then stored.
            let shared = ScratchPool.shared.take()
            defer { ScratchPool.shared.give(shared) }
            let gathered = shared.floats(5, rows * kk)
            var a = src
            if inRows != nil || normalize != nil {
                Parallel.forRanges(rows, threads: threads, minimumPerThread: 8) { r in
                    let p = fetch(r.lowerBound, r.count, gathered + r.lowerBound * kk)
                    if p != UnsafePointer(gathered + r.lowerBound * kk) { (gathered + r.lowerBound * kk).update(from: p, count: r.count * kk) }
                }
                a = UnsafePointer(gathered)
            }
            let results = outRows == nil ? o : shared.floats(6, rows * nOut)
            FusedLinear.columnTiles(a, rows: rows, k: kk, n: nOut, weight: weight, packed: packed, out: results, gemm: gemm, threads: threads) { _ in }
            Parallel.forRanges(tiles, threads: threads) { range in
                for t in range { store(t * tile, min(tile, rows - t * tile), results + t * tile * nOut) }
            }
            return
        }
        Tiling.run(tiles, threads: threads, setup: { () -> WorkerScratch in ScratchPool.shared.take() },
                   cleanup: { ScratchPool.shared.give($0) }) { t, worker in
            let r0 = t * tile, count = min(tile, rows - r0)
            let a = fetch(r0, count, worker.floats(0, count * kk))
            let results = outRows == nil ? o + r0 * nOut : worker.floats(1, count * nOut)
            product(a, count, 0, nOut, results, worker.gemm)
            store(r0, count, results)
        }
    }
}

extension FusedLinear {
    /// Columns of the output a GEGLU tile combines (and of each half of the product it computes).
    static let gegluColumns = 128

    /// `LinearKernel.geglu`: y = x·Wᵀ + b has 2h columns, the output h: `out[r, j] = y[r, j] ·
    /// gelu(y[r, h + j])`, then the epilogue. The rows are normalised (layer-norm prologue) and packed
    /// once, in parallel; then tiles of (up to 256 rows) × (128 output columns) each multiply both
    /// halves' columns into a scratch tile (in L2) and combine it there into the output, so the 2h-wide
    /// product never goes to memory. The sums are those of the plain linear layer, and the combination
    /// the GEGLU kernel's operations: the result is the unfused one's, bit for bit. int8 × int8: the
    /// product in blocks of rows into a scratch block, then the same combination.
    static func runGEGLU(x: View, weight: View, rows: Int, k kk: Int, half h: Int, packed: PackedMatrix?, int8: Int8WeightPanels?,
                         bias: UnsafePointer<Float>?, epilogue: ResolvedEpilogue, out o: UnsafeMutablePointer<Float>, gemm: Gemm, threads: Int,
                         normalize: ((UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void)?) {
        guard rows > 0, h > 0 else { return }
        /// out[r, c0 ..< c0 + n] from the halves' columns in `s` (row r at s + r·ld: n of the first
        /// half, then n of the second), `count` rows from row r0.
        func combine(_ s: UnsafeMutablePointer<Float>, ld: Int, rows r0: Int, _ count: Int, columns c0: Int, _ n: Int) {
            for r in 0..<count {
                let a = s + r * ld, g = a + n
                let d = o + (r0 + r) * h + c0
                VectorMath.gegluCombine(a, g, biasA: bias.map { $0 + c0 }, biasG: bias.map { $0 + h + c0 }, d, n)
                if !epilogue.isEmpty { epilogue.apply(d, count: n, base: (r0 + r) * h + c0) }
            }
        }
        if let int8, let kernel = Int8Linear.kernel(rows: rows, isa: gemm.isa), h % Int8Gemm.nr == 0 {
            // Both halves' products kept within each tile (`Int8Linear.productGEGLU`).
            let xb = x.floats
            Int8Linear.productGEGLU(x: xb, rows: rows, weights: int8, half: h, bias: bias, out: o, kernel: kernel, threads: threads,
                                    prepare: normalize.map { nz in { p0, c, dst in nz(xb + p0 * kk, dst, c) } },
                                    finish: { rowRange, columns in
                                        guard !epilogue.isEmpty else { return }
                                        for r in rowRange { epilogue.apply(o + r * h + columns.lowerBound, count: columns.count, base: r * h + columns.lowerBound) }
                                    })
            return
        }
        if let int8, let kernel = Int8Linear.kernel(rows: rows, isa: gemm.isa) {
            // Blocks of rows of up to 2 M products (8 MB; at least 256 rows).
            let block = min(rows, max(256, (2 << 20) / (2 * h)))
            let shared = ScratchPool.shared.take()
            defer { ScratchPool.shared.give(shared) }
            let y = shared.floats(2, block * 2 * h)
            var r0 = 0
            while r0 < rows {
                let count = min(block, rows - r0), first = r0
                let xb = x.floats + r0 * kk
                func combineRows(_ range: Range<Int>) {
                    for r in range {
                        let row = y + r * 2 * h
                        // (Second half in place after the first: the layout `combine` reads, one row at a time.)
                        let g = row + h
                        VectorMath.geluInPlace(g, h)
                        let d = o + (first + r) * h
                        for j in 0..<h { d[j] = g[j] * row[j] }
                        if !epilogue.isEmpty { epilogue.apply(d, count: h, base: (first + r) * h) }
                    }
                }
                // When each tile of the product holds whole rows, they are combined as it finishes
                // them (still in cache); otherwise in a pass of their own.
                let combinedByTiles = Int8Linear.columnBlockPanels(rows: count, weights: int8, threads: threads) == int8.panels
                // (The bias is added as the int32 sums are scaled back.)
                Int8Linear.product(x: xb, rows: count, weights: int8, bias: bias, out: y, kernel: kernel, threads: threads,
                                   prepare: normalize.map { nz in { p0, c, dst in nz(xb + p0 * kk, dst, c) } },
                                   finish: { range, _ in if combinedByTiles { combineRows(range) } })
                if !combinedByTiles {
                    Parallel.forRanges(count, threads: threads, minimumPerThread: 8) { combineRows($0) }
                }
                r0 += count
            }
            return
        }
        // The rows, normalised, packed once as A panels (our kernels) or as f32 rows (OpenBLAS).
        let shared = ScratchPool.shared.take()
        defer { ScratchPool.shared.give(shared) }
        let own = packed != nil && !gemm.usesBLAS
        let (mr, steps) = (gemm.mr, packed?.k ?? kk)
        // Tiles of whole A panels (each tile's rows start a panel), as even as panels allow: 1024
        // rows in tiles of 252 left one thread 1.6 times the other's rows.
        let tileRows = rows <= rowTile ? rows : ((rows + mr - 1) / mr + (rows + rowTile - 1) / rowTile - 1) / ((rows + rowTile - 1) / rowTile) * mr
        let rowTiles = (rows + tileRows - 1) / tileRows
        let cb = gegluColumns, columnBlocks = (h + cb - 1) / cb
        let panels = (rows + mr - 1) / mr
        var input = UnsafePointer(x.floats)
        var aPanels: UnsafeMutablePointer<Float>? = nil
        if own {
            let dst = shared.floats(0, panels * mr * steps)
            aPanels = dst
            Tiling.run((panels + 7) / 8, threads: threads, setup: { ScratchPool.shared.take() }, cleanup: { ScratchPool.shared.give($0) }) { chunk, worker in
                let p0 = chunk * 8, p1 = min(panels, p0 + 8)
                let r = (p0 * mr)..<min(rows, p1 * mr)
                var src = UnsafePointer(x.floats + r.lowerBound * kk)
                if let normalize {
                    let buffer = worker.floats(0, r.count * kk)
                    normalize(src, buffer, r.count)
                    src = UnsafePointer(buffer)
                }
                let local = 0..<r.count, into = dst + p0 * mr * steps
                if gemm.precision == .bf16 {
                    Gemm.packA16(src, lda: kk, transposed: false, rows: local, steps: 0..<steps, depth: kk, width: mr, into: into, isa: gemm.isa)
                } else {
                    Gemm.packA(src, lda: kk, transposed: false, rows: local, depth: 0..<kk, width: mr, into: into)
                }
            }
        } else if let normalize {
            let buffer = shared.floats(0, rows * kk)
            Parallel.forRanges(rows, threads: threads, minimumPerThread: 8) { r in normalize(x.floats + r.lowerBound * kk, buffer + r.lowerBound * kk, r.count) }
            input = UnsafePointer(buffer)
        }
        let (a, source) = (aPanels, input)
        Tiling.run(rowTiles * columnBlocks, threads: threads, setup: { ScratchPool.shared.take() }, cleanup: { ScratchPool.shared.give($0) }) { t, worker in
            let r0 = (t / columnBlocks) * tileRows, count = min(tileRows, rows - r0)
            let c0 = (t % columnBlocks) * cb, n = min(cb, h - c0)
            let s = worker.floats(1, tileRows * 2 * cb)
            for (part, first) in [(0, c0), (1, h + c0)] {
                if let a, let packed {
                    gemm.run(m: count, n: n, k: steps, a: .panels(a + (r0 / mr) * mr * steps, panelStride: steps * mr),
                             b: packed.operand(first: first), c: s + part * n, ldc: 2 * n, accumulate: false, scratch: worker.gemm)
                } else {
                    precondition(gemm.precision == .f32, "bf16 linear layers take packed weights")
                    gemm.sgemm(transposeB: true, m: count, n: n, k: kk, a: source + r0 * kk, lda: kk, b: weight.floats + first * kk, ldb: kk,
                               c: s + part * n, ldc: 2 * n, scratch: worker.gemm)
                }
            }
            combine(s, ld: 2 * n, rows: r0, count, columns: c0, n)
        }
    }
}
