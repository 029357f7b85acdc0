import IR
import Plan
import ReferenceKernels
import Tensors

/// Turns optimised IR graphs into a plan program: instructions in schedule order, weights and
/// constants in one section (shared across entry points by key), activations in one arena per entry
/// point laid out by `MemoryPlanner`. Reshapes emit nothing: their result is the same bytes.
public struct Lowering {
    public struct EntryReport: Sendable {
        public var name: String
        public var instructions: Int
        public var kernels: [String: Int]
        public var flops: Double
        public var arenaBytes: Int
        /// The sum of every activation buffer (no reuse).
        public var naiveBytes: Int
        public var largestTensorBytes: Int
        public var inPlace: Int
    }

    public private(set) var weights: [WeightRecord] = [WeightRecord(name: "", dtype: .u8, shape: [0], offset: 0, byteCount: 0, format: nil)]
    public private(set) var weightData: [Tensor?] = [nil]
    private var weightIndex: [String: Int] = [:]
    private var sectionEnd = 0
    public private(set) var entries: [EntryPoint] = []
    public private(set) var reports: [EntryReport] = []

    public init() {}

    mutating func weightOperand(_ v: Value) -> Operand {
        let t = v.constant!
        // Weights are shared by checkpoint key; constants by their storage.
        let key = v.weightKey.map { "w:" + $0 } ?? "c:\(ObjectIdentifier(t.storage).hashValue):\(t.shape):\(t.dtype)"
        if let i = weightIndex[key] { return .weight(i) }
        let offset = (sectionEnd + 63) / 64 * 64
        weights.append(WeightRecord(name: v.name, dtype: t.dtype, shape: t.shape, offset: offset, byteCount: t.byteCount, format: WeightFormat(rawValue: t.dtype.rawValue)))
        weightData.append(t)
        sectionEnd = offset + t.byteCount
        weightIndex[key] = weights.count - 1
        return .weight(weights.count - 1)
    }

    /// Marks 3×3 stride-1 ungrouped convolutions with at least `minimumChannels` input and output
    /// channels and `minimumPlane` output pixels (`minimumPlaneBF16` for bf16 weights, when given)
    /// to run as Winograd F(2,3) (the `winograd` pass): on smaller images the transforms cost more
    /// than the multiplies saved. Quantised weights (int8, int8 blocks, f16) are marked too, with
    /// f32's threshold, unless `int8Activations` (their int8 × int8 kernels do not use it). Returns how many.
    @discardableResult
    /// f32 weights on outputs of at least `f32Tile4Plane` pixels run F(4,3) (`winogradTile` 4) instead
    /// (quantised ones too, from that size),
    /// and from `f32Tile4SmallPlane` pixels when their 36 transformed kernels take at most
    /// `f32Tile4SmallBytes` (F(4,3) streams them once a band: on small images with large kernels,
    /// e.g. 640 channels at 32×32, that costs more than F(2,3) saves).
    public mutating func markWinograd(minimumChannels: Int, minimumPlane: Int, minimumPlaneBF16: Int? = nil, minimumPlaneQuantized: Int? = nil,
                                      int8Activations: Bool = false, f32Tile4Plane: Int? = nil, f32Tile4SmallPlane: Int? = nil,
                                      f32Tile4SmallBytes: Int = 16 << 20) -> Int {
        var count = 0
        for e in entries.indices {
            for i in entries[e].instructions.indices {
                guard case .conv2d(var c) = entries[e].instructions[i].kernel, c.upsample != true, entries[e].instructions[i].operands.count > 1,
                      case .weight(let wi) = entries[e].instructions[i].operands[1],
                      weights[wi].dtype == .f32 || weights[wi].dtype == .bf16
                        || (weights[wi].dtype == .i8 && !int8Activations) || weights[wi].dtype == .f16 else { continue }
                let dims = weights[wi].shape.dims
                guard dims.count == 4, dims[2] == 3, dims[3] == 3, c.strides == [1, 1], c.dilations == [1, 1], c.groups == 1,
                      c.pads.allSatisfy({ $0 <= 2 }), dims[0] >= minimumChannels, dims[1] >= minimumChannels,
                      case .arena(_, _, let outShape) = entries[e].instructions[i].results[0], outShape.dims.count == 4,
                      outShape.dims[2] * outShape.dims[3] >= (weights[wi].dtype == .bf16 ? minimumPlaneBF16 ?? minimumPlane
                                                              : weights[wi].dtype == .f32 ? minimumPlane : minimumPlaneQuantized ?? minimumPlane)
                else { continue }
                c.winograd = true
                if weights[wi].dtype == .f32, let t4 = f32Tile4Plane {
                    let plane = outShape.dims[2] * outShape.dims[3]
                    if plane >= t4 || (f32Tile4SmallPlane.map { plane >= $0 } == true && 36 * dims[0] * dims[1] * 4 <= f32Tile4SmallBytes) {
                        c.winogradTile = 4
                    }
                } else if weights[wi].dtype == .i8 || weights[wi].dtype == .f16, let t4 = f32Tile4Plane,
                          outShape.dims[2] * outShape.dims[3] >= t4, 36 * dims[0] * dims[1] * 4 <= Conv2DKernel.quantizedWinograd43Bytes {
                    // Quantised weights: F(4,3) from the same size, their transformed kernels computed
                    // once a call into scratch (at most `Conv2DKernel.quantizedWinograd43Bytes`).
                    c.winogradTile = 4
                }
                entries[e].instructions[i].kernel = .conv2d(c)
                count += 1
            }
        }
        return count
    }

    /// What quantisation did to one weight.
    public struct QuantizedRecord: Sendable {
        public var name: String
        public var shape: Shape
        public var format: WeightFormat
        /// Why this format: "default", "rule PATTERN=FORMAT", "model keeps PATTERN".
        public var reason: String
        public var f32Bytes: Int
        public var storedBytes: Int
        /// ‖deq(w) − w‖₂ / ‖w‖₂, max |deq(w) − w| and the SNR in dB (∞ when exact).
        public var relativeL2: Double
        public var maxAbs: Double
        public var snrDB: Double
    }

    /// Stores the weights of convolutions and linear layers (their operand 1) in the formats `policy`
    /// gives them (int8 weights get their f32 scales, and the block formats their u8 codes, as separate weights); returns one
    /// record per such weight, in weight order. `parallel` runs `body(i)` for 0..<n (quantisation and
    /// its error measurement are per weight).
    /// `keepEnds`: entry points (graphs without a model definition, such as ONNX imports) whose first
    /// and last convolution or linear layer stay f32 unless a rule names them.
    public mutating func quantizeGemmWeights(_ policy: QuantizationPolicy, keepEnds: Set<String> = [], overrides: [String: QuantizedWeight] = [:],
                                             parallel: (Int, (Int) -> Void) -> Void = { n, body in for i in 0..<n { body(i) } }) -> [QuantizedRecord] {
        var chosen = Set<Int>(), ends = Set<Int>()
        for e in entries {
            var gemms: [Int] = []
            for ins in e.instructions {
                switch ins.kernel {
                case .conv2d, .linear:
                    if ins.operands.count > 1, case .weight(let i) = ins.operands[1], weights[i].dtype == .f32 { chosen.insert(i); gemms.append(i) }
                default: break
                }
            }
            if keepEnds.contains(e.name), let first = gemms.first, let last = gemms.last { ends.formUnion([first, last]) }
        }
        let order = chosen.sorted()
        let plan = order.map { i -> (WeightFormat, String) in
            let (format, reason) = policy.format(of: weights[i].name)
            if ends.contains(i) && !reason.hasPrefix("rule") { return (.f32, "first or last layer of its graph") }
            return (format, reason)
        }
        final class Box: @unchecked Sendable { var items: [(QuantizedWeight, QuantizedRecord)?] ; init(_ n: Int) { items = Array(repeating: nil, count: n) } }
        let results = Box(order.count)
        let (ws, data) = (weights, weightData)
        results.items.withUnsafeMutableBufferPointer { out in
            let out = out
            parallel(order.count) { k in
                let i = order[k]
                guard let t = data[i] else { return }
                let format = plan[k].0
                var reason = plan[k].1
                let q: QuantizedWeight
                if format.isInt8, let o = overrides[ws[i].name], o.format == format, o.values.shape == t.shape,
                   o.scales?.count == t.shape.dims.first, format.hasBlockCodes == (o.blockCodes != nil) {
                    q = o
                    reason += ", error-compensated"
                } else {
                    q = Quantization.quantize(t, as: format)
                }
                let err = format == .f32 ? (0.0, 0.0, Double.infinity) : Quantization.error(Quantization.dequantize(q), t)
                let stored = q.values.byteCount + (q.scales?.byteCount ?? 0) + (q.blockCodes?.byteCount ?? 0)
                out[k] = (q, QuantizedRecord(name: ws[i].name, shape: ws[i].shape, format: format, reason: reason, f32Bytes: t.count * 4,
                                             storedBytes: stored, relativeL2: err.0, maxAbs: err.1, snrDB: err.2))
            }
        }
        var records: [QuantizedRecord] = []
        for (k, i) in order.enumerated() {
            guard let (q, r) = results.items[k] else { continue }
            records.append(r)
            guard q.format != .f32 else { continue }
            weightData[i] = q.values
            weights[i].dtype = q.values.dtype
            weights[i].format = q.format
            weights[i].byteCount = q.values.byteCount
            if let scales = q.scales {
                weights.append(WeightRecord(name: weights[i].name + "#scale", dtype: .f32, shape: scales.shape, offset: 0,
                                            byteCount: scales.byteCount, format: .f32))
                weightData.append(scales)
                weights[i].scale = weights.count - 1
            }
            if let codes = q.blockCodes {
                weights.append(WeightRecord(name: weights[i].name + "#codes", dtype: .u8, shape: codes.shape, offset: 0,
                                            byteCount: codes.byteCount, format: nil))
                weightData.append(codes)
                weights[i].blockCodes = weights.count - 1
            }
        }
        var end = 0
        for i in 1..<weights.count {
            weights[i].offset = (end + 63) / 64 * 64
            end = weights[i].offset + weights[i].byteCount
        }
        sectionEnd = end
        return records
    }

    /// A named constant stored with the weights (e.g. a prompt embedding computed at compile time).
    @discardableResult
    public mutating func addNamedConstant(_ name: String, _ t: Tensor) -> Int {
        let offset = (sectionEnd + 63) / 64 * 64
        weights.append(WeightRecord(name: name, dtype: t.dtype, shape: t.shape, offset: offset, byteCount: t.byteCount, format: WeightFormat(rawValue: t.dtype.rawValue)))
        weightData.append(t)
        sectionEnd = offset + t.byteCount
        weightIndex["n:" + name] = weights.count - 1
        return weights.count - 1
    }

    /// Lowers one graph (already optimised) as the entry point `name`.
    public mutating func add(entry name: String, graph g: Graph) throws {
        try g.verify()
        // Alias groups: a reshape's result is its input's bytes.
        var group = Array(g.values.indices)
        func find(_ v: Int) -> Int {
            var r = v
            while group[r] != r { r = group[r] }
            var x = v
            while group[x] != r { let next = group[x]; group[x] = r; x = next }
            return r
        }
        // Byte offsets of aliases inside their group's buffer: a split along an axis with nothing
        // outside it gives views of its input's bytes (when every part starts 64-byte aligned).
        var aliasOffset: [ValueID: Int] = [:]
        // Concatenations whose parts are written in place: the byte ranges of the parts (values
        // computed by an instruction) of each such group, which must never overlap.
        var concatParts: [Int: [(value: ValueID, range: Range<Int>)]] = [:]
        var members = [Int](repeating: 1, count: g.values.count)
        let graphValues = Set(g.inputs).union(g.outputs.map(\.value))
        var lowered: [(node: Node, kernel: Kernel)] = []
        /// A concatenation along an axis with nothing outside it as a view: each part is written by its
        /// producer at its place in the result (DenseNet-style blocks concatenate the same parts again
        /// and again; nested concatenations share one buffer). Only parts that are alone in their
        /// group or already parts of such a family, at consistent places, none of them a graph input,
        /// output or constant, and no part overlapping another's bytes.
        func concatAsView(_ n: Node, axis: Int) -> Bool {
            let out = n.outputs[0]
            let t = g.type(out)
            let a = axis < 0 ? axis + t.rank : axis
            guard t.dims[..<a].allSatisfy({ $0 == 1 }), Set(n.inputs).count == n.inputs.count, !graphValues.contains(out),
                  members[find(out)] == 1 else { return false }
            let inner = t.dims[(a + 1)...].reduce(1, *) * t.dtype.byteSize
            var starts: [Int] = [], at = 0
            for v in n.inputs { starts.append(at); at += g.type(v).dims[a] * inner }
            guard starts.allSatisfy({ $0 % MemoryPlanner.alignment == 0 }) else { return false }
            // Where the result lies: in the family of a part already placed, or a new group of its own.
            var root: Int? = nil, base = 0
            for (v, start) in zip(n.inputs, starts) {
                guard !g.values[v].isConstant, !graphValues.contains(v) else { return false }
                let r = find(v)
                if members[r] == 1 && r == v { continue }
                guard concatParts[r] != nil, concatParts[r]!.contains(where: { $0.value == v }) else { return false }
                let b = (aliasOffset[v] ?? 0) - start
                if let root { guard root == r, b == base else { return false } } else { (root, base) = (r, b) }
            }
            guard base >= 0, base % MemoryPlanner.alignment == 0 else { return false }
            let r = root ?? find(out)
            var parts = concatParts[r] ?? []
            var joining: [(ValueID, Range<Int>)] = []
            for (v, start) in zip(n.inputs, starts) where find(v) != r {
                let range = (base + start)..<(base + start + g.type(v).count * g.type(v).dtype.byteSize)
                guard !parts.contains(where: { $0.range.overlaps(range) }) else { return false }
                joining.append((v, range))
                parts.append((v, range))
            }
            if root == nil { members[r] = 1 }
            for (v, range) in joining {
                group[v] = r
                aliasOffset[v] = range.lowerBound
                members[r] += 1
            }
            if r != find(out) {
                group[out] = r
                aliasOffset[out] = base
                members[r] += 1
            }
            concatParts[r] = parts
            return true
        }
        for n in g.nodes {
            if case .concat(let axis) = n.op, concatAsView(n, axis: axis) { continue }
            if case .reshape = n.op, !g.values[n.inputs[0]].isConstant {
                members[find(n.inputs[0])] += members[find(n.outputs[0])]
                group[find(n.outputs[0])] = find(n.inputs[0])
                aliasOffset[n.outputs[0]] = aliasOffset[n.inputs[0]]
                continue
            }
            if case .split(let axis, let sizes) = n.op, !g.values[n.inputs[0]].isConstant {
                let t = g.type(n.inputs[0])
                let a = axis < 0 ? axis + t.rank : axis
                let inner = t.dims[(a + 1)...].reduce(1, *) * t.dtype.byteSize
                let starts = sizes.indices.map { sizes[..<$0].reduce(0, +) * inner }
                if t.dims[..<a].allSatisfy({ $0 == 1 }), starts.allSatisfy({ $0 % MemoryPlanner.alignment == 0 }),
                   (aliasOffset[n.inputs[0]] ?? 0) % MemoryPlanner.alignment == 0 {
                    for (v, start) in zip(n.outputs, starts) {
                        members[find(n.inputs[0])] += members[find(v)]
                        group[find(v)] = find(n.inputs[0])
                        aliasOffset[v] = (aliasOffset[n.inputs[0]] ?? 0) + start
                    }
                    continue
                }
            }
            lowered.append((n, try Self.kernel(n, g)))
        }
        // Reshapes of constants become weights with the new shape (same bytes).
        var constants: [ValueID: Tensor] = [:]
        for n in g.nodes {
            if case .reshape(let s) = n.op, let t = g.values[n.inputs[0]].constant {
                constants[n.outputs[0]] = Tensor(dtype: t.dtype, shape: s, storage: t.storage)
            }
        }
        // Lifetimes per group over the schedule.
        let count = lowered.count
        var start = [Int: Int](), end = [Int: Int]()
        var pinned = Set<Int>()
        func touch(_ v: ValueID, _ i: Int, def: Bool) {
            let r = find(v)
            if def { start[r] = min(start[r] ?? i, i) }
            end[r] = max(end[r] ?? i, i)
        }
        for v in g.inputs { touch(v, -1, def: true); pinned.insert(find(v)) }
        for (i, l) in lowered.enumerated() {
            for v in l.node.inputs where !g.values[v].isConstant && constants[v] == nil { touch(v, i, def: false) }
            for v in l.node.outputs { touch(v, i, def: true) }
        }
        for (_, v) in g.outputs {
            guard !g.values[v].isConstant else { throw IRError(node: g.values[v].name, "a graph output that is a constant is not supported by plans") }
            touch(v, count, def: false)
            pinned.insert(find(v))
        }
        // In place: an elementwise-like kernel may write over an operand whose group ends here.
        var inPlace = 0
        for (i, l) in lowered.enumerated() where l.kernel.canRunInPlace {
            let out = l.node.outputs[0]
            let ot = g.type(out)
            for v in l.node.inputs where !g.values[v].isConstant && constants[v] == nil {
                let r = find(v)
                // (Over a split's part only at its start: the output's own aliases keep their offsets.)
                // (Not when the output is a part of a concatenation written in place: it has its place there.)
                guard !pinned.contains(r), end[r] == i, g.type(v) == ot, find(out) != r, (aliasOffset[v] ?? 0) == 0,
                      concatParts[find(out)] == nil else { continue }
                let ro = find(out)
                group[ro] = r
                end[r] = max(end[r]!, end[ro] ?? i)
                if pinned.contains(ro) { pinned.insert(r) }
                inPlace += 1
                break
            }
        }
        // One buffer per group, as large as its largest member (aliases of a reshape have its bytes,
        // a split's parts lie inside their input).
        var roots: [Int] = []
        var bufferOf: [Int: Int] = [:]
        var buffers: [MemoryPlanner.Buffer] = []
        var largest = 0
        for v in g.values.indices where start[find(v)] != nil || end[find(v)] != nil {
            let r = find(v)
            if g.values[v].isConstant { continue }
            let bytes = (aliasOffset[v] ?? 0) + g.type(v).count * g.type(v).dtype.byteSize
            if let b = bufferOf[r] {
                buffers[b].size = max(buffers[b].size, bytes)
            } else {
                bufferOf[r] = buffers.count
                roots.append(r)
                buffers.append(MemoryPlanner.Buffer(size: bytes, start: start[r] ?? -1, end: end[r] ?? count))
            }
            largest = max(largest, bytes)
        }
        let (offsets, arena) = MemoryPlanner.plan(buffers)
        try MemoryPlanner.check(buffers, offsets: offsets, arenaBytes: arena)
        func operand(_ v: ValueID) -> Operand {
            if let t = constants[v] {
                return weightOperand(Value(type: TensorType(t.dtype, t.shape), name: g.values[v].name + ":reshaped", definition: .constant(t)))
            }
            if g.values[v].isConstant { return weightOperand(g.values[v]) }
            let t = g.type(v)
            return .arena(offset: offsets[bufferOf[find(v)]!] + (aliasOffset[v] ?? 0), dtype: t.dtype, shape: t.shape)
        }
        var instructions: [Instruction] = []
        var kernels: [String: Int] = [:]
        var flops = 0.0
        for l in lowered {
            let operands = l.node.inputs.enumerated().map { (i, v) -> Operand in
                // An upsampling convolution's weight: its four phase kernels, from the f32 values (one
                // rounding when the plan stores them as bf16 or int8); the 3×3 kernel is not stored.
                guard i == 1, case .conv2d(let c) = l.kernel, c.upsample == true, let w = g.values[v].constant else { return operand(v) }
                let key = (g.values[v].weightKey ?? g.values[v].name) + ":phases"
                return weightOperand(Value(type: TensorType(.f32, Shape([4 * w.shape.dims[0], w.shape.dims[1], 2, 2])), name: key,
                                           definition: .weight(key, Reference.upsamplePhaseWeights(w.converted(to: .f32)))))
            }
            instructions.append(Instruction(kernel: l.kernel, operands: operands, results: l.node.outputs.map(operand), name: l.node.name))
            kernels[l.kernel.kindName, default: 0] += 1
            flops += Self.flops(l.node, g)
        }
        func binding(_ name: String, _ v: ValueID) -> Binding {
            let t = g.type(v)
            return Binding(name: name, dtype: t.dtype, shape: t.shape, offset: offsets[bufferOf[find(v)]!] + (aliasOffset[v] ?? 0))
        }
        let entry = EntryPoint(name: name, inputs: g.inputs.map { binding(g.values[$0].name, $0) },
                               outputs: g.outputs.map { binding($0.name, $0.value) }, instructions: instructions, arenaBytes: arena)
        entries.append(entry)
        let naive = buffers.reduce(0) { $0 + MemoryPlanner.aligned($1.size) }
        reports.append(EntryReport(name: name, instructions: instructions.count, kernels: kernels, flops: flops, arenaBytes: arena,
                                   naiveBytes: naive, largestTensorBytes: largest, inPlace: inPlace))
    }

    public var weightBytes: Int { weights.reduce(0) { $0 + $1.byteCount } }

    /// Floating-point operations of a node (multiply-add = 2), for the report.
    static func flops(_ n: Node, _ g: Graph) -> Double {
        let out = g.type(n.outputs[0])
        switch n.op {
        case .conv(let c), .convFused(let c, _):
            let w = g.type(n.inputs[1]).dims
            return 2 * Double(out.count) * Double(w[1] * w[2] * w[3]) * (c.groups > 0 ? 1 : 1)
        case .convTranspose:
            let w = g.type(n.inputs[1]).dims
            return 2 * Double(g.type(n.inputs[0]).count) * Double(w[1] * w[2] * w[3])
        case .linear, .linearFused:
            return 2 * Double(out.count) * Double(g.type(n.inputs[1]).dims[1])
        case .matmul, .matmulTransposed:
            let a = g.type(n.inputs[0]).dims
            let k: Int
            if case .matmulTransposed(let ta, _) = n.op, ta { k = a[a.count - 2] } else { k = a.last! }
            return 2 * Double(out.count) * Double(k)
        case .attention(let spec):
            let q = g.type(n.inputs[0]).dims, k = g.type(n.inputs[1]).dims
            let m = spec.keysTransposed ? k.last! : k[k.count - 2]
            return 2 * Double(g.type(n.inputs[0]).count) * Double(m) + 2 * Double(out.count) * Double(m) + Double(q.dropLast().reduce(1, *) * m) * 4
        default:
            return Double(out.count)
        }
    }
}

extension Kernel {
    /// Kernels that may write their result over an operand of the same shape.
    var canRunInPlace: Bool {
        switch self {
        case .elementwise(let e):
            switch e {
            case .geglu, .cast: return false
            default: return true
            }
        case .softmax, .layerNorm, .groupNorm, .batchNorm: return true
        default: return false
        }
    }
}
