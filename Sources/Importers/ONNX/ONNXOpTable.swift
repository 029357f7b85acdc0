import IR
import Tensors

/// How one ONNX op type becomes IR: `since` is the oldest opset whose semantics the converter
/// implements (newer versions of these ops only added element types).
struct ONNXOpRule {
    let since: Int
    let convert: @Sendable (inout ImportContext, ONNXNode) throws -> Void
}

extension ImportContext {
    /// Converts one node through the op table.
    mutating func convert(_ node: ONNXNode) throws {
        let domain = node.domain == "ai.onnx" ? "" : node.domain
        guard domain.isEmpty else { throw ImportFailure("operator domain '\(node.domain)' is not supported") }
        guard let rule = ONNXOps.table[node.opType] else {
            throw ImportFailure("unsupported operator \(node.opType) (opset \(opset)); supported: \(ONNXOps.table.keys.sorted().joined(separator: ", "))")
        }
        guard opset >= rule.since else { throw ImportFailure("\(node.opType) is read from opset \(rule.since) on; the model has opset \(opset)") }
        try rule.convert(&self, node)
    }
}

enum ONNXOps {
    static func unary(_ u: UnaryOp) -> ONNXOpRule {
        ONNXOpRule(since: 13) { c, n in try c.bind1(n, c.add1(.unary(u), [c.required(n, 0)], name: n.name)) }
    }

    static func binary(_ b: BinaryOp) -> ONNXOpRule {
        ONNXOpRule(since: 13) { c, n in
            let x = try c.required(n, 0)
            var y = try c.required(n, 1)
            // Pow allows an exponent of another type: cast it to the base's.
            if b == .pow, c.graph.type(y).dtype != c.graph.type(x).dtype {
                y = try c.add1(.cast(c.graph.type(x).dtype), [y], name: n.name + ":exponent")
            }
            if b == .mod, try n.int("fmod", 0) == 1 { return try c.bind1(n, c.add1(.binary(.fmod), [x, y], name: n.name)) }
            try c.bind1(n, c.add1(.binary(b), [x, y], name: n.name))
        }
    }

    /// Max, Min, Sum, Mean of any number of inputs.
    static func variadic(_ b: BinaryOp, mean: Bool = false) -> ONNXOpRule {
        ONNXOpRule(since: 13) { c, n in
            let operands = try n.inputs.filter { !$0.isEmpty }.map { name throws(ImportFailure) in try c.value(name) }
            guard var acc = operands.first else { throw ImportFailure("needs at least one input") }
            for (k, v) in operands.dropFirst().enumerated() { acc = try c.add1(.binary(b), [acc, v], name: "\(n.name):\(k)") }
            if mean {
                let count = c.scalar(Double(operands.count), c.graph.type(acc).dtype, name: n.name + ":count")
                acc = try c.add1(.binary(.div), [acc, count], name: n.name)
            }
            try c.bind1(n, acc)
        }
    }

    static func reduce(_ r: ReduceOp) -> ONNXOpRule {
        ONNXOpRule(since: 13) { c, n in
            let x = try c.required(n, 0)
            let rank = c.graph.type(x).rank
            // Axes: an input from opset 18 (ReduceSum: 13), an attribute before.
            let axesAsInput = r == .sum ? c.opset >= 13 : c.opset >= 18
            var axes: [Int] = []
            if axesAsInput { if let name = n.input(1) { axes = try c.ints(name, "axes") } } else { axes = try n.ints("axes") ?? [] }
            let keep = try n.int("keepdims", 1) == 1
            if axes.isEmpty, try n.int("noop_with_empty_axes", 0) == 1 { return try c.bind1(n, x) }
            try c.bind1(n, c.add1(.reduce(r, axes: c.normalize(axes, rank: rank).sorted(), keepDims: keep), [x], name: n.name))
        }
    }

    static let table: [String: ONNXOpRule] = {
        var t: [String: ONNXOpRule] = [:]
        let unaries: [String: UnaryOp] = [
            "Abs": .abs, "Neg": .neg, "Sqrt": .sqrt, "Reciprocal": .reciprocal, "Exp": .exp, "Log": .log, "Sin": .sin, "Cos": .cos,
            "Tan": .tan, "Tanh": .tanh, "Erf": .erf, "Sigmoid": .sigmoid, "Relu": .relu, "Floor": .floor, "Ceil": .ceil,
            "Round": .round, "Sign": .sign, "Not": .not, "Softplus": .softplus, "Softsign": .softsign, "Mish": .mish,
            "IsNaN": .isNaN, "Asin": .asin, "Acos": .acos, "Atan": .atan, "Sinh": .sinh, "Cosh": .cosh, "Asinh": .asinh,
            "Acosh": .acosh, "Atanh": .atanh,
        ]
        for (name, u) in unaries { t[name] = unary(u) }
        let binaries: [String: BinaryOp] = [
            "Add": .add, "Sub": .sub, "Mul": .mul, "Div": .div, "Pow": .pow, "Mod": .mod, "Equal": .equal, "Less": .less,
            "LessOrEqual": .lessOrEqual, "Greater": .greater, "GreaterOrEqual": .greaterOrEqual, "And": .and, "Or": .or, "Xor": .xor,
        ]
        for (name, b) in binaries { t[name] = binary(b) }
        t["Max"] = variadic(.max)
        t["Min"] = variadic(.min)
        t["Sum"] = variadic(.add)
        t["Mean"] = variadic(.add, mean: true)
        let reductions: [String: ReduceOp] = [
            "ReduceSum": .sum, "ReduceMean": .mean, "ReduceMax": .max, "ReduceMin": .min, "ReduceProd": .prod,
            "ReduceSumSquare": .sumSquare, "ReduceL1": .l1, "ReduceL2": .l2, "ReduceLogSum": .logSum, "ReduceLogSumExp": .logSumExp,
        ]
        for (name, r) in reductions { t[name] = reduce(r) }

        t["IsInf"] = ONNXOpRule(since: 13) { c, n in
            let x = try c.required(n, 0)
            let positive = try n.int("detect_positive", 1) == 1, negative = try n.int("detect_negative", 1) == 1
            var y = try c.add1(.unary(.isInf), [x], name: n.name + (positive && negative ? "" : ":any"))
            if positive != negative {
                // Keep only the infinities of the wanted sign.
                let zero = c.scalar(0, c.graph.type(x).dtype, name: n.name + ":zero")
                let sign = try c.add1(.binary(positive ? .greater : .less), [x, zero], name: n.name + ":sign")
                y = try c.add1(.binary(.and), [y, sign], name: n.name)
            } else if !positive {
                y = try c.add1(.binary(.and), [y, c.add1(.unary(.not), [y], name: n.name + ":none")], name: n.name)
            }
            try c.bind1(n, y)
        }
        t["Identity"] = ONNXOpRule(since: 13) { c, n in try c.bind1(n, c.required(n, 0)) }
        t["Dropout"] = ONNXOpRule(since: 13) { c, n in
            // Inference: the identity; a requested mask is all true.
            if let mode = n.input(2) {
                guard let m = c.constant(mode), Reference64.values(m).allSatisfy({ $0 == 0 }) else {
                    throw ImportFailure("training_mode must be a constant false (inference only)")
                }
            }
            let x = try c.required(n, 0)
            let mask = c.graph.addConstant(Reference64.tensor([Double](repeating: 1, count: c.graph.type(x).count), .bool, c.graph.type(x).shape), name: n.name + ":mask")
            try c.bind(n, [x, mask])
        }
        t["LeakyRelu"] = ONNXOpRule(since: 13) { c, n in
            try c.bind1(n, c.add1(.leakyRelu(alpha: n.float("alpha", 0.01)), [c.required(n, 0)], name: n.name))
        }
        t["Elu"] = ONNXOpRule(since: 13) { c, n in try c.bind1(n, c.add1(.elu(alpha: n.float("alpha", 1)), [c.required(n, 0)], name: n.name)) }
        t["HardSigmoid"] = ONNXOpRule(since: 13) { c, n in
            try c.bind1(n, c.add1(.hardSigmoid(alpha: n.float("alpha", 0.2), beta: n.float("beta", 0.5)), [c.required(n, 0)], name: n.name))
        }
        t["HardSwish"] = ONNXOpRule(since: 14) { c, n in
            let x = try c.required(n, 0)
            let h = try c.add1(.hardSigmoid(alpha: 1.0 / 6, beta: 0.5), [x], name: n.name + ":gate")
            try c.bind1(n, c.add1(.binary(.mul), [x, h], name: n.name))
        }
        t["Swish"] = ONNXOpRule(since: 24) { c, n in
            let x = try c.required(n, 0)
            let alpha = try n.float("alpha", 1)
            if alpha == 1 { return try c.bind1(n, c.add1(.unary(.silu), [x], name: n.name)) }
            let a = c.scalar(Double(alpha), c.graph.type(x).dtype, name: n.name + ":alpha")
            let s = try c.add1(.unary(.sigmoid), [c.add1(.binary(.mul), [x, a], name: n.name + ":scaled")], name: n.name + ":gate")
            try c.bind1(n, c.add1(.binary(.mul), [x, s], name: n.name))
        }
        t["Gelu"] = ONNXOpRule(since: 20) { c, n in
            let approximate = try n.string("approximate", "none")
            guard let g = GeluApproximation(rawValue: approximate) else { throw ImportFailure("approximate '\(approximate)' is not none or tanh") }
            try c.bind1(n, c.add1(.gelu(g), [c.required(n, 0)], name: n.name))
        }
        t["Clip"] = ONNXOpRule(since: 13) { c, n in
            let x = try c.required(n, 0)
            let lo = try n.input(1).map { name throws(ImportFailure) in try c.doubles(name, "min")[0] } ?? -.infinity
            let hi = try n.input(2).map { name throws(ImportFailure) in try c.doubles(name, "max")[0] } ?? .infinity
            try c.bind1(n, c.add1(.clip(min: Float(lo), max: Float(hi)), [x], name: n.name))
        }
        t["Where"] = ONNXOpRule(since: 13) { c, n in
            try c.bind1(n, c.add1(.select, [c.required(n, 0), c.required(n, 1), c.required(n, 2)], name: n.name))
        }
        t["Cast"] = ONNXOpRule(since: 13) { c, n in
            let code = Int32(try n.int("to", 0))
            guard let d = ONNXType.toDType[code] else { throw ImportFailure("cast to \(ONNXType.name(code)) is not supported") }
            try c.bind1(n, c.add1(.cast(d), [c.required(n, 0)], name: n.name))
        }
        t["CastLike"] = ONNXOpRule(since: 15) { c, n in
            let d = c.graph.type(try c.required(n, 1)).dtype
            try c.bind1(n, c.add1(.cast(d), [c.required(n, 0)], name: n.name))
        }
        t["Softmax"] = ONNXOpRule(since: 13) { c, n in try c.bind1(n, c.add1(.softmax(axis: n.int("axis", -1)), [c.required(n, 0)], name: n.name)) }
        t["LogSoftmax"] = ONNXOpRule(since: 13) { c, n in try c.bind1(n, c.add1(.logSoftmax(axis: n.int("axis", -1)), [c.required(n, 0)], name: n.name)) }
        t["LayerNormalization"] = ONNXOpRule(since: 17, convert: layerNormalization)
        t["GroupNormalization"] = ONNXOpRule(since: 18) { c, n in
            let x = try c.required(n, 0)
            let xt = c.graph.type(x)
            let groups = try n.int("num_groups", 0)
            var scale = try c.required(n, 1), bias = try c.required(n, 2)
            let channels = xt.rank >= 2 ? xt.dims[1] : 0
            guard groups > 0, channels % groups == 0 else { throw ImportFailure("\(channels) channels in \(groups) groups") }
            if c.opset < 21 {
                // Opset 18-20: scale and bias are per group; repeat them per channel.
                let perGroup = channels / groups
                for v in [scale, bias] where c.graph.type(v).dims != [groups] {
                    throw ImportFailure("scale/bias must be [\(groups)] at opset \(c.opset), got \(c.graph.type(v).shape)")
                }
                func perChannel(_ v: ValueID, _ what: String, _ c: inout ImportContext) throws -> ValueID {
                    let r = try c.add1(.reshape([groups, 1]), [v], name: n.name + ":" + what)
                    let e = try c.add1(.expand([groups, perGroup]), [r], name: n.name + ":" + what + "_expand")
                    return try c.add1(.reshape([channels]), [e], name: n.name + ":" + what + "_channels")
                }
                scale = try perChannel(scale, "scale", &c)
                bias = try perChannel(bias, "bias", &c)
            }
            try c.bind1(n, c.add1(.groupNorm(groups: groups, epsilon: n.float("epsilon", 1e-5)), [x, scale, bias], name: n.name))
        }
        t["InstanceNormalization"] = ONNXOpRule(since: 13) { c, n in
            try c.bind1(n, c.add1(.instanceNorm(epsilon: n.float("epsilon", 1e-5)), [c.required(n, 0), c.required(n, 1), c.required(n, 2)], name: n.name))
        }
        t["BatchNormalization"] = ONNXOpRule(since: 14) { c, n in
            guard try n.int("training_mode", 0) == 0 else { throw ImportFailure("training_mode = 1 is not supported (inference only)") }
            let inputs = try (0..<5).map { i throws(ImportFailure) in try c.required(n, i) }
            try c.bind1(n, c.add1(.batchNorm(epsilon: n.float("epsilon", 1e-5)), inputs, name: n.name))
        }
        t["MatMul"] = ONNXOpRule(since: 13) { c, n in try c.bind1(n, c.add1(.matmul, [c.required(n, 0), c.required(n, 1)], name: n.name)) }
        t["Gemm"] = ONNXOpRule(since: 13, convert: gemm)
        t["Conv"] = ONNXOpRule(since: 11, convert: conv)
        t["ConvTranspose"] = ONNXOpRule(since: 11, convert: convTranspose)
        t["Einsum"] = ONNXOpRule(since: 12) { c, n in
            let operands = try n.inputs.map { name throws(ImportFailure) in try c.value(name) }
            try c.bind1(n, c.add1(.einsum(n.string("equation", "")), operands, name: n.name))
        }

        t["Reshape"] = ONNXOpRule(since: 13) { c, n in
            let x = try c.required(n, 0)
            let dims = c.graph.type(x).dims
            var target = try c.ints(n.input(1) ?? "", "shape")
            let allowZero = try n.int("allowzero", 0) == 1
            for i in target.indices where target[i] == 0 && !allowZero {
                guard i < dims.count else { throw ImportFailure("shape entry \(i) is 0 (copy) but the input has rank \(dims.count)") }
                target[i] = dims[i]
            }
            if let m = target.firstIndex(of: -1) {
                let known = target.enumerated().filter { $0.offset != m }.map(\.element).reduce(1, *)
                guard known > 0, dims.reduce(1, *) % known == 0 else { throw ImportFailure("cannot infer -1 in \(target) for \(Shape(dims))") }
                target[m] = dims.reduce(1, *) / known
            }
            try c.bind1(n, c.add1(.reshape(Shape(target)), [x], name: n.name))
        }
        t["Flatten"] = ONNXOpRule(since: 13) { c, n in
            let x = try c.required(n, 0)
            let dims = c.graph.type(x).dims
            var axis = try n.int("axis", 1)
            if axis < 0 { axis += dims.count }
            guard (0...dims.count).contains(axis) else { throw ImportFailure("axis out of range") }
            try c.bind1(n, c.add1(.reshape([dims[..<axis].reduce(1, *), dims[axis...].reduce(1, *)]), [x], name: n.name))
        }
        t["Squeeze"] = ONNXOpRule(since: 13) { c, n in
            let x = try c.required(n, 0)
            let dims = c.graph.type(x).dims
            let axes = try n.input(1).map { name throws(ImportFailure) in try c.normalize(c.ints(name, "axes"), rank: dims.count) }
                ?? dims.indices.filter { dims[$0] == 1 }
            for a in axes where dims[a] != 1 { throw ImportFailure("cannot squeeze axis \(a) of size \(dims[a])") }
            try c.bind1(n, c.add1(.reshape(Shape(dims.indices.filter { !axes.contains($0) }.map { dims[$0] })), [x], name: n.name))
        }
        t["Unsqueeze"] = ONNXOpRule(since: 13) { c, n in
            let x = try c.required(n, 0)
            let dims = c.graph.type(x).dims
            let raw = try c.ints(n.input(1) ?? "", "axes")
            let axes = try c.normalize(raw, rank: dims.count + raw.count)
            var out: [Int] = []
            var it = dims.makeIterator()
            for i in 0..<(dims.count + axes.count) { out.append(axes.contains(i) ? 1 : it.next()!) }
            try c.bind1(n, c.add1(.reshape(Shape(out)), [x], name: n.name))
        }
        t["Transpose"] = ONNXOpRule(since: 13) { c, n in
            let x = try c.required(n, 0)
            let rank = c.graph.type(x).rank
            let perm = try n.ints("perm") ?? Array((0..<rank).reversed())
            try c.bind1(n, c.add1(.transpose(perm), [x], name: n.name))
        }
        t["Concat"] = ONNXOpRule(since: 13) { c, n in
            let operands = try n.inputs.filter { !$0.isEmpty }.map { name throws(ImportFailure) in try c.value(name) }
            try c.bind1(n, c.add1(.concat(axis: n.int("axis", 0)), operands, name: n.name))
        }
        t["Split"] = ONNXOpRule(since: 13) { c, n in
            let x = try c.required(n, 0)
            let dims = c.graph.type(x).dims
            let axis = try c.normalize([n.int("axis", 0)], rank: dims.count)[0]
            let outputs = n.outputs.count
            var sizes: [Int]
            if let name = n.input(1) {
                sizes = try c.ints(name, "split")
            } else if c.opset >= 18, let count = try n.attr("num_outputs", [.int])?.i {
                let chunk = (dims[axis] + count - 1) / count
                sizes = (0..<count).map { min(chunk, max(0, dims[axis] - $0 * chunk)) }
            } else {
                guard dims[axis] % outputs == 0 else { throw ImportFailure("\(dims[axis]) does not split evenly into \(outputs)") }
                sizes = [Int](repeating: dims[axis] / outputs, count: outputs)
            }
            try c.bind(n, c.add(.split(axis: axis, sizes: sizes), [x], name: n.name))
        }
        t["Slice"] = ONNXOpRule(since: 13, convert: slice)
        t["Pad"] = ONNXOpRule(since: 13) { c, n in
            let x = try c.required(n, 0)
            let rank = c.graph.type(x).rank
            let modeName = try n.string("mode", "constant")
            guard let mode = PadMode(rawValue: modeName) else { throw ImportFailure("mode '\(modeName)' is not supported") }
            let given = try c.ints(n.input(1) ?? "", "pads")
            let value = try n.input(2).map { name throws(ImportFailure) in try c.doubles(name, "constant_value").first ?? 0 } ?? 0
            var pads = [Int](repeating: 0, count: 2 * rank)
            if let axesName = n.input(3) {
                let axes = try c.normalize(c.ints(axesName, "axes"), rank: rank)
                guard given.count == 2 * axes.count else { throw ImportFailure("pads has \(given.count) entries for \(axes.count) axes") }
                for (k, a) in axes.enumerated() { pads[a] = given[k]; pads[a + rank] = given[k + axes.count] }
            } else {
                guard given.count == 2 * rank else { throw ImportFailure("pads has \(given.count) entries for rank \(rank)") }
                pads = given
            }
            try c.bind1(n, c.add1(.pad(mode: mode, pads: pads, value: Float(value)), [x], name: n.name))
        }
        t["Gather"] = ONNXOpRule(since: 13) { c, n in
            try c.bind1(n, c.add1(.gather(axis: n.int("axis", 0)), [c.required(n, 0), c.required(n, 1)], name: n.name))
        }
        t["Expand"] = ONNXOpRule(since: 13) { c, n in
            let x = try c.required(n, 0)
            let shape = try c.ints(n.input(1) ?? "", "shape")
            guard let out = broadcastShapes([c.graph.type(x).dims, shape]) else { throw ImportFailure("cannot expand \(c.graph.type(x).shape) to \(shape)") }
            try c.bind1(n, c.add1(.expand(Shape(out)), [x], name: n.name))
        }
        t["Tile"] = ONNXOpRule(since: 13) { c, n in
            try c.bind1(n, c.add1(.tile(c.ints(n.input(1) ?? "", "repeats")), [c.required(n, 0)], name: n.name))
        }
        t["Resize"] = ONNXOpRule(since: 13, convert: resize)
        t["DepthToSpace"] = ONNXOpRule(since: 13) { c, n in
            let mode = try n.string("mode", "DCR")
            guard mode == "DCR" || mode == "CRD" else { throw ImportFailure("mode '\(mode)' is not DCR or CRD") }
            try c.bind1(n, c.add1(.depthToSpace(blockSize: n.int("blocksize", 0), order: mode == "CRD" ? .crd : .dcr), [c.required(n, 0)], name: n.name))
        }
        t["SpaceToDepth"] = ONNXOpRule(since: 13) { c, n in
            let mode = try n.string("mode", "DCR")
            guard mode == "DCR" || mode == "CRD" else { throw ImportFailure("mode '\(mode)' is not DCR or CRD") }
            try c.bind1(n, c.add1(.spaceToDepth(blockSize: n.int("blocksize", 0), order: mode == "CRD" ? .crd : .dcr), [c.required(n, 0)], name: n.name))
        }
        t["ArgMax"] = ONNXOpRule(since: 13) { c, n in
            try c.bind1(n, c.add1(.argExtreme(max: true, axis: n.int("axis", 0), keepDims: n.int("keepdims", 1) == 1,
                                              selectLastIndex: n.int("select_last_index", 0) == 1), [c.required(n, 0)], name: n.name))
        }
        t["ArgMin"] = ONNXOpRule(since: 13) { c, n in
            try c.bind1(n, c.add1(.argExtreme(max: false, axis: n.int("axis", 0), keepDims: n.int("keepdims", 1) == 1,
                                              selectLastIndex: n.int("select_last_index", 0) == 1), [c.required(n, 0)], name: n.name))
        }
        t["Trilu"] = ONNXOpRule(since: 14) { c, n in
            let k = try n.input(1).map { name throws(ImportFailure) in try c.ints(name, "k").first ?? 0 } ?? 0
            try c.bind1(n, c.add1(.trilu(upper: n.int("upper", 1) == 1, k: k), [c.required(n, 0)], name: n.name))
        }
        t["CumSum"] = ONNXOpRule(since: 14) { c, n in
            let axis = try c.ints(n.input(1) ?? "", "axis").first ?? 0
            try c.bind1(n, c.add1(.cumsum(axis: axis, exclusive: n.int("exclusive", 0) == 1, reverse: n.int("reverse", 0) == 1),
                                  [c.required(n, 0)], name: n.name))
        }

        t["ScatterND"] = ONNXOpRule(since: 13) { c, n in
            let name = try n.string("reduction", "none")
            guard let r = ScatterReduction(rawValue: name) else { throw ImportFailure("reduction '\(name)' is not supported") }
            try c.bind1(n, c.add1(.scatterND(r), [c.required(n, 0), c.required(n, 1), c.required(n, 2)], name: n.name))
        }

        // Shape arithmetic: static shapes make these constants.
        t["Shape"] = ONNXOpRule(since: 13) { c, n in
            let dims = c.graph.type(try c.required(n, 0)).dims
            var start = try n.int("start", 0), end = try n.int("end", dims.count)
            if start < 0 { start += dims.count }
            if end < 0 { end += dims.count }
            start = min(max(start, 0), dims.count)
            end = min(max(end, start), dims.count)
            try c.bind1(n, c.constant(dims[start..<end].map(Double.init), .i64, name: n.name))
        }
        t["Size"] = ONNXOpRule(since: 13) { c, n in
            try c.bind1(n, c.constant([Double(c.graph.type(try c.required(n, 0)).count)], .i64, [], name: n.name))
        }
        t["ConstantOfShape"] = ONNXOpRule(since: 9) { c, n in
            let shape = try c.ints(n.input(0) ?? "", "shape")
            var value = 0.0
            var dtype = DType.f32
            if let v = try n.attr("value", [.tensor])?.t {
                guard let d = ONNXType.toDType[v.dataType] else { throw ImportFailure("value type \(ONNXType.name(v.dataType)) is not supported") }
                dtype = d
                value = Reference64.values(try c.tensor(v, what: "value of \(n.name)")).first ?? 0
            }
            guard let count = Shape.checkedCount(shape), count <= ImportContext.maxFoldedBytes / max(dtype.byteSize, 8) else {
                throw ImportFailure("shape \(shape) is negative or larger than \(ImportContext.maxFoldedBytes >> 20) MB")
            }
            try c.bind1(n, c.constant([Double](repeating: value, count: count), dtype, Shape(shape), name: n.name))
        }
        t["Constant"] = ONNXOpRule(since: 13) { c, n in
            guard let a = n.attributes.first else { throw ImportFailure("has no value") }
            let value: ValueID
            switch a.name {
            case "value": value = c.graph.addConstant(try c.tensor(a.t ?? ONNXTensor(name: "", dataType: 0, dims: []), what: "value of \(n.name)"), name: n.name)
            case "value_float": value = c.constant([Double(a.f)], .f32, [], name: n.name)
            case "value_floats": value = c.constant(a.floats.map(Double.init), .f32, name: n.name)
            case "value_int": value = c.constant([Double(a.i)], .i64, [], name: n.name)
            case "value_ints":
                value = c.graph.addConstant(Tensor(dtype: .i64, shape: [a.ints.count], storage: {
                    let s = TensorStorage(byteCount: a.ints.count * 8)
                    a.ints.map { Int64($0) }.withUnsafeBytes { s.mutableBytes!.copyMemory(from: $0) }
                    return s
                }()), name: n.name)
            default: throw ImportFailure("constant attribute '\(a.name)' is not supported")
            }
            try c.bind1(n, value)
        }
        t["Range"] = ONNXOpRule(since: 11) { c, n in
            let start = try c.doubles(n.input(0) ?? "", "start")[0], limit = try c.doubles(n.input(1) ?? "", "limit")[0]
            let delta = try c.doubles(n.input(2) ?? "", "delta")[0]
            guard delta != 0, start.isFinite, limit.isFinite, delta.isFinite else { throw ImportFailure("start, limit and delta must be finite, delta not 0") }
            let steps = ((limit - start) / delta).rounded(.up)
            guard steps.isFinite, steps <= Double(ImportContext.maxFoldedBytes / 8) else {
                throw ImportFailure("\(steps) values is more than \(ImportContext.maxFoldedBytes >> 20) MB")
            }
            let count = max(0, Int(steps))
            let dtype = c.graph.type(try c.required(n, 0)).dtype
            try c.bind1(n, c.constant((0..<count).map { start + Double($0) * delta }, dtype, name: n.name))
        }
        return t
    }()
}
