import IR
import Passes
import Tensors
import Testing

/// Each fusion rule fires on its pattern, and does not where it must not: an intermediate with a
/// second consumer, an intermediate that is a graph output, or float64 (the fused kernels are f32).
/// Where it fires, the result is unchanged (reference interpreter, ≤1e-6).
@Suite struct FusionRuleTests {
    enum Variant: CaseIterable { case fires, secondConsumer, graphOutput, float64 }

    /// Deterministic values in [-1, 1).
    static func values(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed &* 6364136223846793005 &+ 1442695040888963407
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2_000_000) / 1_000_000 - 1
        }
    }

    struct Builder {
        var g = Graph()
        let dtype: DType
        var seed: UInt64 = 1
        init(_ dtype: DType) { self.dtype = dtype }

        mutating func constant(_ shape: Shape, offset: Float = 0) -> ValueID {
            seed += 1
            let t = Tensor(Self.shift(FusionRuleTests.values(shape.count, seed: seed), offset), shape: shape)
            return g.addConstant(dtype == .f32 ? t : t.converted(to: dtype), name: "c\(seed)")
        }
        static func shift(_ v: [Float], _ o: Float) -> [Float] { v.map { $0 + o } }
        mutating func input(_ name: String, _ shape: Shape) -> ValueID { g.addInput(name, TensorType(dtype, shape)) }
        mutating func op(_ op: Op, _ inputs: [ValueID]) throws -> ValueID { try g.add1(op, inputs, name: "n\(g.nodes.count)") }
    }

    /// Builds the pattern; returns the graph and the intermediate value the variant exposes.
    typealias Pattern = (inout Builder) throws -> (output: ValueID, intermediate: ValueID)

    static func run(_ pattern: Pattern, _ variant: Variant) throws -> (before: Graph, after: Graph) {
        var b = Builder(variant == .float64 ? .f64 : .f32)
        let (out, mid) = try pattern(&b)
        b.g.setOutput("out", out)
        switch variant {
        case .secondConsumer: b.g.setOutput("other", try b.op(.unary(.neg), [mid]))
        case .graphOutput: b.g.setOutput("mid", mid)
        default: break
        }
        var after = b.g
        var options = CompileOptions()
        options.verifyEach = true
        _ = try PassPipeline.run(&after, options: options)
        return (b.g, after)
    }

    static func inputs(_ g: Graph) -> [String: Tensor] {
        var feed: [String: Tensor] = [:]
        for (i, v) in g.inputs.enumerated() {
            let t = g.type(v)
            let x = Tensor(values(t.count, seed: 99 + UInt64(i)), shape: t.shape)
            feed[g.values[v].name] = t.dtype == .f32 ? x : x.converted(to: t.dtype)
        }
        return feed
    }

    static func check(_ name: String, _ pattern: Pattern, fusedOp: String, absorbed: String) throws {
        for variant in Variant.allCases {
            let (before, after) = try run(pattern, variant)
            let ops = after.nodes.map(\.op.name)
            if variant == .fires {
                #expect(ops.contains(fusedOp), "\(name): \(fusedOp) expected in \(ops)")
                #expect(!ops.contains(absorbed), "\(name): \(absorbed) should be absorbed: \(ops)")
            } else {
                #expect(ops.contains(absorbed), "\(name) (\(variant)): \(absorbed) must stay: \(ops)")
            }
            try expectSameResults("\(name) (\(variant))", before, after)
        }
    }

    /// The rewritten graph computes what the original did (reference interpreter, ≤ 1e-6 relative).
    static func expectSameResults(_ label: String, _ before: Graph, _ after: Graph) throws {
        let feed = inputs(before)
        let x = try Interpreter.run(before, inputs: feed), y = try Interpreter.run(after, inputs: feed)
        for (k, t) in x {
            let a = t.converted(to: .f64).withElements(as: Double.self) { Array($0) }
            let c = y[k]!.converted(to: .f64).withElements(as: Double.self) { Array($0) }
            let scale = max(a.map(abs).max() ?? 1, 1e-30)
            let err = zip(a, c).map { abs($0 - $1) }.max() ?? 0
            #expect(err / scale <= 1e-6, "\(label) \(k): \(err / scale)")
        }
    }

    /// An exporter's linear layer, `MatMul(x, Wᵀ) + b` on a 3-d input, becomes a linear layer with its
    /// bias as epilogue (and a weight two products share is transposed once); a product of two
    /// activations, a 3-d constant, or f64 stays a matmul.
    @Test func matmulAgainstAConstantBecomesALinearLayer() throws {
        for variant in [Variant.fires, .float64] {
            let (before, after) = try Self.run({ b in
                let x = b.input("x", [2, 5, 12])
                let w = b.constant([12, 7])
                let y = try b.op(.binary(.add), [try b.op(.matmul, [x, w]), b.constant([7])])
                let z = try b.op(.matmul, [x, w])
                return (try b.op(.binary(.add), [y, z]), y)
            }, variant)
            let ops = after.nodes.map(\.op.name)
            if variant == .fires {
                #expect(!ops.contains("matmul"), "\(ops)")
                #expect(after.values.filter { $0.name.hasSuffix(".T") && $0.isConstant }.count == 1, "the shared weight is transposed once")
            } else {
                #expect(ops.contains("matmul") && !ops.contains { $0.hasPrefix("linear") }, "\(ops)")
            }
            try Self.expectSameResults("matmul-linear (\(variant))", before, after)
        }
        for pattern in [{ (b: inout Builder) throws -> ValueID in try b.op(.matmul, [b.input("a", [4, 6]), b.input("b", [6, 3])]) },
                        { (b: inout Builder) throws -> ValueID in try b.op(.matmul, [b.input("a", [2, 4, 6]), b.constant([2, 6, 3])]) }] {
            let (before, after) = try Self.run({ b in let y = try pattern(&b); return (y, y) }, .fires)
            #expect(after.nodes.map(\.op.name).contains("matmul"))
            try Self.expectSameResults("matmul-linear (kept)", before, after)
        }
    }

    /// `qkv[0]`, `qkv[1]`, `qkv[2]` (gathers of constant single indices) become one split whose parts
    /// are reshaped; a gather of several indices, or of a runtime index, stays.
    @Test func gathersOfSingleIndicesBecomeOneSplit() throws {
        func ints(_ values: [Int64], _ shape: Shape) -> Tensor {
            let t = Tensor(dtype: .i64, shape: shape, storage: TensorStorage(byteCount: values.count * 8))
            values.withUnsafeBytes { t.storage.mutableBytes?.copyMemory(from: $0) }
            return t
        }
        func index(_ b: inout Builder, _ i: Int64, rank1: Bool = false) -> ValueID {
            b.g.addConstant(ints([i], rank1 ? [1] : []), name: "i\(i)\(rank1)")
        }
        let (before, after) = try Self.run({ b in
            let x = b.input("x", [3, 4, 5])
            let q = try b.op(.gather(axis: 0), [x, index(&b, 0)]), k = try b.op(.gather(axis: 0), [x, index(&b, -2)])
            let v = try b.op(.gather(axis: 0), [x, index(&b, 2, rank1: true)])
            let s = try b.op(.binary(.add), [try b.op(.binary(.mul), [q, k]), try b.op(.reshape([4, 5]), [v])])
            return (try b.op(.gather(axis: 1), [s, b.g.addConstant(ints([0, 3], [2]), name: "two")]), s)
        }, .fires)
        let ops = after.nodes.map(\.op.name)
        #expect(ops.filter { $0 == "split" }.count == 1, "\(ops)")
        #expect(ops.filter { $0 == "gather" }.count == 1, "the two-index gather stays: \(ops)")
        try Self.expectSameResults("gather-split", before, after)
    }

    /// `x.chunk(2, dim=-1)` as exporters write it, two slices that cover the last axis, becomes one
    /// split, so `a · gelu(gate)` fuses to GEGLU as in our own graphs; slices that leave part of the
    /// axis out, or overlap, stay slices.
    @Test func slicesCoveringAnAxisBecomeASplit() throws {
        let (before, after) = try Self.run({ b in
            let x = b.input("x", [2, 5, 16])
            let a = try b.op(.slice(SliceSpec(starts: [0, 0, 0], ends: [2, 5, 8], steps: [1, 1, 1])), [x])
            let gate = try b.op(.slice(SliceSpec(starts: [0, 0, 8], ends: [2, 5, 16], steps: [1, 1, 1])), [x])
            return (try b.op(.binary(.mul), [a, try b.op(.gelu(.none), [gate])]), a)
        }, .fires)
        let ops = after.nodes.map(\.op.name)
        #expect(ops == ["geglu"], "\(ops)")
        try Self.expectSameResults("slices-split", before, after)
        for (first, second) in [((0, 8), (9, 16)), ((0, 9), (8, 16))] {
            let (kept, rewritten) = try Self.run({ b in
                let x = b.input("x", [2, 5, 16])
                let a = try b.op(.slice(SliceSpec(starts: [0, 0, first.0], ends: [2, 5, first.1], steps: [1, 1, 1])), [x])
                let c = try b.op(.slice(SliceSpec(starts: [0, 0, second.0], ends: [2, 5, second.1], steps: [1, 1, 1])), [x])
                return (try b.op(.binary(.add), [try b.op(.reduce(.sum, axes: [2], keepDims: true), [a]), try b.op(.reduce(.sum, axes: [2], keepDims: true), [c])]), a)
            }, .fires)
            let names = rewritten.nodes.map(\.op.name)
            #expect(!names.contains("split") && names.filter { $0 == "slice" }.count == 2, "\(first) \(second): \(names)")
            try Self.expectSameResults("slices-split (kept)", kept, rewritten)
        }
    }

    /// A window mask added between reshapes that only add a leading 1 (`attn.view(1, nW, nH, N, N) +
    /// mask`, `view(-1, nH, N, N)`) becomes a plain add, so shifted-window attention fuses with both
    /// its biases; a reshape that regroups axes keeps its detour.
    @Test func maskAddBetweenUnitReshapesReachesAttention() throws {
        let (before, after) = try Self.run({ b in
            let q = b.input("q", [4, 2, 8, 6]), k = b.input("k", [4, 2, 8, 6]), v = b.input("v", [4, 2, 8, 6])
            let scores = try b.op(.matmul, [q, try b.op(.transpose([0, 1, 3, 2]), [k])])
            let biased = try b.op(.binary(.add), [scores, b.constant([2, 8, 8])])
            let up = try b.op(.reshape([1, 4, 2, 8, 8]), [biased])
            let masked = try b.op(.binary(.add), [up, b.constant([1, 4, 1, 8, 8])])
            let p = try b.op(.softmax(axis: -1), [try b.op(.reshape([4, 2, 8, 8]), [masked])])
            return (try b.op(.matmul, [p, v]), p)
        }, .fires)
        let ops = after.nodes.map(\.op.name)
        #expect(ops.contains("attention") && !ops.contains("softmax"), "\(ops)")
        try Self.expectSameResults("unit-axes-add", before, after)
        let (kept, regrouped) = try Self.run({ b in
            let y = b.input("y", [4, 6])
            let up = try b.op(.reshape([1, 2, 12]), [y])
            let a = try b.op(.binary(.add), [up, b.constant([1, 2, 12])])
            return (try b.op(.reshape([4, 6]), [a]), a)
        }, .fires)
        #expect(regrouped.nodes.map(\.op.name).contains("reshape"))
        try Self.expectSameResults("unit-axes-add (regrouped)", kept, regrouped)
    }

    @Test func groupNormSiLUIntoConvolution() throws {
        try Self.check("conv-prologue", { b in
            let x = b.input("x", [1, 8, 6, 6])
            let gn = try b.op(.groupNorm(groups: 4, epsilon: 1e-5), [x, b.constant([8], offset: 1), b.constant([8])])
            let s = try b.op(.unary(.silu), [gn])
            let y = try b.op(.conv(Conv2D(pads: [1, 1, 1, 1])), [s, b.constant([4, 8, 3, 3]), b.constant([4])])
            return (y, gn)
        }, fusedOp: "conv_fused", absorbed: "group_norm")
    }

    @Test func convolutionEpilogueSiLUAndResidual() throws {
        try Self.check("epilogues (conv + silu + residual)", { b in
            let x = b.input("x", [1, 4, 5, 5]), r = b.input("r", [1, 4, 5, 5])
            let c = try b.op(.conv(Conv2D(pads: [1, 1, 1, 1])), [x, b.constant([4, 4, 3, 3]), b.constant([4])])
            let a = try b.op(.unary(.silu), [c])
            return (try b.op(.binary(.add), [a, r]), c)
        }, fusedOp: "conv_fused", absorbed: "silu")
    }

    /// A ResBlock's time embedding: `conv(x) + emb[:, :, None, None]` becomes the convolution's
    /// `addChannels` step (then a SiLU after it keeps its order); not with a different batch, nor
    /// after a linear layer.
    @Test func perChannelAddIntoConvolution() throws {
        try Self.check("epilogues (conv + per-channel add)", { b in
            let x = b.input("x", [2, 4, 5, 5]), e = b.input("e", [2, 4, 1, 1])
            let c = try b.op(.conv(Conv2D(pads: [1, 1, 1, 1])), [x, b.constant([4, 4, 3, 3]), b.constant([4])])
            return (try b.op(.binary(.add), [e, c]), c)
        }, fusedOp: "conv_fused", absorbed: "add")
        let (_, after) = try Self.run({ b in
            let x = b.input("x", [1, 3, 5, 5]), e = b.input("e", [1, 4, 1, 1])
            let c = try b.op(.conv(Conv2D()), [x, b.constant([4, 3, 1, 1])])
            let a = try b.op(.binary(.add), [c, e])
            return (try b.op(.unary(.silu), [a]), c)
        }, .fires)
        guard case .convFused(_, let f) = after.nodes.last!.op else { Issue.record("not fused"); return }
        #expect(f.epilogue == [.addChannels, .activation(.silu)])
        for shapes in [([2, 3, 5, 5], [1, 4, 1, 1]), ([1, 3, 5, 5], [1, 4, 5, 1])] {
            let (before, kept) = try Self.run({ b in
                let x = b.input("x", Shape(shapes.0)), e = b.input("e", Shape(shapes.1))
                let c = try b.op(.conv(Conv2D()), [x, b.constant([4, 3, 1, 1])])
                return (try b.op(.binary(.add), [c, e]), c)
            }, .fires)
            #expect(kept.nodes.map(\.op.name).contains("add"), "\(shapes): the broadcast add must stay")
            let feed = Self.inputs(before)
            let want = try Interpreter.run(before, inputs: feed)["out"]!, got = try Interpreter.run(kept, inputs: feed)["out"]!
            #expect(want.floats() == got.floats())
        }
        let (_, linear) = try Self.run({ b in
            let x = b.input("x", [2, 4, 3, 8]), e = b.input("e", [2, 4, 1, 1])
            let l = try b.op(.linear, [x, b.constant([6, 8])])
            return (try b.op(.binary(.add), [l, e]), l)
        }, .fires)
        #expect(linear.nodes.map(\.op.name).contains("add"), "a linear layer takes no per-channel add")
    }

    /// The ControlNet's outputs: `skip + zero_conv(h) · scale` with `scale` an input of one value →
    /// the convolution with epilogue [scaleByInput, addResidual]; a linear layer takes it too.
    @Test func runtimeScaleAndResidualIntoConvolution() throws {
        try Self.check("epilogues (conv · runtime scale)", { b in
            let x = b.input("x", [1, 4, 5, 5]), s = b.input("s", [1])
            let c = try b.op(.conv(Conv2D()), [x, b.constant([4, 4, 1, 1]), b.constant([4])])
            return (try b.op(.binary(.mul), [s, c]), c)
        }, fusedOp: "conv_fused", absorbed: "mul")
        let (_, after) = try Self.run({ b in
            let x = b.input("x", [1, 4, 5, 5]), s = b.input("s", [1]), skip = b.input("skip", [1, 4, 5, 5])
            let c = try b.op(.conv(Conv2D()), [x, b.constant([4, 4, 1, 1]), b.constant([4])])
            return (try b.op(.binary(.add), [skip, try b.op(.binary(.mul), [c, s])]), c)
        }, .fires)
        guard case .convFused(_, let f) = after.nodes.last!.op else { Issue.record("not fused"); return }
        #expect(f.epilogue == [.scaleByInput, .addResidual])
        try Self.check("epilogues (linear · runtime scale)", { b in
            let x = b.input("x", [2, 3, 8]), s = b.input("s", [])
            let l = try b.op(.linear, [x, b.constant([6, 8])])
            return (try b.op(.binary(.mul), [l, s]), l)
        }, fusedOp: "linear_fused", absorbed: "mul")
        // Not a value per element: [1, 4, 1, 1] stays a broadcast multiply.
        let (_, kept) = try Self.run({ b in
            let x = b.input("x", [1, 4, 5, 5]), s = b.input("s", [1, 4, 1, 1])
            let c = try b.op(.conv(Conv2D()), [x, b.constant([4, 4, 1, 1])])
            return (try b.op(.binary(.mul), [c, s]), c)
        }, .fires)
        #expect(kept.nodes.map(\.op.name).contains("mul"))
    }

    @Test func linearEpilogueGELU() throws {
        try Self.check("epilogues (linear + gelu)", { b in
            let x = b.input("x", [2, 3, 8])
            let l = try b.op(.linear, [x, b.constant([6, 8]), b.constant([6])])
            return (try b.op(.gelu(.none), [l]), l)
        }, fusedOp: "linear_fused", absorbed: "gelu")
    }

    /// PReLU as the ncnn importer writes it, `relu(y) + min(y, 0)·s`, after a convolution: one
    /// epilogue step (per-channel slopes; a single slope becomes a leaky ReLU); not when y has another
    /// consumer or is an output, nor in f64.
    @Test func preluIntoConvolution() throws {
        for perChannel in [true, false] {
            try Self.check("epilogues (conv + prelu, per channel \(perChannel))", { b in
                let x = b.input("x", [1, 3, 5, 5])
                let c = try b.op(.conv(Conv2D(pads: [1, 1, 1, 1])), [x, b.constant([4, 3, 3, 3]), b.constant([4])])
                let positive = try b.op(.unary(.relu), [c])
                let zero = b.g.addConstant(Tensor([0], shape: [1]).converted(to: b.dtype), name: "zero")
                let negative = try b.op(.binary(.min), [c, zero])
                let slopes = b.constant(perChannel ? [1, 4, 1, 1] : [1], offset: 0.5)
                return (try b.op(.binary(.add), [positive, b.op(.binary(.mul), [negative, slopes])]), c)
            }, fusedOp: "conv_fused", absorbed: "min")
        }
        let (_, after) = try Self.run({ b in
            let x = b.input("x", [1, 3, 5, 5])
            let c = try b.op(.conv(Conv2D()), [x, b.constant([4, 3, 1, 1])])
            let zero = b.g.addConstant(Tensor([0], shape: [1]), name: "zero")
            let n = try b.op(.binary(.mul), [b.g.addConstant(Tensor([0.3, -0.2, 0.1, 0.7], shape: [1, 4, 1, 1]), name: "s"), b.op(.binary(.min), [zero, c])])
            return (try b.op(.binary(.add), [n, b.op(.unary(.relu), [c])]), c)
        }, .fires)
        guard case .convFused(_, let f) = after.nodes.last!.op else { Issue.record("not fused: \(after.nodes.map(\.op.name))"); return }
        #expect(f.epilogue == [.preluChannels])
    }

    @Test func convolutionEpilogueLeakyReLUKeepsItsSlope() throws {
        try Self.check("epilogues (conv + leaky relu 0.2)", { b in
            let x = b.input("x", [1, 3, 5, 5])
            let c = try b.op(.conv(Conv2D(pads: [1, 1, 1, 1])), [x, b.constant([4, 3, 3, 3]), b.constant([4])])
            return (try b.op(.leakyRelu(alpha: 0.2), [c]), c)
        }, fusedOp: "conv_fused", absorbed: "leaky_relu")
        // The slope is the one of the graph, not a default.
        let (_, after) = try Self.run({ b in
            let x = b.input("x", [1, 3, 5, 5])
            let c = try b.op(.conv(Conv2D()), [x, b.constant([4, 3, 1, 1])])
            return (try b.op(.leakyRelu(alpha: 0.2), [c]), c)
        }, .fires)
        guard case .convFused(_, let f) = after.nodes.last!.op else { Issue.record("not fused"); return }
        #expect(f.epilogue == [.activation(.leakyRelu(0.2))])
    }

    @Test func gegluFeedForward() throws {
        try Self.check("geglu", { b in
            let x = b.input("x", [1, 5, 12])
            let parts = try b.g.add(.split(axis: -1, sizes: [6, 6]), [x], name: "split")
            let gate = try b.op(.gelu(.none), [parts[1]])
            return (try b.op(.binary(.mul), [parts[0], gate]), gate)
        }, fusedOp: "geglu", absorbed: "gelu")
    }

    /// The feed-forward's first layer: layer norm → linear (2h = 128 outputs) → GEGLU → one
    /// `linear_fused` with `geglu`; not when the product has another reader, nor when h is not a
    /// multiple of 32 (2h = 96: the halves would not start on a panel of every kernel set).
    @Test func gegluIntoLinear() throws {
        func pattern(_ width: Int) -> Pattern {
            { b in
                let x = b.input("x", [1, 5, 12])
                let ln = try b.op(.layerNorm(axis: -1, epsilon: 1e-5), [x, b.constant([12], offset: 1), b.constant([12])])
                let l = try b.op(.linear, [ln, b.constant([width, 12]), b.constant([width])])
                let parts = try b.g.add(.split(axis: -1, sizes: [width / 2, width / 2]), [l], name: "split")
                let gate = try b.op(.gelu(.none), [parts[1]])
                return (try b.op(.binary(.mul), [parts[0], gate]), l)
            }
        }
        for variant in Variant.allCases {
            let (before, after) = try Self.run(pattern(128), variant)
            let ops = after.nodes.map(\.op.name)
            switch variant {
            case .fires:
                guard case .linearFused(let f) = after.nodes.last!.op else { Issue.record("not fused: \(ops)"); continue }
                #expect(f.geglu && f.layerNorm != nil && after.nodes.count == 1, "\(ops)")
            case .float64: #expect(ops.contains("gelu"), "\(ops)")
            default: #expect(ops.contains("geglu"), "\(variant): the product has another reader: \(ops)")
            }
            try Self.expectSameResults("geglu-linear (\(variant))", before, after)
        }
        let (_, kept) = try Self.run(pattern(96), .fires)
        #expect(kept.nodes.map(\.op.name).contains("geglu"))
    }

    @Test func attentionWithBias() throws {
        try Self.check("attention", { b in
            let q = b.input("q", [2, 7, 4]), k = b.input("k", [2, 9, 4]), v = b.input("v", [2, 9, 5])
            let kt = try b.op(.transpose([0, 2, 1]), [k])
            let s = try b.op(.matmul, [q, kt])
            let scaled = try b.op(.binary(.mul), [s, b.g.addConstant(Tensor([0.5], shape: []).converted(to: b.dtype), name: "scale")])
            let biased = try b.op(.binary(.add), [scaled, b.constant([7, 9])])
            let p = try b.op(.softmax(axis: -1), [biased])
            return (try b.op(.matmul, [p, v]), p)
        }, fusedOp: "attention", absorbed: "softmax")
    }

    /// Keys split into heads and transposed in one transpose (`[b, m, h, d] → [b, h, d, m]`, as the
    /// UNet's attention builds them): the attention reads untransposed keys and the key projection
    /// writes its heads in place, so no transpose is left; the numbers are the original graph's.
    @Test func headSplitTransposedKeysIntoAttention() throws {
        func pattern(_ b: inout Builder) throws -> (output: ValueID, intermediate: ValueID) {
            let x = b.input("x", [1, 6, 32]), c = b.input("c", [1, 5, 16])
            let q = try b.op(.transpose([0, 2, 1, 3]), [b.op(.reshape([1, 6, 2, 16]), [b.op(.linear, [x, b.constant([32, 32])])])])
            let keys = try b.op(.reshape([1, 5, 2, 16]), [b.op(.linear, [c, b.constant([32, 16])])])
            let kt = try b.op(.transpose([0, 2, 3, 1]), [keys])
            let v = try b.op(.transpose([0, 2, 1, 3]), [b.op(.reshape([1, 5, 2, 16]), [b.op(.linear, [c, b.constant([32, 16])])])])
            let s = try b.op(.binary(.mul), [b.op(.matmul, [q, kt]), b.g.addConstant(Tensor([0.25], shape: []).converted(to: b.dtype), name: "scale")])
            let p = try b.op(.softmax(axis: -1), [s])
            return (try b.op(.matmul, [p, v]), kt)
        }
        let (before, after) = try Self.run(pattern, .fires)
        let ops = after.nodes.map(\.op.name)
        #expect(ops.contains("attention") && !ops.contains("transpose"), "\(ops)")
        guard let a = after.nodes.first(where: { $0.op.name == "attention" }), case .attention(let spec) = a.op else { return }
        #expect(!spec.keysTransposed)
        try Self.expectSameResults("head-split transposed keys", before, after)
        // The transposed keys used elsewhere too: the transpose stays as it was, and so do the numbers.
        let (before2, after2) = try Self.run(pattern, .secondConsumer)
        #expect(after2.nodes.contains { $0.op == .transpose([0, 2, 3, 1]) }, "\(after2.nodes.map(\.op.name))")
        try Self.expectSameResults("head-split transposed keys, second consumer", before2, after2)
    }

    @Test func layerNormIntoLinear() throws {
        try Self.check("layernorm-linear", { b in
            let x = b.input("x", [3, 10])
            let ln = try b.op(.layerNorm(axis: -1, epsilon: 1e-5), [x, b.constant([10], offset: 1), b.constant([10])])
            return (try b.op(.linear, [ln, b.constant([4, 10]), b.constant([4])]), ln)
        }, fusedOp: "linear_fused", absorbed: "layer_norm")
    }

    @Test func batchNormFoldedIntoConvolution() throws {
        try Self.check("batchnorm-folding", { b in
            let x = b.input("x", [1, 3, 5, 5])
            let c = try b.op(.conv(Conv2D()), [x, b.constant([4, 3, 1, 1]), b.constant([4])])
            let bn = try b.op(.batchNorm(epsilon: 1e-5), [c, b.constant([4], offset: 1), b.constant([4]), b.constant([4]), b.constant([4], offset: 2)])
            return (bn, c)
        }, fusedOp: "conv", absorbed: "batch_norm")
    }

    /// A shifted window's roll (slices + concat) and window partition (reshape, transpose) between a
    /// layer norm and a linear: the linear reads its rows through offset tables and takes the norm.
    static func windows(_ b: inout Builder) throws -> (ValueID, ValueID) {
        let x = b.input("x", [1, 64, 16])
        let ln = try b.op(.layerNorm(axis: -1, epsilon: 1e-5), [x, b.constant([16], offset: 1), b.constant([16])])
        var y = try b.op(.reshape([1, 8, 8, 16]), [ln])
        for axis in [1, 2] {
            var (lo, hi) = ([0, 0, 0, 0], [1, 8, 8, 16])
            lo[axis] = 2
            let tail = try b.op(.slice(SliceSpec(starts: lo, ends: hi, steps: [1, 1, 1, 1])), [y])
            (lo[axis], hi[axis]) = (0, 2)
            let head = try b.op(.slice(SliceSpec(starts: lo, ends: hi, steps: [1, 1, 1, 1])), [y])
            y = try b.op(.concat(axis: axis), [tail, head])
        }
        let t = try b.op(.transpose([0, 1, 3, 2, 4, 5]), [b.op(.reshape([1, 2, 4, 2, 4, 16]), [y])])
        return (try b.op(.linear, [b.op(.reshape([4, 16, 16]), [t]), b.constant([48, 16]), b.constant([48])]), t)
    }

    @Test func windowsAndRollIntoLinear() throws {
        try Self.check("linear-layout (input)", { b in try Self.windows(&b) }, fusedOp: "linear_fused", absorbed: "transpose")
        let (_, after) = try Self.run({ b in try Self.windows(&b) }, .fires)
        #expect(after.nodes.map(\.op.name) == ["linear_fused"], "\(after.nodes.map(\.op.name))")
        guard case .linearFused(let f) = after.nodes.last!.op else { Issue.record("not fused"); return }
        #expect(f.gathersInput && !f.scattersOutput && f.layerNorm != nil && f.outputShape == [4, 16, 48])
    }

    /// Windows back to the grid, the roll undone, then the residual: the linear writes its rows
    /// through offset tables and adds the residual as it writes (not when its own result is needed).
    static func windowsBack(_ b: inout Builder) throws -> (ValueID, ValueID) {
        let a = b.input("a", [4, 16, 16]), r = b.input("r", [1, 64, 16])
        let p = try b.op(.linear, [a, b.constant([16, 16]), b.constant([16])])
        let t = try b.op(.transpose([0, 1, 3, 2, 4, 5]), [b.op(.reshape([1, 2, 2, 4, 4, 16]), [p])])
        var y = try b.op(.reshape([1, 8, 8, 16]), [t])
        for axis in [1, 2] {
            var (lo, hi) = ([0, 0, 0, 0], [1, 8, 8, 16])
            lo[axis] = 6
            let tail = try b.op(.slice(SliceSpec(starts: lo, ends: hi, steps: [1, 1, 1, 1])), [y])
            (lo[axis], hi[axis]) = (0, 6)
            let head = try b.op(.slice(SliceSpec(starts: lo, ends: hi, steps: [1, 1, 1, 1])), [y])
            y = try b.op(.concat(axis: axis), [tail, head])
        }
        return (try b.op(.binary(.add), [r, b.op(.reshape([1, 64, 16]), [y])]), p)
    }

    @Test func windowsBackOutOfLinear() throws {
        try Self.check("linear-layout (output)", { b in try Self.windowsBack(&b) }, fusedOp: "linear_fused", absorbed: "transpose")
        let (_, after) = try Self.run({ b in try Self.windowsBack(&b) }, .fires)
        #expect(after.nodes.map(\.op.name) == ["linear_fused"], "\(after.nodes.map(\.op.name))")
        guard case .linearFused(let f) = after.nodes.last!.op else { Issue.record("not fused"); return }
        #expect(!f.gathersInput && f.scattersOutput && f.epilogue == [.addResidual] && f.outputShape == [1, 64, 16])
    }

    /// A head split after a linear (runs of 16 columns) is written in place; so is a whole
    /// channels-first transpose before or after one (runs of one column, moved in 16 × 16 blocks:
    /// a transformer's proj_in and proj_out, with the residual after proj_out); a channels-first
    /// transpose of two images (rows not consecutive) stays a transpose.
    @Test func headSplitAndChannelsFirstAroundLinear() throws {
        try Self.check("linear-layout (heads)", { b in
            let x = b.input("x", [2, 5, 32])
            let q = try b.op(.linear, [x, b.constant([32, 32])])
            let t = try b.op(.transpose([0, 2, 1, 3]), [b.op(.reshape([2, 5, 2, 16]), [q])])
            return (try b.op(.unary(.neg), [t]), q)
        }, fusedOp: "linear_fused", absorbed: "transpose")
        try Self.check("linear-layout (channels first in)", { b in
            let x = b.input("x", [1, 32, 4, 5])
            let t = try b.op(.transpose([0, 2, 1]), [b.op(.reshape([1, 32, 20]), [x])])
            return (try b.op(.linear, [t, b.constant([24, 32])]), t)
        }, fusedOp: "linear_fused", absorbed: "transpose")
        try Self.check("linear-layout (channels first out, residual)", { b in
            let x = b.input("x", [1, 20, 32]), skip = b.input("skip", [1, 24, 4, 5])
            let y = try b.op(.linear, [x, b.constant([24, 32]), b.constant([24])])
            let t = try b.op(.reshape([1, 24, 4, 5]), [b.op(.transpose([0, 2, 1]), [y])])
            return (try b.op(.binary(.add), [t, skip]), y)
        }, fusedOp: "linear_fused", absorbed: "transpose")
        let (_, residual) = try Self.run({ b in
            let x = b.input("x", [1, 20, 32]), skip = b.input("skip", [1, 24, 4, 5])
            let y = try b.op(.linear, [x, b.constant([24, 32]), b.constant([24])])
            let t = try b.op(.reshape([1, 24, 4, 5]), [b.op(.transpose([0, 2, 1]), [y])])
            return (try b.op(.binary(.add), [t, skip]), y)
        }, .fires)
        #expect(residual.nodes.map(\.op.name) == ["linear_fused"], "\(residual.nodes.map(\.op.name))")
        let (_, after) = try Self.run({ b in
            let x = b.input("x", [2, 32, 4, 4])
            let t = try b.op(.transpose([0, 2, 1]), [b.op(.reshape([2, 32, 16]), [x])])
            return (try b.op(.linear, [t, b.constant([8, 32])]), t)
        }, .fires)
        #expect(after.nodes.map(\.op.name).contains("transpose"), "\(after.nodes.map(\.op.name))")
    }

    /// A nearest 2× upsample before a 3×3 convolution: the convolution reads the small image (the
    /// executor runs its four phases); a bilinear resize, or a nearest one whose mapping is not
    /// (y/2, x/2) (rounding up), stays.
    @Test func upsampleIntoConvolution() throws {
        func pattern(_ mode: Resize.Mode, _ transform: Resize.CoordinateTransform, _ nearest: Resize.NearestMode) -> Pattern {
            { b in
                let x = b.input("x", [1, 3, 4, 32])
                let up = try b.op(.resize(Resize(mode: mode, coordinateTransform: transform, nearestMode: nearest, sizes: [1, 3, 8, 64], scales: [1, 1, 2, 2])), [x])
                return (try b.op(.conv(Conv2D(pads: [1, 1, 1, 1])), [up, b.constant([5, 3, 3, 3]), b.constant([5])]), up)
            }
        }
        try Self.check("upsample-conv", pattern(.nearest, .asymmetric, .floor), fusedOp: "conv_fused", absorbed: "resize")
        try Self.check("upsample-conv (half pixel)", pattern(.nearest, .halfPixel, .roundPreferFloor), fusedOp: "conv_fused", absorbed: "resize")
        for (mode, transform, nearest) in [(Resize.Mode.linear, Resize.CoordinateTransform.halfPixel, Resize.NearestMode.floor), (.nearest, .asymmetric, .ceil)] {
            let (_, after) = try Self.run(pattern(mode, transform, nearest), .fires)
            #expect(after.nodes.map(\.op.name).contains("resize"), "\(mode) \(transform): \(after.nodes.map(\.op.name))")
        }
    }
}
