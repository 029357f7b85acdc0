import Tensors

extension Op {
    /// A fused kernel's epilogue operands, in step order: the output's type for a residual,
    /// `[N, C, 1, 1]` for a per-channel add, a single value for a runtime scale.
    static func checkEpilogueOperands(_ operands: [TensorType], _ steps: [EpilogueOp], out: TensorType,
                                      fail: (String) -> IRError) throws(IRError) {
        for (r, step) in zip(operands, steps.filter(\.takesOperand)) {
            switch step {
            case .addResidual:
                if r != out { throw fail("residual \(r) does not match the output \(out)") }
            case .addChannels:
                guard out.rank == 4, r == TensorType(out.dtype, Shape([out.dims[0], out.dims[1], 1, 1])) else {
                    throw fail("per-channel addend \(r) does not match the output \(out)")
                }
            case .scaleByInput:
                guard r.dtype == out.dtype, r.count == 1 else { throw fail("runtime scale \(r) is not a single \(out.dtype) value") }
            case .preluChannels:
                guard out.rank == 4, r == TensorType(out.dtype, Shape([1, out.dims[1], 1, 1])) else {
                    throw fail("per-channel slopes \(r) do not match the output \(out)")
                }
            default: break
            }
        }
    }

    /// The output types for these input types, or an error saying which rule is broken.
    public func inferTypes(_ inputs: [TensorType], node: String = "") throws(IRError) -> [TensorType] {
        func fail(_ message: String) -> IRError { IRError(node: node, "\(name): \(message)") }
        func arity(_ range: ClosedRange<Int>) throws(IRError) {
            guard range.contains(inputs.count) else {
                throw fail("takes \(range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)") inputs, got \(inputs.count)")
            }
        }
        // Arithmetic on sizes taken from files: an overflow is an error, not a trap.
        func mul(_ a: Int, _ b: Int) throws(IRError) -> Int {
            let (r, o) = a.multipliedReportingOverflow(by: b)
            guard !o else { throw fail("sizes \(a) × \(b) overflow") }
            return r
        }
        func add(_ a: Int, _ b: Int) throws(IRError) -> Int {
            let (r, o) = a.addingReportingOverflow(b)
            guard !o else { throw fail("sizes \(a) + \(b) overflow") }
            return r
        }
        func float(_ t: TensorType, _ what: String) throws(IRError) {
            guard t.dtype.isFloatingPoint else { throw fail("\(what) must be floating-point, got \(t.dtype)") }
        }
        func axis(_ a: Int, _ rank: Int) throws(IRError) -> Int {
            guard let n = normalizeAxis(a, rank: rank) else { throw fail("axis \(a) out of range for rank \(rank)") }
            return n
        }
        /// An axis of a tensor that has one: indexing ops (concat, split, gather, arg-extremes) refuse scalars.
        func dimensionAxis(_ a: Int, _ rank: Int) throws(IRError) -> Int {
            guard rank >= 1 else { throw fail("needs an input of rank ≥ 1, not a scalar") }
            return try axis(a, rank)
        }
        func same(_ a: TensorType, _ b: TensorType, _ what: String) throws(IRError) {
            guard a.dtype == b.dtype else { throw fail("\(what): dtypes \(a.dtype) and \(b.dtype) differ") }
        }
        func broadcast(_ ts: [TensorType]) throws(IRError) -> Shape {
            guard let s = broadcastShapes(ts.map(\.dims)) else {
                throw fail("shapes \(ts.map { $0.shape.description }.joined(separator: ", ")) do not broadcast")
            }
            return Shape(s)
        }

        switch self {
        case .unary(let u):
            try arity(1...1)
            switch u {
            case .not:
                guard inputs[0].dtype == .bool else { throw fail("input must be bool") }
                return [inputs[0]]
            case .isNaN, .isInf:
                try float(inputs[0], "input")
                return [TensorType(.bool, inputs[0].shape)]
            case .abs, .neg, .sign, .relu:
                return [inputs[0]]
            default:
                try float(inputs[0], "input")
                return [inputs[0]]
            }
        case .binary(let b):
            try arity(2...2)
            try same(inputs[0], inputs[1], "operands")
            if [.and, .or, .xor].contains(b), inputs[0].dtype != .bool { throw fail("operands must be bool") }
            return [TensorType(b.producesBool ? .bool : inputs[0].dtype, try broadcast(inputs))]
        case .leakyRelu, .gelu, .elu, .hardSigmoid:
            try arity(1...1)
            try float(inputs[0], "input")
            return [inputs[0]]
        case .clip:
            try arity(1...1)
            return [inputs[0]]
        case .select:
            try arity(3...3)
            guard inputs[0].dtype == .bool else { throw fail("condition must be bool, got \(inputs[0].dtype)") }
            try same(inputs[1], inputs[2], "branches")
            return [TensorType(inputs[1].dtype, try broadcast(inputs))]
        case .cast(let d):
            try arity(1...1)
            return [TensorType(d, inputs[0].shape)]

        case .softmax(let a), .logSoftmax(let a):
            try arity(1...1)
            try float(inputs[0], "input")
            _ = try axis(a, inputs[0].rank)
            return [inputs[0]]
        case .layerNorm(let a, _):
            try arity(2...3)
            try float(inputs[0], "input")
            let x = inputs[0]
            let first = try axis(a, x.rank)
            let normalized = Array(x.dims[first...])
            for t in inputs.dropFirst() {
                guard broadcastShapes([normalized, t.dims]) == normalized else {
                    throw fail("scale/bias \(t.shape) do not broadcast to the normalised shape \(Shape(normalized))")
                }
            }
            return [x]
        case .groupNorm(let groups, _):
            try arity(3...3)
            let x = inputs[0]
            try float(x, "input")
            guard x.rank >= 2, groups > 0, x.dims[1] % groups == 0 else { throw fail("\(x.dims.count >= 2 ? x.dims[1] : 0) channels in \(groups) groups") }
            for t in inputs.dropFirst() where t.dims != [x.dims[1]] { throw fail("scale/bias must be [\(x.dims[1])], got \(t.shape)") }
            return [x]
        case .instanceNorm:
            try arity(3...3)
            let x = inputs[0]
            try float(x, "input")
            guard x.rank >= 3 else { throw fail("input must have rank ≥ 3") }
            for t in inputs.dropFirst() where t.dims != [x.dims[1]] { throw fail("scale/bias must be [\(x.dims[1])], got \(t.shape)") }
            return [x]
        case .batchNorm:
            try arity(5...5)
            let x = inputs[0]
            try float(x, "input")
            guard x.rank >= 2 else { throw fail("input must have rank ≥ 2") }
            for t in inputs.dropFirst() where t.dims != [x.dims[1]] { throw fail("parameters must be [\(x.dims[1])], got \(t.shape)") }
            return [x]

        case .matmul:
            try arity(2...2)
            try same(inputs[0], inputs[1], "operands")
            var a = inputs[0].dims, b = inputs[1].dims
            guard !a.isEmpty, !b.isEmpty else { throw fail("operands must have rank ≥ 1") }
            let aVector = a.count == 1, bVector = b.count == 1
            if aVector { a = [1] + a }
            if bVector { b = b + [1] }
            guard a[a.count - 1] == b[b.count - 2] else { throw fail("inner dimensions \(a[a.count - 1]) and \(b[b.count - 2]) differ (\(inputs[0].shape) × \(inputs[1].shape))") }
            guard let batch = broadcastShapes([Array(a.dropLast(2)), Array(b.dropLast(2))]) else { throw fail("batch dimensions do not broadcast") }
            var out = batch + [a[a.count - 2], b[b.count - 1]]
            if bVector { out.removeLast() }
            if aVector { out.remove(at: out.count - (bVector ? 1 : 2)) }
            return [TensorType(inputs[0].dtype, Shape(out))]
        case .linear:
            try arity(2...3)
            let x = inputs[0], w = inputs[1]
            try same(x, w, "input and weight")
            guard w.rank == 2, let k = x.dims.last, k == w.dims[1] else { throw fail("weight \(w.shape) does not match input \(x.shape)") }
            if inputs.count == 3, inputs[2].dims != [w.dims[0]] { throw fail("bias must be [\(w.dims[0])], got \(inputs[2].shape)") }
            return [TensorType(x.dtype, Shape(x.dims.dropLast() + [w.dims[0]]))]
        case .conv(let c):
            try arity(2...3)
            let x = inputs[0], w = inputs[1]
            try same(x, w, "input and weight")
            guard x.rank == 4, w.rank == 4 else { throw fail("input and weight must be 4-D, got \(x.shape), \(w.shape)") }
            guard c.groups > 0, x.dims[1] == (try mul(w.dims[1], c.groups)), w.dims[0] % c.groups == 0 else {
                throw fail("weight \(w.shape) with \(c.groups) groups does not match \(x.dims[1]) input channels")
            }
            if inputs.count == 3, inputs[2].dims != [w.dims[0]] { throw fail("bias must be [\(w.dims[0])], got \(inputs[2].shape)") }
            guard c.strides.count == 2, c.dilations.count == 2, c.pads.count == 4, c.strides.allSatisfy({ $0 > 0 }), c.dilations.allSatisfy({ $0 > 0 }) else { throw fail("bad strides, dilations or pads") }
            var out = [x.dims[0], w.dims[0]]
            for i in 0..<2 {
                let span = try add(try mul(c.dilations[i], w.dims[2 + i] - 1), 1)
                let padded = try add(try add(x.dims[2 + i], c.pads[i]), c.pads[i + 2])
                guard padded >= span else { throw fail("kernel \(span) larger than the padded input \(padded)") }
                out.append((padded - span) / c.strides[i] + 1)
            }
            return [TensorType(x.dtype, Shape(out))]
        case .convTranspose(let c):
            try arity(2...3)
            let x = inputs[0], w = inputs[1]
            try same(x, w, "input and weight")
            guard x.rank == 4, w.rank == 4, c.groups > 0, x.dims[1] == w.dims[0], w.dims[0] % c.groups == 0 else {
                throw fail("weight \(w.shape) does not match input \(x.shape) with \(c.groups) groups")
            }
            let outChannels = try mul(w.dims[1], c.groups)
            if inputs.count == 3, inputs[2].dims != [outChannels] { throw fail("bias must be [\(outChannels)], got \(inputs[2].shape)") }
            var out = [x.dims[0], outChannels]
            for i in 0..<2 {
                let size = try add(try add(try add(try mul(c.strides[i], x.dims[2 + i] - 1), c.outputPadding[i]),
                                           try add(try mul(c.dilations[i], w.dims[2 + i] - 1), 1)), try add(-c.pads[i], -c.pads[i + 2]))
                guard size > 0 else { throw fail("empty output") }
                out.append(size)
            }
            return [TensorType(x.dtype, Shape(out))]
        case .einsum(let equation):
            guard !inputs.isEmpty else { throw fail("needs operands") }
            guard let spec = EinsumSpec.parse(equation, ranks: inputs.map(\.rank)), let sizes = spec.labelSizes(inputs.map(\.dims)) else {
                throw fail("equation '\(equation)' does not fit operands \(inputs.map { $0.shape.description }.joined(separator: ", "))")
            }
            for t in inputs.dropFirst() { try same(inputs[0], t, "operands") }
            return [TensorType(inputs[0].dtype, Shape(spec.output.map { sizes[$0]! }))]

        case .reshape(let s):
            try arity(1...1)
            guard s.dims.allSatisfy({ $0 >= 0 }), Shape.checkedCount(s.dims) == inputs[0].count else {
                throw fail("cannot reshape \(inputs[0].shape) (\(inputs[0].count) elements) to \(s)")
            }
            return [TensorType(inputs[0].dtype, s)]
        case .transpose(let perm):
            try arity(1...1)
            guard perm.sorted() == Array(0..<inputs[0].rank) else { throw fail("\(perm) is not a permutation of \(inputs[0].rank) axes") }
            return [TensorType(inputs[0].dtype, Shape(perm.map { inputs[0].dims[$0] }))]
        case .concat(let a):
            guard !inputs.isEmpty else { throw fail("needs inputs") }
            let r = inputs[0].rank
            let ax = try dimensionAxis(a, r)
            var dims = inputs[0].dims
            dims[ax] = 0
            for t in inputs {
                try same(inputs[0], t, "inputs")
                guard t.rank == r, (0..<r).allSatisfy({ $0 == ax || t.dims[$0] == inputs[0].dims[$0] }) else {
                    throw fail("shapes \(inputs.map { $0.shape.description }.joined(separator: ", ")) differ off axis \(ax)")
                }
                dims[ax] = try add(dims[ax], t.dims[ax])
            }
            return [TensorType(inputs[0].dtype, Shape(dims))]
        case .split(let a, let sizes):
            try arity(1...1)
            let ax = try dimensionAxis(a, inputs[0].rank)
            guard sizes.allSatisfy({ $0 >= 0 }), Checked.sum(sizes) == inputs[0].dims[ax] else {
                throw fail("sizes \(sizes) do not sum to \(inputs[0].dims[ax])")
            }
            return sizes.map { s in
                var d = inputs[0].dims
                d[ax] = s
                return TensorType(inputs[0].dtype, Shape(d))
            }
        case .slice(let s):
            try arity(1...1)
            let x = inputs[0]
            guard s.starts.count == x.rank, s.ends.count == x.rank, s.steps.count == x.rank, s.steps.allSatisfy({ $0 != 0 }) else {
                throw fail("slice must give start, end and a non-zero step for each of \(x.rank) axes")
            }
            var dims: [Int] = []
            for i in 0..<x.rank {
                let (b, e, st) = (s.starts[i], s.ends[i], s.steps[i])
                guard st != Int.min else { throw fail("axis \(i): step \(st) out of range") }
                let n = st > 0 ? max(0, (try add(try add(e, -b), st - 1)) / st) : max(0, (try add(try add(b, -e), -st - 1)) / (-st))
                let last = n == 0 ? b : try add(b, try mul(n - 1, st))
                let inRange = n == 0 || (b >= 0 && b < x.dims[i] && last >= 0 && last < x.dims[i])
                guard inRange else { throw fail("axis \(i): \(b)..<\(e) by \(st) leaves the range 0..<\(x.dims[i])") }
                dims.append(n)
            }
            return [TensorType(x.dtype, Shape(dims))]
        case .pad(_, let pads, _):
            try arity(1...1)
            let x = inputs[0]
            guard pads.count == 2 * x.rank else { throw fail("needs \(2 * x.rank) pads, got \(pads.count)") }
            var dims: [Int] = []
            for a in 0..<x.rank { dims.append(try add(try add(x.dims[a], pads[a]), pads[a + x.rank])) }
            guard dims.allSatisfy({ $0 >= 0 }) else { throw fail("negative padded size") }
            return [TensorType(x.dtype, Shape(dims))]
        case .gather(let a):
            try arity(2...2)
            let x = inputs[0], idx = inputs[1]
            guard [.i64, .i32].contains(idx.dtype) else { throw fail("indices must be int32 or int64, got \(idx.dtype)") }
            let ax = try dimensionAxis(a, x.rank)
            return [TensorType(x.dtype, Shape(Array(x.dims[..<ax]) + idx.dims + Array(x.dims[(ax + 1)...])))]
        case .expand(let s):
            try arity(1...1)
            guard let out = broadcastShapes([inputs[0].dims, s.dims]) else { throw fail("cannot expand \(inputs[0].shape) to \(s)") }
            return [TensorType(inputs[0].dtype, Shape(out))]
        case .tile(let repeats):
            try arity(1...1)
            guard repeats.count == inputs[0].rank, repeats.allSatisfy({ $0 >= 0 }) else { throw fail("needs one repeat count per axis") }
            var dims: [Int] = []
            for (d, r) in zip(inputs[0].dims, repeats) { dims.append(try mul(d, r)) }
            return [TensorType(inputs[0].dtype, Shape(dims))]
        case .resize(let r):
            try arity(1...1)
            let x = inputs[0]
            guard r.scales.count == x.rank, r.sizes.count == x.rank, r.scales.allSatisfy({ $0 > 0 }), r.sizes.allSatisfy({ $0 >= 0 }) else {
                throw fail("needs a positive scale and an output size per axis")
            }
            try float(x, "input")
            return [TensorType(x.dtype, Shape(r.sizes))]
        case .depthToSpace(let b, _):
            try arity(1...1)
            let x = inputs[0]
            guard x.rank == 4, b > 0, x.dims[1] % (try mul(b, b)) == 0 else { throw fail("\(x.shape) cannot go depth-to-space by \(b)") }
            return [TensorType(x.dtype, [x.dims[0], x.dims[1] / (b * b), try mul(x.dims[2], b), try mul(x.dims[3], b)])]
        case .spaceToDepth(let b, _):
            try arity(1...1)
            let x = inputs[0]
            guard x.rank == 4, b > 0, x.dims[2] % b == 0, x.dims[3] % b == 0 else { throw fail("\(x.shape) cannot go space-to-depth by \(b)") }
            return [TensorType(x.dtype, [x.dims[0], try mul(try mul(x.dims[1], b), b), x.dims[2] / b, x.dims[3] / b])]
        case .reduce(_, let axes, let keep):
            try arity(1...1)
            let x = inputs[0]
            var set = Set<Int>()
            for a in axes { set.insert(try axis(a, x.rank)) }
            if axes.isEmpty { set = Set(0..<x.rank) }
            var dims: [Int] = []
            for i in 0..<x.rank {
                if set.contains(i) { if keep { dims.append(1) } } else { dims.append(x.dims[i]) }
            }
            return [TensorType(x.dtype, Shape(dims))]
        case .argExtreme(_, let a, let keep, _):
            try arity(1...1)
            let x = inputs[0]
            let ax = try dimensionAxis(a, x.rank)
            var dims = x.dims
            if keep { dims[ax] = 1 } else { dims.remove(at: ax) }
            return [TensorType(.i64, Shape(dims))]
        case .trilu:
            try arity(1...1)
            guard inputs[0].rank >= 2 else { throw fail("input must have rank ≥ 2") }
            return [inputs[0]]
        case .cumsum(let a, _, _):
            try arity(1...1)
            _ = try axis(a, inputs[0].rank)
            return [inputs[0]]
        case .matmulTransposed(let ta, let tb):
            try arity(2...2)
            try same(inputs[0], inputs[1], "operands")
            guard inputs[0].rank >= 2, inputs[1].rank >= 2 else { throw fail("operands must have rank ≥ 2") }
            func swapped(_ t: TensorType, _ flag: Bool) -> [Int] {
                var d = t.dims
                if flag { d.swapAt(d.count - 1, d.count - 2) }
                return d
            }
            return try Op.matmul.inferTypes([TensorType(inputs[0].dtype, Shape(swapped(inputs[0], ta))), TensorType(inputs[1].dtype, Shape(swapped(inputs[1], tb)))], node: node)
        case .convFused(let c, let f):
            let extra = (f.hasBias ? 1 : 0) + (f.prologue != nil ? 2 : 0)
            try arity((2 + extra + f.residualCount)...(2 + extra + f.residualCount))
            var base = Array(inputs[0..<(2 + (f.hasBias ? 1 : 0))])
            if f.upsampleNearest {
                guard inputs[0].rank == 4, f.prologue == nil else { throw fail("an upsampling convolution takes an NCHW input and no prologue") }
                let d = inputs[0].dims
                base[0] = TensorType(inputs[0].dtype, Shape([d[0], d[1], 2 * d[2], 2 * d[3]]))
            }
            let out = try Op.conv(c).inferTypes(base, node: node)[0]
            if let p = f.prologue {
                let s = inputs[2 + (f.hasBias ? 1 : 0)], b = inputs[3 + (f.hasBias ? 1 : 0)]
                guard inputs[0].dims[1] % p.groups == 0, s.dims == [inputs[0].dims[1]], b.dims == [inputs[0].dims[1]] else {
                    throw fail("group norm prologue does not fit the input \(inputs[0].shape)")
                }
            }
            try Self.checkEpilogueOperands(Array(inputs.suffix(f.residualCount)), f.epilogue, out: out, fail: fail)
            return [out]
        case .linearFused(let f):
            let count = f.operandCount + f.residualCount
            try arity(count...count)
            let (x, w) = (inputs[0], inputs[1])
            guard w.rank == 2 else { throw fail("linear weight must be [out, in], got \(w.shape)") }
            let (n, k) = (w.dims[0], w.dims[1])
            var out: TensorType
            if f.gathersInput {
                guard k > 0, x.count % k == 0 else { throw fail("gathered input \(x.shape) is not a whole number of rows of \(k)") }
                let rows = x.count / k
                for (t, len, what) in [(inputs[f.inputTables], rows, "row"), (inputs[f.inputTables + 1], k, "column")]
                    where t.dtype != .i32 || t.dims != [len] { throw fail("input \(what) table must be i32 [\(len)], got \(t)") }
                guard let shape = f.outputShape else { throw fail("a gathered linear states its output shape") }
                out = TensorType(x.dtype, Shape(shape))
                if f.hasBias, inputs[2].dims != [n] { throw fail("linear bias must be [\(n)], got \(inputs[2].shape)") }
            } else {
                out = try Op.linear.inferTypes(Array(inputs[0..<f.normOperands]), node: node)[0]
                if let shape = f.outputShape { out = TensorType(out.dtype, Shape(shape)) }
            }
            let rows = x.count / max(k, 1)
            if f.geglu {
                guard !f.gathersInput, !f.scattersOutput, f.outputShape == nil, n % 2 == 0 else {
                    throw fail("a GEGLU linear has an even number of outputs and no layouts")
                }
                out = TensorType(out.dtype, Shape(out.dims.dropLast() + [n / 2]))
            }
            guard out.count == rows * (f.geglu ? n / 2 : n) else { throw fail("output shape \(out.shape) does not hold \(rows) × \(n) results") }
            if f.scattersOutput {
                guard f.outputShape != nil else { throw fail("a scattering linear states its output shape") }
                for (t, len, what) in [(inputs[f.outputTables], rows, "row"), (inputs[f.outputTables + 1], n, "column")]
                    where t.dtype != .i32 || t.dims != [len] { throw fail("output \(what) table must be i32 [\(len)], got \(t)") }
            }
            if f.layerNorm != nil {
                for t in inputs[f.normOperands..<f.inputTables] where t.dims != [k] {
                    throw fail("layer norm prologue parameters must be [\(k)], got \(t.shape)")
                }
            }
            try Self.checkEpilogueOperands(Array(inputs.suffix(f.residualCount)), f.epilogue, out: out, fail: fail)
            return [out]
        case .attention(let a):
            try arity((3 + a.biasCount)...(3 + a.biasCount))
            let (q, k, v) = (inputs[0], inputs[1], inputs[2])
            let kt = a.keysTransposed ? k : TensorType(k.dtype, Shape(Array(k.dims.dropLast(2)) + [k.dims.last!, k.dims[k.rank - 2]]))
            let scores = try Op.matmul.inferTypes([q, kt], node: node)[0]
            for b in inputs.dropFirst(3) where broadcastShapes([scores.dims, b.dims]) != scores.dims {
                throw fail("bias \(b.shape) does not broadcast to the scores \(scores.shape)")
            }
            return try Op.matmul.inferTypes([scores, v], node: node)
        case .geglu:
            try arity(1...1)
            guard let last = inputs[0].dims.last, last % 2 == 0 else { throw fail("the last axis must be even") }
            return [TensorType(inputs[0].dtype, Shape(inputs[0].dims.dropLast() + [last / 2]))]
        case .scatterND:
            try arity(3...3)
            let (data, idx, upd) = (inputs[0], inputs[1], inputs[2])
            guard [.i64, .i32].contains(idx.dtype), let k = idx.dims.last, k <= data.rank else { throw fail("indices must be integer [..., k] with k ≤ \(data.rank)") }
            try same(data, upd, "data and updates")
            guard upd.dims == Array(idx.dims.dropLast()) + Array(data.dims[k...]) else { throw fail("updates \(upd.shape) do not match indices \(idx.shape) into \(data.shape)") }
            return [data]
        }
    }
}
