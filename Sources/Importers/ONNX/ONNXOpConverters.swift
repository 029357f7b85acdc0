import IR
import Tensors

extension ONNXOps {
    /// LayerNormalization, with the optional Mean and InvStdDev outputs built from IR ops.
    static func layerNormalization(_ c: inout ImportContext, _ n: ONNXNode) throws {
        let x = try c.required(n, 0), scale = try c.required(n, 1)
        let bias = try n.input(2).map { name throws(ImportFailure) in try c.value(name) }
        let xt = c.graph.type(x)
        let axis = try c.normalize([n.int("axis", -1)], rank: xt.rank)[0]
        let epsilon = try n.float("epsilon", 1e-5)
        let y = try c.add1(.layerNorm(axis: axis, epsilon: epsilon), [x, scale] + (bias.map { [$0] } ?? []), name: n.name)
        var outputs = [y]
        if n.outputs.count > 1 {
            let axes = Array(axis..<xt.rank)
            let mean = try c.add1(.reduce(.mean, axes: axes, keepDims: true), [x], name: n.name + ":mean")
            let centered = try c.add1(.binary(.sub), [x, mean], name: n.name + ":centered")
            let squared = try c.add1(.binary(.mul), [centered, centered], name: n.name + ":squared")
            let variance = try c.add1(.reduce(.mean, axes: axes, keepDims: true), [squared], name: n.name + ":variance")
            let eps = c.scalar(Double(epsilon), xt.dtype, name: n.name + ":epsilon")
            let std = try c.add1(.unary(.sqrt), [c.add1(.binary(.add), [variance, eps], name: n.name + ":var_eps")], name: n.name + ":std")
            outputs += [mean, try c.add1(.unary(.reciprocal), [std], name: n.name + ":inv_std")]
        }
        try c.bind(n, outputs)
    }

    /// Gemm → `linear` when it is one (`transB`, α = β = 1, bias per output), else matmul + scales + add.
    static func gemm(_ c: inout ImportContext, _ n: ONNXNode) throws {
        var a = try c.required(n, 0), b = try c.required(n, 1)
        let bias = try n.input(2).map { name throws(ImportFailure) in try c.value(name) }
        let alpha = try n.float("alpha", 1), beta = try n.float("beta", 1)
        let transA = try n.int("transA", 0) == 1, transB = try n.int("transB", 0) == 1
        if transA { a = try c.add1(.transpose([1, 0]), [a], name: n.name + ":a_t") }
        let outFeatures = transB ? c.graph.type(b).dims[0] : c.graph.type(b).dims[1]
        let dtype = c.graph.type(a).dtype
        if alpha == 1, beta == 1 {
            if !transB { b = try c.add1(.transpose([1, 0]), [b], name: n.name + ":b_t") }
            var linearBias: ValueID?
            if let bias {
                let bt = c.graph.type(bias)
                if bt.count == outFeatures, bt.dims.last == outFeatures || bt.count == 1 && outFeatures == 1 {
                    linearBias = bt.rank == 1 ? bias : try c.add1(.reshape([outFeatures]), [bias], name: n.name + ":bias")
                } else {
                    let y = try c.add1(.linear, [a, b], name: n.name + ":product")
                    return try c.bind1(n, c.add1(.binary(.add), [y, bias], name: n.name))
                }
            }
            return try c.bind1(n, c.add1(.linear, [a, b] + (linearBias.map { [$0] } ?? []), name: n.name))
        }
        if transB { b = try c.add1(.transpose([1, 0]), [b], name: n.name + ":b_t") }
        var y = try c.add1(.matmul, [a, b], name: n.name + ":product")
        if alpha != 1 { y = try c.add1(.binary(.mul), [y, c.scalar(Double(alpha), dtype, name: n.name + ":alpha")], name: n.name + ":scaled") }
        if let bias {
            var cb = bias
            if beta != 1 { cb = try c.add1(.binary(.mul), [bias, c.scalar(Double(beta), dtype, name: n.name + ":beta")], name: n.name + ":bias") }
            y = try c.add1(.binary(.add), [y, cb], name: n.name)
        }
        try c.bind1(n, y)
    }

    /// The attributes of a convolution checked against its spatial rank before any is indexed: as many
    /// kernel dims, strides and dilations as spatial axes, twice as many pads, strides and dilations positive.
    static func checkSpatial(_ n: ONNXNode, spatial: Int, kernel: [Int], strides: [Int], dilations: [Int],
                             pads: [Int]? = nil, outputPadding: [Int]? = nil) throws(ImportFailure) {
        guard kernel.count == spatial else { throw ImportFailure("a weight of \(kernel.count) spatial dims for \(spatial)-D input") }
        guard strides.count == spatial, strides.allSatisfy({ $0 > 0 }) else { throw ImportFailure("strides \(strides) for \(spatial)-D input") }
        guard dilations.count == spatial, dilations.allSatisfy({ $0 > 0 }) else { throw ImportFailure("dilations \(dilations) for \(spatial)-D input") }
        if let pads, pads.count != 2 * spatial { throw ImportFailure("\(pads.count) pads for \(spatial)-D input") }
        if let outputPadding, outputPadding.count != spatial { throw ImportFailure("output_padding \(outputPadding) for \(spatial)-D input") }
    }

    /// The pads of `auto_pad` SAME_UPPER/SAME_LOWER/VALID, or the explicit `pads`, as [top, left, bottom, right].
    static func convPads(_ n: ONNXNode, input: [Int], kernel: [Int], strides: [Int], dilations: [Int]) throws(ImportFailure) -> [Int] {
        let autoPad = try n.string("auto_pad", "NOTSET")
        switch autoPad {
        case "NOTSET": return try n.ints("pads") ?? [Int](repeating: 0, count: 2 * kernel.count)
        case "VALID": return [Int](repeating: 0, count: 2 * kernel.count)
        case "SAME_UPPER", "SAME_LOWER":
            var begin: [Int] = [], end: [Int] = []
            for i in 0..<kernel.count {
                let out = (input[i] + strides[i] - 1) / strides[i]
                let total = max(0, (out - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 - input[i])
                let small = total / 2, large = total - total / 2
                begin.append(autoPad == "SAME_UPPER" ? small : large)
                end.append(autoPad == "SAME_UPPER" ? large : small)
            }
            return begin + end
        default: throw ImportFailure("auto_pad '\(autoPad)' is not supported")
        }
    }

    /// 1-D convolutions run as 2-D ones over a height of 1.
    static func as2D(_ c: inout ImportContext, _ v: ValueID, name: String) throws -> ValueID {
        let d = c.graph.type(v).dims
        return try c.add1(.reshape(Shape([d[0], d[1], 1, d[2]])), [v], name: name)
    }

    static func conv(_ c: inout ImportContext, _ n: ONNXNode) throws {
        var x = try c.required(n, 0), w = try c.required(n, 1)
        let bias = try n.input(2).map { name throws(ImportFailure) in try c.value(name) }
        let rank = c.graph.type(x).rank
        guard rank == 4 || rank == 3 else { throw ImportFailure("only 1-D and 2-D convolutions are supported (input rank \(rank))") }
        let spatial = rank - 2
        let kernel = Array(c.graph.type(w).dims.dropFirst(2))
        let strides = try n.ints("strides") ?? [Int](repeating: 1, count: spatial)
        let dilations = try n.ints("dilations") ?? [Int](repeating: 1, count: spatial)
        try checkSpatial(n, spatial: spatial, kernel: kernel, strides: strides, dilations: dilations)
        var pads = try convPads(n, input: Array(c.graph.type(x).dims.dropFirst(2)), kernel: kernel, strides: strides, dilations: dilations)
        try checkSpatial(n, spatial: spatial, kernel: kernel, strides: strides, dilations: dilations, pads: pads)
        var attrs = Conv2D(strides: strides, pads: pads, dilations: dilations, groups: try n.int("group", 1))
        if spatial == 1 {
            x = try as2D(&c, x, name: n.name + ":x2d")
            w = try as2D(&c, w, name: n.name + ":w2d")
            pads = [0, pads[0], 0, pads[1]]
            attrs = Conv2D(strides: [1, strides[0]], pads: pads, dilations: [1, dilations[0]], groups: attrs.groups)
            let y = try c.add1(.conv(attrs), [x, w] + (bias.map { [$0] } ?? []), name: n.name + ":2d")
            let d = c.graph.type(y).dims
            return try c.bind1(n, c.add1(.reshape(Shape([d[0], d[1], d[3]])), [y], name: n.name))
        }
        try c.bind1(n, c.add1(.conv(attrs), [x, w] + (bias.map { [$0] } ?? []), name: n.name))
    }

    static func convTranspose(_ c: inout ImportContext, _ n: ONNXNode) throws {
        var x = try c.required(n, 0), w = try c.required(n, 1)
        let bias = try n.input(2).map { name throws(ImportFailure) in try c.value(name) }
        let rank = c.graph.type(x).rank
        guard rank == 4 || rank == 3 else { throw ImportFailure("only 1-D and 2-D transposed convolutions are supported (input rank \(rank))") }
        let spatial = rank - 2
        let input = Array(c.graph.type(x).dims.dropFirst(2))
        let kernel = Array(c.graph.type(w).dims.dropFirst(2))
        let strides = try n.ints("strides") ?? [Int](repeating: 1, count: spatial)
        let dilations = try n.ints("dilations") ?? [Int](repeating: 1, count: spatial)
        var outputPadding = try n.ints("output_padding") ?? [Int](repeating: 0, count: spatial)
        var pads = try n.ints("pads") ?? [Int](repeating: 0, count: 2 * spatial)
        let autoPad = try n.string("auto_pad", "NOTSET")
        try checkSpatial(n, spatial: spatial, kernel: kernel, strides: strides, dilations: dilations, pads: pads, outputPadding: outputPadding)
        if let outputShape = try n.ints("output_shape") {
            let target = Array(outputShape.suffix(spatial))
            guard target.count == spatial else { throw ImportFailure("output_shape \(outputShape) for \(spatial)-D input") }
            var begin: [Int] = [], end: [Int] = []
            for i in 0..<spatial {
                let total = strides[i] * (input[i] - 1) + outputPadding[i] + (kernel[i] - 1) * dilations[i] + 1 - target[i]
                if total < 0 {
                    // A larger output than the kernel covers: the extra goes to output padding.
                    outputPadding[i] -= total
                    begin.append(0)
                    end.append(0)
                    continue
                }
                begin.append(autoPad == "SAME_UPPER" ? total / 2 : total - total / 2)
                end.append(autoPad == "SAME_UPPER" ? total - total / 2 : total / 2)
            }
            pads = begin + end
        } else if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
            var begin: [Int] = [], end: [Int] = []
            for i in 0..<spatial {
                let target = input[i] * strides[i]
                let total = max(0, strides[i] * (input[i] - 1) + outputPadding[i] + (kernel[i] - 1) * dilations[i] + 1 - target)
                begin.append(autoPad == "SAME_UPPER" ? total / 2 : total - total / 2)
                end.append(autoPad == "SAME_UPPER" ? total - total / 2 : total / 2)
            }
            pads = begin + end
        } else if autoPad == "VALID" {
            pads = [Int](repeating: 0, count: 2 * spatial)
        }
        let groups = try n.int("group", 1)
        if spatial == 1 {
            x = try as2D(&c, x, name: n.name + ":x2d")
            w = try as2D(&c, w, name: n.name + ":w2d")
            let attrs = ConvTranspose2D(strides: [1, strides[0]], pads: [0, pads[0], 0, pads[1]], dilations: [1, dilations[0]],
                                        groups: groups, outputPadding: [0, outputPadding[0]])
            let y = try c.add1(.convTranspose(attrs), [x, w] + (bias.map { [$0] } ?? []), name: n.name + ":2d")
            let d = c.graph.type(y).dims
            return try c.bind1(n, c.add1(.reshape(Shape([d[0], d[1], d[3]])), [y], name: n.name))
        }
        let attrs = ConvTranspose2D(strides: strides, pads: pads, dilations: dilations, groups: groups, outputPadding: outputPadding)
        try c.bind1(n, c.add1(.convTranspose(attrs), [x, w] + (bias.map { [$0] } ?? []), name: n.name))
    }

    /// Slice with ONNX's clamping: negative starts/ends count from the end; ends beyond the range
    /// clamp to it (to -1, "before the first", when walking backwards).
    static func slice(_ c: inout ImportContext, _ n: ONNXNode) throws {
        let x = try c.required(n, 0)
        let dims = c.graph.type(x).dims
        let starts = try c.ints(n.input(1) ?? "", "starts"), ends = try c.ints(n.input(2) ?? "", "ends")
        let axes = try n.input(3).map { name throws(ImportFailure) in try c.normalize(c.ints(name, "axes"), rank: dims.count) } ?? Array(0..<starts.count)
        let steps = try n.input(4).map { name throws(ImportFailure) in try c.ints(name, "steps") } ?? [Int](repeating: 1, count: starts.count)
        guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else {
            throw ImportFailure("starts, ends, axes and steps differ in length")
        }
        var spec = SliceSpec(starts: [Int](repeating: 0, count: dims.count), ends: dims, steps: [Int](repeating: 1, count: dims.count))
        for (k, a) in axes.enumerated() {
            let d = dims[a], step = steps[k]
            guard step != 0 else { throw ImportFailure("step 0 on axis \(a)") }
            var b = starts[k], e = ends[k]
            if b < 0 { b = b < -d ? -d - 1 : b; b += d }
            if e < 0 { e = e < -d ? -d - 1 : e; e += d }
            if step > 0 {
                b = min(max(b, 0), d)
                e = min(max(e, 0), d)
            } else {
                b = min(max(b, 0), d - 1)
                e = min(max(e, -1), d - 1)
            }
            spec.starts[a] = b
            spec.ends[a] = e
            spec.steps[a] = step
        }
        try c.bind1(n, c.add1(.slice(spec), [x], name: n.name))
    }

    static func resize(_ c: inout ImportContext, _ n: ONNXNode) throws {
        let x = try c.required(n, 0)
        let dims = c.graph.type(x).dims
        let rank = dims.count
        let axes = try c.normalize(n.ints("axes") ?? Array(0..<rank), rank: rank)
        let modeName = try n.string("mode", "nearest")
        guard let mode = Resize.Mode(rawValue: modeName) else { throw ImportFailure("mode '\(modeName)' is not supported") }
        let transformName = try n.string("coordinate_transformation_mode", "half_pixel")
        guard let transform = Resize.CoordinateTransform(rawValue: transformName) else { throw ImportFailure("coordinate_transformation_mode '\(transformName)' is not supported") }
        let nearestName = try n.string("nearest_mode", "round_prefer_floor")
        guard let nearest = Resize.NearestMode(rawValue: nearestName) else { throw ImportFailure("nearest_mode '\(nearestName)' is not supported") }
        var scales = [Double](repeating: 1, count: rank)
        var sizes = dims
        var roi: [Double] = []
        if let name = n.input(1), transform == .tfCropAndResize {
            let given = try c.doubles(name, "roi")
            if given.count == 2 * axes.count {
                roi = (0..<rank).map { _ in 0.0 } + (0..<rank).map { _ in 1.0 }
                for (k, a) in axes.enumerated() { roi[a] = given[k]; roi[a + rank] = given[k + axes.count] }
            } else if given.count == 2 * rank {
                roi = given
            }
        }
        if let name = n.input(2), let t = c.constant(name), t.count > 0 {
            let given = Reference64.values(t)
            guard given.count == axes.count else { throw ImportFailure("\(given.count) scales for \(axes.count) axes") }
            for (k, a) in axes.enumerated() {
                scales[a] = given[k]
                guard let size = Checked.size((Double(dims[a]) * Double(Float(given[k]))).rounded(.down)) else {
                    throw ImportFailure("scale \(given[k]) of an axis of \(dims[a]) gives no valid size")
                }
                sizes[a] = size
            }
        } else if let name = n.input(3) {
            let given = try c.ints(name, "sizes")
            guard given.count == axes.count else { throw ImportFailure("\(given.count) sizes for \(axes.count) axes") }
            let policy = try n.string("keep_aspect_ratio_policy", "stretch")
            var perAxis = axes.enumerated().map { Double(given[$0.offset]) / Double(dims[$0.element]) }
            if policy != "stretch" {
                let s = policy == "not_larger" ? perAxis.min()! : perAxis.max()!
                perAxis = [Double](repeating: s, count: axes.count)
                for (k, a) in axes.enumerated() {
                    guard let size = Checked.size((s * Double(dims[a])).rounded(.toNearestOrAwayFromZero)) else {
                        throw ImportFailure("sizes \(given) for \(dims) give no valid size")
                    }
                    sizes[a] = size
                    scales[a] = perAxis[k]
                }
            } else {
                for (k, a) in axes.enumerated() { sizes[a] = given[k]; scales[a] = perAxis[k] }
            }
        } else if let name = n.input(2) {
            throw ImportFailure("scales must be a constant, but '\(name)' is computed at run time", value: name)
        } else {
            throw ImportFailure("needs scales or sizes")
        }
        let attrs = Resize(mode: mode, coordinateTransform: transform, nearestMode: nearest, cubicCoeffA: try n.float("cubic_coeff_a", -0.75),
                           excludeOutside: try n.int("exclude_outside", 0) == 1, antialias: try n.int("antialias", 0) == 1,
                           sizes: sizes, scales: scales, roi: roi, extrapolationValue: try n.float("extrapolation_value", 0))
        try c.bind1(n, c.add1(.resize(attrs), [x], name: n.name))
    }
}
