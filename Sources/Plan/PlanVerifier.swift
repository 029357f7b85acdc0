import Tensors

/// Checks a program against itself before anything of it runs: every size without overflow and
/// inside its section, every weight record consistent with its format, every instruction's operands
/// present, of the ranks, shapes and dtypes its kernel reads, its parameters in range, its result
/// the shape the kernel writes, and no result overlapping an operand except exactly (in place). A
/// plan whose checksums were recomputed after an edit (a tool's bug or a hostile file) is refused
/// here, naming the entry and the instruction, rather than read out of bounds by a kernel: the fast
/// kernels rely on what this proves (`groups` dividing the channels, strides and dilations positive,
/// operands of the ranks they index, layout tables inside their tensors, ...).
public enum PlanVerifier {
    /// The most arena or weight bytes a plan may declare (1 TB): beyond any machine it runs on, and
    /// far from overflow.
    public static let maxBytes = 1 << 40

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let message: String
        public var description: String { message }
    }

    /// Bytes of `count(shape)` elements of `dtype`, or nil on a negative dimension or overflow.
    static func bytes(_ dtype: DType, _ shape: Shape) -> Int? { Checked.bytes(shape.dims, elementSize: dtype.byteSize, limit: maxBytes) }

    /// `tableValues` reads an i32 weight's values, for the layout tables' bounds (nil: not checked).
    public static func verify(_ program: Program, weightSectionBytes: Int, tableValues: ((Int) -> [Int32])? = nil) throws(Failure) {
        func fail(_ m: String) -> Failure { Failure(message: m) }
        // A DiffBIR plan's metadata: typed, every value known.
        do { _ = try program.diffbir() } catch { throw fail(error.description) }
        // Weights.
        for (i, w) in program.weights.enumerated() where i > 0 {
            let what = "weight \(i) (\(w.name))"
            guard let size = bytes(w.dtype, w.shape), size == w.byteCount else {
                throw fail("\(what): \(w.byteCount) bytes recorded for \(w.dtype)\(w.shape)")
            }
            guard w.offset % 64 == 0, Checked.range(offset: w.offset, length: w.byteCount, within: weightSectionBytes) != nil else {
                throw fail("\(what) lies outside the weight section or is misaligned")
            }
            let format = w.format
            guard format == nil || format?.storageDType == w.dtype else {
                throw fail("\(what): format '\(format?.rawValue ?? "")' does not match its dtype \(w.dtype)")
            }
            if format?.isInt8 == true {
                guard let s = w.scale, s > 0, s < program.weights.count, program.weights[s].dtype == .f32,
                      Shape.checkedCount(program.weights[s].shape.dims) == (w.shape.dims.first ?? 1) else {
                    throw fail("\(what): \(format?.rawValue ?? "") without f32 scales of one per row")
                }
            }
            if let format, format.hasBlockCodes {
                let rows = max(1, w.shape.dims.first ?? 1)
                let bytes = Quantization.codeBytes(k: (Shape.checkedCount(w.shape.dims) ?? 0) / rows)
                guard let c = w.blockCodes, c > 0, c < program.weights.count, program.weights[c].dtype == .u8,
                      program.weights[c].shape.dims == [rows, bytes] else {
                    throw fail("\(what): \(format.rawValue) without u8 block codes of shape [\(rows), \(bytes)]")
                }
            }
        }
        // Packed forms: each of an f32 or bf16 weight (int8-channel for the int8 layouts), of the
        // geometry its layout gives that weight's shape, inside a u8 storage record with 64 bytes of
        // slack (the kernels may read one vector past the last panel); at most one per weight, layout
        // and width.
        var packedKeys = Set<[Int]>()
        for (n, p) in program.packedWeights.enumerated() {
            let what = "packed weight \(n) (\(p.layout.rawValue))"
            guard p.weight > 0, p.weight < program.weights.count, p.storage > 0, p.storage < program.weights.count, p.storage != p.weight else {
                throw fail("\(what) names no weight (\(p.weight), storage \(p.storage))")
            }
            let w = program.weights[p.weight], s = program.weights[p.storage]
            if p.layout.isInt8 {
                guard w.format == .int8Channel, w.blockCodes == nil else {
                    throw fail("\(what): weight \(w.name) is \(w.format?.rawValue ?? w.dtype.rawValue), the int8 layouts pack int8-channel weights")
                }
            } else {
                guard w.dtype == .f32 || w.dtype == .bf16 else { throw fail("\(what): weight \(w.name) is \(w.dtype), packed forms are of f32 or bf16 weights") }
            }
            let kernelGroups = p.layout == .rows || p.layout == .rowsBF16 ? p.groups : 1
            guard (1...64).contains(p.width), let g = p.layout.geometry(weight: w.shape.dims, groups: kernelGroups),
                  g.extent == p.extent, g.k == p.k, g.groups == p.groups else {
                throw fail("\(what): extent \(p.extent), k \(p.k), \(p.groups) groups, width \(p.width) do not fit weight \(w.name) \(w.shape)")
            }
            guard s.dtype == .u8, s.shape.dims.count == 1, let bytes = p.panelBytes, let needed = Checked.sum(bytes, 64), s.byteCount >= needed else {
                throw fail("\(what): storage \(s.name) holds \(s.byteCount) bytes, the panels need \(p.panelBytes.map { "\($0 + 64)" } ?? "more")")
            }
            guard packedKeys.insert([p.weight, PanelLayout.allCases.firstIndex(of: p.layout) ?? 0, p.width]).inserted else {
                throw fail("\(what): weight \(w.name) packed twice alike")
            }
        }
        for e in program.entryPoints {
            guard e.arenaBytes >= 0, e.arenaBytes <= maxBytes else { throw fail("entry \(e.name): arena of \(e.arenaBytes) bytes") }
            /// The byte range of an arena slot, checked against the arena.
            func range(_ offset: Int, _ dtype: DType, _ shape: Shape, _ what: String) throws(Failure) -> Range<Int> {
                guard let size = bytes(dtype, shape), let slot = Checked.range(offset: offset, length: size, within: e.arenaBytes) else {
                    throw fail("entry \(e.name): \(what) (\(dtype)\(shape) at \(offset)) lies outside the arena of \(e.arenaBytes) bytes")
                }
                return slot
            }
            var names = Set<String>()
            for b in e.inputs + e.outputs {
                _ = try range(b.offset, b.dtype, b.shape, "binding \(b.name)")
                if e.inputs.contains(where: { $0.name == b.name }), e.outputs.contains(where: { $0.name == b.name }) { continue }
                guard names.insert(b.name).inserted else { throw fail("entry \(e.name): two bindings named \(b.name)") }
            }
            for (k, ins) in e.instructions.enumerated() {
                let at = "entry \(e.name), instruction \(k) (\(ins.kernel.kindName) \(ins.name))"
                var types: [(DType, Shape)] = []
                var ranges: [Range<Int>?] = []
                for (j, o) in ins.operands.enumerated() {
                    switch o {
                    case .arena(let offset, let dtype, let shape):
                        ranges.append(try range(offset, dtype, shape, "\(at): operand \(j)"))
                        types.append((dtype, shape))
                    case .weight(let i):
                        guard i > 0, i < program.weights.count else { throw fail("\(at): operand \(j) names no weight (\(i))") }
                        ranges.append(nil)
                        types.append((program.weights[i].dtype, program.weights[i].shape))
                    }
                }
                var results: [(DType, Shape)] = []
                for (j, o) in ins.results.enumerated() {
                    guard case .arena(let offset, let dtype, let shape) = o else { throw fail("\(at): result \(j) is a weight") }
                    let r = try range(offset, dtype, shape, "\(at): result \(j)")
                    // In place (the same bytes) or apart: never a partial overlap.
                    for (x, rx) in ranges.enumerated() {
                        guard let rx, rx.overlaps(r) else { continue }
                        guard rx == r else { throw fail("\(at): result \(j) partly overlaps operand \(x)") }
                    }
                    results.append((dtype, shape))
                }
                do {
                    try check(ins.kernel, types, results, weights: ins.operands.map { o -> Int? in if case .weight(let i) = o { return i } else { return nil } },
                              tableValues: tableValues)
                } catch {
                    throw fail("\(at): \(error.message)")
                }
            }
        }
    }

    // MARK: kernels

    /// The checks of one instruction's kernel on its operand and result types.
    static func check(_ kernel: Kernel, _ x: [(DType, Shape)], _ r: [(DType, Shape)], weights: [Int?],
                      tableValues: ((Int) -> [Int32])?) throws(Failure) {
        func fail(_ m: String) -> Failure { Failure(message: m) }
        func operands(_ n: ClosedRange<Int>) throws(Failure) {
            guard n.contains(x.count) else { throw fail("\(x.count) operands, the kernel takes \(n.lowerBound)...\(n.upperBound)") }
        }
        func results(_ n: Int) throws(Failure) {
            guard r.count == n else { throw fail("\(r.count) results, the kernel writes \(n)") }
        }
        func index(_ i: Int, _ what: String) throws(Failure) {
            guard i >= 0, i < x.count else { throw fail("\(what) names operand \(i) of \(x.count)") }
        }
        func count(_ s: Shape) -> Int { Shape.checkedCount(s.dims) ?? -1 }
        func float(_ i: Int) throws(Failure) {
            guard x[i].0 == .f32 else { throw fail("operand \(i) is \(x[i].0), the kernel reads f32") }
        }
        func epilogue(_ steps: [EpilogueStep], output: Shape, channelAxis: Int?) throws(Failure) {
            for s in steps {
                switch s {
                case .activation, .scale: break
                case .addResidual(let i):
                    try index(i, "a residual")
                    guard count(x[i].1) == count(output) else { throw fail("residual operand \(i) \(x[i].1) is not the output's size \(output)") }
                case .addChannels(let i):
                    try index(i, "a channel bias")
                    guard let c = channelAxis, output.rank == 4, count(x[i].1) == output.dims[0] * output.dims[c] else {
                        throw fail("channel operand \(i) \(x[i].1) is not one value per image and channel of \(output)")
                    }
                case .scaleBy(let i):
                    try index(i, "a scale")
                    guard count(x[i].1) >= 1 else { throw fail("scale operand \(i) is empty") }
                case .preluChannels(let i):
                    try index(i, "PReLU slopes")
                    guard let c = channelAxis, output.rank == 4, count(x[i].1) == output.dims[c] || count(x[i].1) == 1 else {
                        throw fail("PReLU operand \(i) \(x[i].1) is not one slope per channel of \(output)")
                    }
                }
            }
        }
        /// A layout table pair (i32 row offsets, then column offsets) at operand `i`: every row + column
        /// offset inside a tensor of `limit` elements.
        func offsets(_ i: Int, rows: Int, columns: Int, limit: Int) throws(Failure) {
            try index(i + 1, "layout tables")
            guard x[i].0 == .i32, x[i + 1].0 == .i32, count(x[i].1) == rows, count(x[i + 1].1) == columns,
                  let wr = weights[i], let wc = weights[i + 1] else {
                throw fail("layout tables at operands \(i), \(i + 1) are not constant i32 [\(rows)] and [\(columns)]")
            }
            // (Without a reader of the weights, only the tables' types and sizes are checked.)
            guard let tableValues else { return }
            func extent(_ w: Int) -> (Int, Int) {
                let values = tableValues(w)
                return (Int(values.min() ?? 0), Int(values.max() ?? 0))
            }
            let (r0, r1) = extent(wr), (c0, c1) = extent(wc)
            guard r0 >= 0, c0 >= 0, rows == 0 || columns == 0 || r1 + c1 < limit else {
                throw fail("layout tables reach outside their tensor of \(limit) elements")
            }
        }
        switch kernel {
        case .conv2d(let c):
            try operands(2...16)
            try results(1)
            let (xs, ws, ys) = (x[0].1.dims, x[1].1.dims, r[0].1.dims)
            guard xs.count == 4, ws.count == 4, ys.count == 4 else { throw fail("input \(x[0].1), weight \(x[1].1), output \(r[0].1): rank 4 each") }
            try float(0)
            guard c.strides.count == 2, c.dilations.count == 2, c.pads.count == 4, c.strides.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }),
                  c.dilations.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }), c.pads.allSatisfy({ $0 >= 0 && $0 <= 1 << 16 }) else {
                throw fail("strides \(c.strides), dilations \(c.dilations), pads \(c.pads) out of range")
            }
            guard c.groups > 0, xs[1] % c.groups == 0, ws[0] % c.groups == 0, ws[0] > 0 else {
                throw fail("groups \(c.groups) do not divide the input's \(xs[1]) and the weight's \(ws[0]) channels")
            }
            if c.hasBias {
                try index(2, "the bias")
                guard count(x[2].1) == ys[1], x[2].0 == .f32 else { throw fail("bias \(x[2].1) is not f32 of one value per output channel \(ys[1])") }
            }
            if c.upsample == true {
                // Four 2×2 phase kernels of a 3×3 kernel on the input enlarged 2×.
                guard ws[2] == 2, ws[3] == 2, ws[0] == 4 * ys[1], ws[1] == xs[1], c.groups == 1, c.prologue == nil,
                      ys == [xs[0], ys[1], 2 * xs[2], 2 * xs[3]] else {
                    throw fail("upsampling convolution of \(x[0].1) with phase weights \(x[1].1) cannot give \(r[0].1)")
                }
            } else {
                guard ws[1] * c.groups == xs[1] else { throw fail("weight \(x[1].1) with \(c.groups) groups does not take the input's \(xs[1]) channels") }
                var out = [xs[0], ws[0]]
                for a in 0..<2 {
                    let span = c.dilations[a] * (ws[2 + a] - 1) + 1, padded = xs[2 + a] + c.pads[a] + c.pads[2 + a]
                    guard ws[2 + a] > 0, padded >= span else { throw fail("kernel \(x[1].1) larger than the padded input \(x[0].1)") }
                    out.append((padded - span) / c.strides[a] + 1)
                }
                guard ys == out else { throw fail("output \(r[0].1), the convolution gives \(Shape(out))") }
            }
            if c.winograd == true {
                guard ws[2] == 3, ws[3] == 3, c.strides == [1, 1], c.dilations == [1, 1], c.groups == 1, c.upsample != true,
                      c.winogradTile == nil || c.winogradTile == 2 || c.winogradTile == 4 else {
                    throw fail("Winograd on a convolution it does not apply to")
                }
            }
            if let p = c.prologue {
                try index(p.scaleOperand, "the norm's scale")
                try index(p.biasOperand, "the norm's bias")
                guard p.groups > 0, xs[1] % p.groups == 0, count(x[p.scaleOperand].1) == xs[1], count(x[p.biasOperand].1) == xs[1] else {
                    throw fail("group norm of \(p.groups) groups over \(xs[1]) channels with scale \(x[p.scaleOperand].1), bias \(x[p.biasOperand].1)")
                }
            }
            try epilogue(c.epilogue, output: r[0].1, channelAxis: 1)
        case .convTranspose2d(let c):
            try operands(2...3)
            try results(1)
            let (xs, ws, ys) = (x[0].1.dims, x[1].1.dims, r[0].1.dims)
            guard xs.count == 4, ws.count == 4, ys.count == 4, c.strides.count == 2, c.dilations.count == 2, c.pads.count == 4,
                  c.outputPadding.count == 2 || c.outputPadding.isEmpty, c.strides.allSatisfy({ $0 > 0 }), c.dilations.allSatisfy({ $0 > 0 }),
                  c.groups > 0, ws[0] == xs[1], xs[1] % c.groups == 0, ys[1] == ws[1] * c.groups, ys[0] == xs[0] else {
                throw fail("transposed convolution of \(x[0].1) by \(x[1].1) (groups \(c.groups), strides \(c.strides)) cannot give \(r[0].1)")
            }
            for a in 0..<2 {
                let size = (xs[2 + a] - 1) * c.strides[a] - c.pads[a] - c.pads[2 + a] + c.dilations[a] * (ws[2 + a] - 1) + 1
                    + (c.outputPadding.isEmpty ? 0 : c.outputPadding[a])
                guard ys[2 + a] == size else { throw fail("output \(r[0].1), the transposed convolution gives \(size) along axis \(2 + a)") }
            }
            if c.hasBias { guard count(x[2].1) == ys[1] else { throw fail("bias \(x[2].1) is not one value per output channel") } }
        case .linear(let l):
            try operands(2...16)
            try results(1)
            let ws = x[1].1.dims
            guard ws.count == 2, ws[0] > 0, ws[1] > 0 else { throw fail("weight \(x[1].1) is not [out, in]") }
            let n = l.geglu == true ? ws[0] / 2 : ws[0]
            if l.geglu == true { guard ws[0] % 2 == 0 else { throw fail("GEGLU of an odd number of rows \(ws[0])") } }
            let rows: Int
            if let i = l.inputOffsets {
                try index(i, "input layout")
                rows = count(x[i].1)
                try offsets(i, rows: rows, columns: ws[1], limit: count(x[0].1))
            } else {
                guard let last = x[0].1.dims.last, last == ws[1] else { throw fail("input \(x[0].1) does not end in the weight's \(ws[1]) columns") }
                rows = count(x[0].1) / max(ws[1], 1)
            }
            if let o = l.outputOffsets {
                try index(o, "output layout")
                guard count(x[o].1) == rows else { throw fail("output layout of \(count(x[o].1)) rows for \(rows)") }
                try offsets(o, rows: rows, columns: n, limit: count(r[0].1))
            } else {
                guard count(r[0].1) == rows * n else { throw fail("output \(r[0].1) is not \(rows) × \(n)") }
            }
            if l.hasBias {
                try index(2, "the bias")
                guard count(x[2].1) == ws[0] else { throw fail("bias \(x[2].1) is not one value per weight row") }
            }
            if let p = l.prologue {
                try index(p.scaleOperand, "the norm's scale")
                guard count(x[p.scaleOperand].1) == ws[1] else { throw fail("layer norm scale \(x[p.scaleOperand].1) for rows of \(ws[1])") }
                if let b = p.biasOperand {
                    try index(b, "the norm's bias")
                    guard count(x[b].1) == ws[1] else { throw fail("layer norm bias \(x[b].1) for rows of \(ws[1])") }
                }
            }
            // (Residuals of a linear: the output's size; channel steps are for convolutions.)
            try epilogue(l.epilogue, output: r[0].1, channelAxis: nil)
        case .matmul(let m):
            try operands(2...2)
            try results(1)
            let (a, b, y) = (x[0].1.dims, x[1].1.dims, r[0].1.dims)
            guard a.count >= 2, b.count >= 2, y.count >= 2 else { throw fail("operands \(x[0].1), \(x[1].1) and result \(r[0].1) need rank 2 or more") }
            let (mm, ka) = m.transposeA ? (a[a.count - 1], a[a.count - 2]) : (a[a.count - 2], a[a.count - 1])
            let (kb, nn) = m.transposeB ? (b[b.count - 1], b[b.count - 2]) : (b[b.count - 2], b[b.count - 1])
            guard ka == kb, y[y.count - 2] == mm, y[y.count - 1] == nn else { throw fail("\(x[0].1) × \(x[1].1) cannot give \(r[0].1)") }
            guard let batch = broadcast(Array(a.dropLast(2)), Array(b.dropLast(2))), batch == Array(y.dropLast(2)) else {
                throw fail("batch dimensions of \(x[0].1) and \(x[1].1) do not broadcast to \(r[0].1)")
            }
        case .attention(let a):
            try operands(3...16)
            try results(1)
            guard a.biasCount >= 0, x.count == 3 + a.biasCount else { throw fail("\(x.count) operands for \(a.biasCount) biases") }
            let (q, k, v, y) = (x[0].1.dims, x[1].1.dims, x[2].1.dims, r[0].1.dims)
            guard q.count >= 2, k.count >= 2, v.count >= 2, y.count >= 2 else { throw fail("q, k, v need rank 2 or more") }
            let (d, mKeys) = a.keysTransposed ? (k[k.count - 2], k[k.count - 1]) : (k[k.count - 1], k[k.count - 2])
            guard q.last! == d, v[v.count - 2] == mKeys, y[y.count - 2] == q[q.count - 2], y.last! == v.last! else {
                throw fail("q \(x[0].1), k \(x[1].1), v \(x[2].1) cannot give \(r[0].1)")
            }
            guard let kb = broadcast(Array(q.dropLast(2)), Array(k.dropLast(2))), let batch = broadcast(kb, Array(v.dropLast(2))),
                  batch == Array(y.dropLast(2)) else {
                throw fail("batch dimensions of q, k, v do not broadcast to \(r[0].1)")
            }
            let scores = batch + [q[q.count - 2], mKeys]
            for i in 3..<x.count {
                guard broadcast(scores, x[i].1.dims) == scores else { throw fail("bias \(x[i].1) does not broadcast to the scores \(Shape(scores))") }
            }
        case .groupNorm(let groups, _, _):
            try operands(3...3)
            try results(1)
            guard x[0].1.rank >= 2, groups > 0, x[0].1.dims[1] % groups == 0, count(x[1].1) == x[0].1.dims[1], count(x[2].1) == x[0].1.dims[1],
                  r[0].1 == x[0].1 else {
                throw fail("group norm of \(groups) groups of \(x[0].1) with scale \(x[1].1), bias \(x[2].1) to \(r[0].1)")
            }
        case .layerNorm(let axis, _):
            try operands(2...3)
            try results(1)
            let rank = x[0].1.rank
            guard let ax = normalized(axis, rank) else { throw fail("axis \(axis) of rank \(rank)") }
            let inner = Shape.checkedCount(Array(x[0].1.dims[ax...])) ?? -1
            guard r[0].1 == x[0].1, x[1...].allSatisfy({ count($0.1) == inner || count($0.1) == 1 }) else {
                throw fail("layer norm of \(x[0].1) from axis \(axis) with \(x[1...].map { "\($0.1)" }.joined(separator: ", "))")
            }
        case .batchNorm:
            try operands(5...5)
            try results(1)
            guard x[0].1.rank >= 2, x[1...].allSatisfy({ count($0.1) == x[0].1.dims[1] }), r[0].1 == x[0].1 else {
                throw fail("batch norm of \(x[0].1) with per-channel operands \(x[1...].map { "\($0.1)" }.joined(separator: ", "))")
            }
        case .softmax(let axis, _):
            try operands(1...1)
            try results(1)
            guard normalized(axis, x[0].1.rank) != nil, r[0].1 == x[0].1 else { throw fail("softmax over axis \(axis) of \(x[0].1) to \(r[0].1)") }
        case .elementwise(let e):
            try results(1)
            switch e {
            case .binary: try operands(2...2)
            case .select: try operands(3...3)
            default: try operands(1...1)
            }
            if case .geglu = e {
                guard let last = x[0].1.dims.last, last % 2 == 0, r[0].1.dims == Array(x[0].1.dims.dropLast()) + [last / 2] else {
                    throw fail("GEGLU of \(x[0].1) to \(r[0].1)")
                }
            } else {
                // Every operand broadcasts to the result.
                for (i, t) in x.enumerated() {
                    guard broadcast(t.1.dims, r[0].1.dims) == r[0].1.dims else { throw fail("operand \(i) \(t.1) does not broadcast to \(r[0].1)") }
                }
            }
        case .reduce(_, let axes, _):
            try operands(1...1)
            try results(1)
            guard axes.allSatisfy({ normalized($0, x[0].1.rank) != nil }) else { throw fail("axes \(axes) of rank \(x[0].1.rank)") }
        case .argExtreme(_, let axis, _, _), .cumsum(let axis, _, _):
            try operands(1...1)
            try results(1)
            guard normalized(axis, x[0].1.rank) != nil else { throw fail("axis \(axis) of rank \(x[0].1.rank)") }
        case .einsum(let labels, let output):
            try results(1)
            guard labels.count == x.count, zip(labels, x).allSatisfy({ $0.0.count == $0.1.1.rank }), output.count == r[0].1.rank else {
                throw fail("einsum labels \(labels) → \(output) for operands of ranks \(x.map { $0.1.rank })")
            }
        case .scatterND:
            try operands(3...3)
            try results(1)
            guard r[0].1 == x[0].1 else { throw fail("scatter into \(x[0].1) gives \(r[0].1)") }
        case .copy:
            try operands(1...1)
            try results(1)
            guard count(x[0].1) == count(r[0].1), x[0].0.byteSize == r[0].0.byteSize else { throw fail("copy of \(x[0].1) into \(r[0].1)") }
        case .movement(let m):
            try movement(m, x, r)
        }
    }

    static func movement(_ m: Movement, _ x: [(DType, Shape)], _ r: [(DType, Shape)]) throws(Failure) {
        func fail(_ s: String) -> Failure { Failure(message: s) }
        guard !x.isEmpty, !r.isEmpty else { throw fail("no operand or result") }
        let xs = x[0].1.dims
        for t in r where t.0.byteSize != x[0].0.byteSize { throw fail("result of \(t.0) from an operand of \(x[0].0)") }
        switch m {
        case .transpose(let perm):
            guard perm.count == xs.count, Set(perm) == Set(0..<xs.count), r.count == 1, r[0].1.dims == perm.map({ xs[$0] }) else {
                throw fail("transpose \(perm) of \(x[0].1) to \(r.map { "\($0.1)" })")
            }
        case .concat(let axis):
            guard r.count == 1, let a = normalized(axis, xs.count) else { throw fail("concat along \(axis) of rank \(xs.count)") }
            var total = 0
            for t in x {
                guard t.1.rank == xs.count, zip(t.1.dims, r[0].1.dims).enumerated().allSatisfy({ $0.offset == a || $0.element.0 == $0.element.1 }) else {
                    throw fail("concat part \(t.1) does not fit \(r[0].1)")
                }
                total += t.1.dims[a]
            }
            guard total == r[0].1.dims[a] else { throw fail("concat parts along \(axis) sum to \(total), the result has \(r[0].1.dims[a])") }
        case .split(let axis, let sizes):
            guard let a = normalized(axis, xs.count), sizes.count == r.count, sizes.allSatisfy({ $0 >= 0 }), Checked.sum(sizes) == xs[a] else {
                throw fail("split of \(x[0].1) along \(axis) into \(sizes)")
            }
            for (t, s) in zip(r, sizes) {
                var d = xs
                d[a] = s
                guard t.1.dims == d else { throw fail("split part \(t.1), expected \(Shape(d))") }
            }
        case .slice(let starts, let ends, let steps):
            guard r.count == 1, starts.count == xs.count, ends.count == xs.count, steps.count == xs.count else {
                throw fail("slice of rank \(starts.count) on \(x[0].1)")
            }
            for a in 0..<xs.count {
                let (s, e, st) = (starts[a], ends[a], steps[a])
                guard st != 0 else { throw fail("slice step 0") }
                let n = r[0].1.dims[a]
                guard n >= 0 else { throw fail("negative slice size") }
                // The kernel reads start + i·step for i < n: the first and the last inside the axis.
                let (product, o1) = (n - 1).multipliedReportingOverflow(by: st)
                let (last, o2) = s.addingReportingOverflow(product)
                guard n == 0 || (!o1 && !o2 && s >= 0 && s < xs[a] && last >= 0 && last < xs[a]) else {
                    throw fail("slice from \(s) (end \(e)) step \(st) of an axis of \(xs[a]) cannot give \(n) elements")
                }
            }
        case .pad(_, let pads, _):
            guard r.count == 1, pads.count == 2 * xs.count else { throw fail("pads \(pads) of rank \(xs.count)") }
            for a in 0..<xs.count {
                guard xs[a] + pads[a] + pads[a + xs.count] == r[0].1.dims[a], xs[a] + pads[a] >= 0 else {
                    throw fail("pad \(pads) of \(x[0].1) does not give \(r[0].1)")
                }
            }
        case .gather(let axis):
            guard r.count == 1, x.count == 2, let a = normalized(axis, xs.count), x[1].0 == .i64 || x[1].0 == .i32,
                  r[0].1.dims == Array(xs[..<a]) + x[1].1.dims + Array(xs[(a + 1)...]) else {
                throw fail("gather along \(axis) of \(x[0].1) by \(x[1].1) to \(r[0].1)")
            }
        case .expand:
            guard r.count == 1, broadcast(xs, r[0].1.dims) == r[0].1.dims else { throw fail("expand of \(x[0].1) to \(r[0].1)") }
        case .tile(let repeats):
            guard r.count == 1, repeats.count == xs.count, r[0].1.dims == zip(xs, repeats).map({ $0 * $1 }) else {
                throw fail("tile \(repeats) of \(x[0].1) to \(r[0].1)")
            }
        case .resize:
            guard r.count == 1, r[0].1.rank == xs.count, r[0].1.dims.allSatisfy({ $0 >= 0 }) else { throw fail("resize of \(x[0].1) to \(r[0].1)") }
        case .depthToSpace(let b, _):
            guard r.count == 1, b > 0, xs.count == 4, xs[1] % (b * b) == 0, r[0].1.dims == [xs[0], xs[1] / (b * b), xs[2] * b, xs[3] * b] else {
                throw fail("depth to space by \(b) of \(x[0].1) to \(r[0].1)")
            }
        case .spaceToDepth(let b, _):
            guard r.count == 1, b > 0, xs.count == 4, xs[2] % b == 0, xs[3] % b == 0, r[0].1.dims == [xs[0], xs[1] * b * b, xs[2] / b, xs[3] / b] else {
                throw fail("space to depth by \(b) of \(x[0].1) to \(r[0].1)")
            }
        case .trilu:
            guard r.count == 1, xs.count >= 2, r[0].1 == x[0].1 else { throw fail("trilu of \(x[0].1) to \(r[0].1)") }
        }
    }

    static func normalized(_ axis: Int, _ rank: Int) -> Int? {
        let a = axis < 0 ? axis + rank : axis
        return a >= 0 && a < rank ? a : nil
    }

    /// NumPy broadcasting of two shapes, or nil.
    static func broadcast(_ a: [Int], _ b: [Int]) -> [Int]? {
        let n = max(a.count, b.count)
        var out = [Int](repeating: 1, count: n)
        for i in 0..<n {
            let da = i < n - a.count ? 1 : a[i - (n - a.count)], db = i < n - b.count ? 1 : b[i - (n - b.count)]
            guard da == db || da == 1 || db == 1 else { return nil }
            out[i] = da == 1 ? db : da
        }
        return out
    }
}
