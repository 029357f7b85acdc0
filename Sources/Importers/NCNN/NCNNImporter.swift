import IR
import Tensors

/// An imported ncnn model: the IR graph and what the files held.
public struct NCNNImport: Sendable {
    public var graph: Graph
    public var params: NCNNParamFile
    /// Layer count by type, as in the `.param` file.
    public var layerTypes: [(type: String, count: Int)]
    /// Bytes of the `.bin` file by storage form.
    public var weightBytes: [(storage: NCNNStorage, bytes: Int)]
    /// The weights in the order the layers read them, with the layer that owns each
    /// (`LAYER.weight`, `LAYER.bias`, `LAYER.slope`), as f32.
    public var weights: [(name: String, tensor: Tensor, layer: String, type: String)]
    /// The IR value of each blob, by name.
    public var blobs: [String: ValueID]
}

/// ncnn (`.param` + `.bin`) → IR.
///
/// ncnn blobs have no batch axis: a blob of `dims` 3 (`c, h, w`) becomes an IR value `[1, c, h, w]`,
/// `dims` 2 (`h, w`) `[1, h, w]`, `dims` 1 (`w`) `[1, w]`; an ncnn axis `a` is IR axis `a + 1`.
/// Blobs that no layer reads are the graph's outputs. Input layers need a static shape: from their
/// parameters (`0=w 1=h 2=c`) or from `shapes` (by blob name, with the batch axis: `1,3,H,W`).
///
/// Layers read: Input, Convolution, ConvolutionDepthWise, Deconvolution, DeconvolutionDepthWise
/// (with the fused activations `9=`/`-23310=`), InnerProduct, Eltwise, BinaryOp, UnaryOp, Interp,
/// PixelShuffle, Split, Concat, Crop, Padding, Pooling, ReLU, PReLU, Sigmoid, TanH, Swish, Mish,
/// Clip, HardSigmoid, HardSwish, ELU, Softmax, Reshape, Permute, Flatten, Noop, Dropout. Anything
/// else is refused with the layer's line and type.
public enum NCNNImporter {
    /// `assumeShapes`: inputs without a shape in the file or in `shapes` get `assumedInputShapes`.
    public static func load(param: String, bin: String, shapes: [String: [Int]] = [:], assumeShapes: Bool = false) throws(CheckpointError) -> NCNNImport {
        let text: String
        do {
            let f = try MappedFile(path: param)
            guard f.size <= 64 << 20 else { throw CheckpointError(param, "\(f.size) bytes: too large for a .param file") }
            guard let s = String(validating: f.bytes, as: UTF8.self) else { throw CheckpointError(param, "not UTF-8 text: not an ncnn .param file") }
            text = s
        } catch let e as FileError { throw CheckpointError(param, e.message) } catch let e as CheckpointError { throw e } catch {
            throw CheckpointError(param, "\(error)")
        }
        let parsed = try NCNNParamFile.parse(text, path: param)
        var shapes = shapes
        if assumeShapes { shapes.merge(assumedInputShapes(parsed)) { given, _ in given } }
        let file: MappedFile
        do { file = try MappedFile(path: bin) } catch { throw CheckpointError(bin, error.message) }
        var builder = Builder(param: param, weights: NCNNWeightReader(file: file), shapes: shapes)
        for layer in parsed.layers {
            do { try builder.add(layer) } catch let e as CheckpointError {
                throw e.path.isEmpty ? CheckpointError(param, at: e.location, e.message) : e
            } catch let e as IRError {
                throw CheckpointError(param, at: "line \(layer.line), layer '\(layer.name)' (\(layer.type))", e.message)
            } catch { throw CheckpointError(param, "\(error)") }
        }
        guard builder.weights.offset == file.size else {
            throw CheckpointError(bin, at: "offset \(builder.weights.offset)",
                                  "the layers read \(builder.weights.offset) bytes, the file has \(file.size): the .bin does not belong to this .param")
        }
        for name in shapes.keys where !builder.inputNames.contains(name) {
            throw CheckpointError(param, "--shape \(name): the model has no input blob of that name (inputs: \(builder.inputNames.joined(separator: ", ")))")
        }
        var graph = builder.graph
        let read = Set(parsed.layers.flatMap(\.bottoms))
        for layer in parsed.layers {
            for top in layer.tops where !read.contains(top) {
                guard let v = builder.blobs[top] else { continue }
                graph.setOutput(top, v)
            }
        }
        guard !graph.outputs.isEmpty else { throw CheckpointError(param, "the model has no output blob") }
        var counts: [String: Int] = [:], order: [String] = []
        for l in parsed.layers {
            if counts[l.type] == nil { order.append(l.type) }
            counts[l.type, default: 0] += 1
        }
        let bytes = NCNNStorage.allCases.compactMap { s in builder.weights.bytesByStorage[s].map { (s, $0) } }
        return NCNNImport(graph: graph, params: parsed, layerTypes: order.map { ($0, counts[$0]!) }, weightBytes: bytes, weights: builder.loaded, blobs: builder.blobs)
    }

    /// Shapes `[1, C, side, side]` for the Input blobs whose shape the file does not give, with `C`
    /// taken from the first convolution that reads them (through Splits): for listing and
    /// converting weights, which do not depend on the image size.
    public static func assumedInputShapes(_ p: NCNNParamFile, side: Int = 64) -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for input in p.layers where input.type == "Input" && input.tops.count == 1 && ((try? input.int(0, 0)) ?? 0) <= 0 {
            var names: Set<String> = [input.tops[0]]
            for l in p.layers where l.bottoms.contains(where: names.contains) {
                if l.type == "Split" { names.formUnion(l.tops); continue }
                guard l.type == "Convolution", let n = try? l.int(0, 0), let kw = try? l.int(1, 0), let kh = try? l.int(11, kw),
                      let size = try? l.int(6, 0), n > 0, kw > 0, kh > 0, size % (n * kw * kh) == 0 else { break }
                out[input.tops[0]] = [1, size / (n * kw * kh), side, side]
                break
            }
        }
        return out
    }

    /// The `.bin` beside a `.param` (`x.param` → `x.bin`).
    public static func binPath(forParam param: String) -> String {
        param.hasSuffix(".param") ? String(param.dropLast(6)) + ".bin" : param + ".bin"
    }

    struct Builder: ~Copyable {
        let param: String
        var weights: NCNNWeightReader
        let shapes: [String: [Int]]
        var graph = Graph()
        var blobs: [String: ValueID] = [:]
        var inputNames: [String] = []
        var loaded: [(name: String, tensor: Tensor, layer: String, type: String)] = []

        init(param: String, weights: consuming NCNNWeightReader, shapes: [String: [Int]]) {
            self.param = param
            self.weights = weights
            self.shapes = shapes
        }

        func dims(_ v: ValueID) -> [Int] { graph.type(v).shape.dims }

        mutating func constant(_ t: Tensor, _ name: String) -> ValueID { graph.addConstant(t, name: name) }
        mutating func scalar(_ v: Float, _ name: String) -> ValueID { graph.addConstant(Tensor([v], shape: [1]), name: name) }

        mutating func op(_ op: Op, _ inputs: [ValueID], _ name: String) throws -> ValueID { try graph.add1(op, inputs, name: name) }

        mutating func add(_ l: NCNNLayer) throws {
            let inputs = l.bottoms.map { blobs[$0]! }
            func need(_ n: Int) throws(CheckpointError) {
                guard inputs.count == n else { throw l.error("expects \(n) input blob\(n == 1 ? "" : "s"), has \(inputs.count)") }
            }
            func one() throws(CheckpointError) -> ValueID { try need(1); return inputs[0] }
            var outputs: [ValueID]
            switch l.type {
            case "Input":
                guard inputs.isEmpty, l.tops.count == 1 else { throw l.error("an Input layer has no bottom and one top") }
                let top = l.tops[0]
                var d: [Int]
                if let s = shapes[top] {
                    d = s
                } else {
                    let (w, h, c) = (try l.int(0, 0), try l.int(1, 0), try l.int(2, 0))
                    guard w > 0 else { throw l.error("input '\(top)' has no static shape: give it with --shape \(top)=1,C,H,W") }
                    d = h > 0 ? (c > 0 ? [1, c, h, w] : [1, h, w]) : [1, w]
                }
                guard (2...4).contains(d.count), d[0] == 1, d.allSatisfy({ $0 > 0 }), Shape.checkedCount(d).map({ $0 <= 1 << 34 }) == true else {
                    throw l.error("input '\(top)': shape \(Shape(d)) must be [1, C, H, W] (or [1, H, W], [1, W]) with positive dimensions")
                }
                inputNames.append(top)
                outputs = [graph.addInput(top, TensorType(.f32, Shape(d)))]
            case "Split":
                let x = try one()
                outputs = Array(repeating: x, count: l.tops.count)
            case "Noop":
                try need(l.tops.count)
                outputs = inputs
            case "Dropout":
                let x = try one()
                let s = try l.float(0, 1)
                outputs = [s == 1 ? x : try op(.binary(.mul), [x, scalar(s, l.name + ":scale")], l.name)]
            case "Convolution", "ConvolutionDepthWise":
                outputs = [try convolution(l, one(), depthwise: l.type == "ConvolutionDepthWise")]
            case "Deconvolution", "DeconvolutionDepthWise":
                outputs = [try deconvolution(l, one(), depthwise: l.type == "DeconvolutionDepthWise")]
            case "InnerProduct":
                outputs = [try innerProduct(l, one())]
            case "ReLU":
                let slope = try l.float(0, 0)
                outputs = [try op(slope == 0 ? .unary(.relu) : .leakyRelu(alpha: slope), [one()], l.name)]
            case "PReLU":
                outputs = [try prelu(l, one())]
            case "Sigmoid": outputs = [try op(.unary(.sigmoid), [one()], l.name)]
            case "TanH": outputs = [try op(.unary(.tanh), [one()], l.name)]
            case "Swish": outputs = [try op(.unary(.silu), [one()], l.name)]
            case "Mish": outputs = [try op(.unary(.mish), [one()], l.name)]
            case "ELU": outputs = [try op(.elu(alpha: l.float(0, 0.1)), [one()], l.name)]
            case "Clip": outputs = [try op(.clip(min: l.float(0, -Float.greatestFiniteMagnitude), max: l.float(1, Float.greatestFiniteMagnitude)), [one()], l.name)]
            case "HardSigmoid": outputs = [try op(.hardSigmoid(alpha: l.float(0, 0.2), beta: l.float(1, 0.5)), [one()], l.name)]
            case "HardSwish":
                let x = try one()
                let g = try op(.hardSigmoid(alpha: l.float(0, 0.2), beta: l.float(1, 0.5)), [x], l.name + ":gate")
                outputs = [try op(.binary(.mul), [x, g], l.name)]
            case "UnaryOp":
                outputs = [try unary(l, one())]
            case "Eltwise":
                outputs = [try eltwise(l, inputs)]
            case "BinaryOp":
                outputs = [try binary(l, inputs)]
            case "Interp":
                outputs = [try interp(l, one())]
            case "PixelShuffle":
                let r = try l.int(0, 1), mode = try l.int(1, 0)
                guard r >= 1, mode == 0 || mode == 1 else { throw l.error("upscale factor \(r) and mode \(mode): factor ≥ 1, mode 0 (PyTorch) or 1 (TensorFlow)") }
                outputs = [try op(.depthToSpace(blockSize: r, order: mode == 0 ? .crd : .dcr), [one()], l.name)]
            case "Concat":
                guard !inputs.isEmpty else { throw l.error("has no input") }
                let rank = dims(inputs[0]).count
                var axis = try l.int(0, 0)
                if axis < 0 { axis += rank - 1 }
                guard (0..<(rank - 1)).contains(axis) else { throw l.error("axis \(try l.int(0, 0)) is out of range for a blob of \(rank - 1) dimensions") }
                outputs = [inputs.count == 1 ? inputs[0] : try op(.concat(axis: axis + 1), inputs, l.name)]
            case "Crop":
                outputs = [try crop(l, one())]
            case "Padding":
                outputs = [try padding(l, one())]
            case "Pooling":
                outputs = [try pooling(l, one())]
            case "Softmax":
                let x = try one()
                let rank = dims(x).count
                var axis = try l.int(0, 0)
                if axis < 0 { axis += rank - 1 }
                guard (0..<(rank - 1)).contains(axis) else { throw l.error("axis out of range") }
                outputs = [try op(.softmax(axis: axis + 1), [x], l.name)]
            case "Reshape":
                outputs = [try reshape(l, one())]
            case "Flatten":
                let x = try one()
                outputs = [try op(.reshape(Shape([1, dims(x).dropFirst().reduce(1, *)])), [x], l.name)]
            case "Permute":
                outputs = [try permute(l, one())]
            default:
                throw l.error("layer type '\(l.type)' is not supported by this importer")
            }
            guard outputs.count == l.tops.count else { throw l.error("expects \(outputs.count) top blob\(outputs.count == 1 ? "" : "s"), has \(l.tops.count)") }
            for (top, v) in zip(l.tops, outputs) { blobs[top] = v }
        }

        /// The activation fused in a convolution or inner product (`9=` type, `-23310=` parameters).
        mutating func activation(_ l: NCNNLayer, _ x: ValueID) throws -> ValueID {
            let p = try l.array(10)
            func param(_ i: Int, _ d: Float) -> Float { i < p.count ? p[i] : d }
            switch try l.int(9, 0) {
            case 0: return x
            case 1: return try op(param(0, 0) == 0 ? .unary(.relu) : .leakyRelu(alpha: param(0, 0)), [x], l.name + ":relu")
            case 2: return try op(.leakyRelu(alpha: param(0, 0)), [x], l.name + ":leaky_relu")
            case 3: return try op(.clip(min: param(0, -Float.greatestFiniteMagnitude), max: param(1, Float.greatestFiniteMagnitude)), [x], l.name + ":clip")
            case 4: return try op(.unary(.sigmoid), [x], l.name + ":sigmoid")
            case 5: return try op(.unary(.mish), [x], l.name + ":mish")
            case 6:
                let g = try op(.hardSigmoid(alpha: param(0, 0.2), beta: param(1, 0.5)), [x], l.name + ":gate")
                return try op(.binary(.mul), [x, g], l.name + ":hard_swish")
            case let t: throw l.error("activation type \(t) is unknown (0 none, 1 relu, 2 leaky relu, 3 clip, 4 sigmoid, 5 mish, 6 hard swish)")
            }
        }

        mutating func record(_ t: Tensor, _ l: NCNNLayer, _ what: String) {
            loaded.append((l.name + "." + what, t, l.name, l.type))
        }

        /// The weights of a convolution-like layer: `[count]` values, dequantised when int8 with scales.
        /// `biasTerm`: the parameter that says whether a bias follows (5 for convolutions, 1 for InnerProduct).
        mutating func kernelWeights(_ l: NCNNLayer, count: Int, outputs: Int, groups: Int, depthwise: Bool, biasTerm: Int = 5) throws -> (Tensor, Tensor?) {
            let (w, storage) = try weights.tagged(count, layer: l, what: "weight data")
            let bias = try l.int(biasTerm, 0) != 0 ? try weights.raw(outputs, layer: l, what: "bias") : nil
            let int8 = try l.int(8, 0)
            var weight = w
            if int8 != 0 {
                let scaleCount = depthwise ? groups : outputs
                let scales = try weights.raw(scaleCount, layer: l, what: "weight int8 scales").floats()
                _ = try weights.raw(depthwise ? groups : 1, layer: l, what: "input int8 scales")
                if int8 > 100 { _ = try weights.raw(1, layer: l, what: "output int8 scales") }
                guard storage == .int8 else { throw l.error("int8 scales (8=\(int8)) with \(storage.rawValue) weights") }
                var values = w.floats()
                let per = count / scaleCount
                for i in 0..<values.count {
                    let s = scales[i / per]
                    values[i] = s == 0 ? 0 : values[i] / s
                }
                weight = Tensor(values, shape: [count])
            } else if storage == .int8 {
                throw l.error("int8 weights without scales (8=0)")
            }
            return (weight, bias)
        }

        /// The parameters Convolution and Deconvolution (and their depthwise forms) share, checked:
        /// `0=` outputs, `1=/11=` kernel, `2=/12=` dilation, `3=/13=` stride, `4=/15=/14=/16=` pads
        /// (left, right, top, bottom; negative values are SAME markers the caller resolves), `7=`
        /// groups, `6=` weight count; the input's channels divisible by the groups.
        struct KernelParams {
            var outputs: Int, kernel: (h: Int, w: Int), dilation: (h: Int, w: Int), stride: (h: Int, w: Int)
            var pads: (left: Int, right: Int, top: Int, bottom: Int), groups: Int, weightCount: Int, channels: Int
            static let limit = 1 << 16

            init(_ l: NCNNLayer, input d: [Int], depthwise: Bool) throws(CheckpointError) {
                guard d.count == 4 else { throw l.error("input must be a c×h×w blob, got \(Shape(d))") }
                outputs = try l.int(0, 0)
                let kw = try l.int(1, 0), dw = try l.int(2, 1), sw = try l.int(3, 1), pl = try l.int(4, 0)
                kernel = (try l.int(11, kw), kw)
                dilation = (try l.int(12, dw), dw)
                stride = (try l.int(13, sw), sw)
                let pt = try l.int(14, pl)
                pads = (pl, try l.int(15, pl), pt, try l.int(16, pt))
                groups = depthwise ? try l.int(7, 1) : 1
                weightCount = try l.int(6, 0)
                channels = d[1]
                let limit = Self.limit
                guard [outputs, kernel.h, kernel.w, dilation.h, dilation.w, stride.h, stride.w, groups].allSatisfy({ (1...limit).contains($0) }) else {
                    throw l.error("num_output, kernel, dilation, stride and group must be in 1...\(limit)")
                }
                guard channels % groups == 0, outputs % groups == 0 else {
                    throw l.error("group \(groups) must divide the input channels \(channels) and num_output \(outputs)")
                }
                guard let expected = Shape.checkedCount([outputs, channels / groups, kernel.h, kernel.w]), expected == weightCount else {
                    throw l.error("weight_data_size \(weightCount) ≠ num_output \(outputs) × \(channels / groups) input channels per group × \(kernel.h)×\(kernel.w)")
                }
            }
        }

        mutating func convolution(_ l: NCNNLayer, _ x: ValueID, depthwise: Bool) throws -> ValueID {
            let d = dims(x)
            let p = try KernelParams(l, input: d, depthwise: depthwise)
            let (outC, groups, size, c) = (p.outputs, p.groups, p.weightCount, p.channels)
            let (kh, kw, dh, dw, sh, sw) = (p.kernel.h, p.kernel.w, p.dilation.h, p.dilation.w, p.stride.h, p.stride.w)
            var (pl, pr, pt, pb) = p.pads
            let padValue = try l.float(18, 0)
            guard try l.int(19, 0) == 0 else { throw l.error("dynamic weights (19=1) are not supported") }
            let limit = KernelParams.limit
            if pl == -233 || pl == -234 {
                let ekw = dw * (kw - 1) + 1, ekh = dh * (kh - 1) + 1
                let wpad = max(ekw + (d[3] - 1) / sw * sw - d[3], 0), hpad = max(ekh + (d[2] - 1) / sh * sh - d[2], 0)
                if pl == -233 { (pl, pr, pt, pb) = (wpad / 2, wpad - wpad / 2, hpad / 2, hpad - hpad / 2) } else { (pl, pr, pt, pb) = (wpad - wpad / 2, wpad / 2, hpad - hpad / 2, hpad / 2) }
            }
            guard [pl, pr, pt, pb].allSatisfy({ (0...limit).contains($0) }) else { throw l.error("pads must be in 0...\(limit) (or -233/-234 for SAME)") }
            let (w, b) = try kernelWeights(l, count: size, outputs: outC, groups: groups, depthwise: depthwise)
            let weight = Tensor(dtype: .f32, shape: [outC, c / groups, kh, kw], storage: w.storage)
            record(weight, l, "weight")
            var input = x
            var pads = [pt, pl, pb, pr]
            if padValue != 0 && pads.contains(where: { $0 > 0 }) {
                input = try op(.pad(mode: .constant, pads: [0, 0, pt, pl, 0, 0, pb, pr], value: padValue), [x], l.name + ":pad")
                pads = [0, 0, 0, 0]
            }
            var operands = [input, constant(weight, l.name + ".weight")]
            if let b { record(b, l, "bias"); operands.append(constant(b, l.name + ".bias")) }
            let y = try op(.conv(Conv2D(strides: [sh, sw], pads: pads, dilations: [dh, dw], groups: groups)), operands, l.name)
            return try activation(l, y)
        }

        mutating func deconvolution(_ l: NCNNLayer, _ x: ValueID, depthwise: Bool) throws -> ValueID {
            let p = try KernelParams(l, input: dims(x), depthwise: depthwise)
            let (outC, groups, size, c) = (p.outputs, p.groups, p.weightCount, p.channels)
            let (kh, kw, dh, dw, sh, sw) = (p.kernel.h, p.kernel.w, p.dilation.h, p.dilation.w, p.stride.h, p.stride.w)
            let (pl, pr, pt, pb) = p.pads
            let opr = try l.int(18, 0), opb = try l.int(19, opr)
            guard try l.int(20, 0) == 0, try l.int(21, 0) == 0, try l.int(28, 0) == 0 else {
                throw l.error("an explicit output size (20=, 21=) or dynamic weights are not supported")
            }
            guard [pl, pr, pt, pb, opr, opb].allSatisfy({ (0...KernelParams.limit).contains($0) }) else {
                throw l.error("pads must be in 0...\(KernelParams.limit)")
            }
            let (ci, co) = (c / groups, outC / groups)
            let (w, b) = try kernelWeights(l, count: size, outputs: outC, groups: groups, depthwise: depthwise)
            // ncnn: [group][out/group][in/group][kh][kw]; the IR (PyTorch): [in][out/group][kh][kw].
            let src = w.floats()
            var dst = [Float](repeating: 0, count: size)
            let k = kh * kw
            for g in 0..<groups {
                for o in 0..<co {
                    for i in 0..<ci {
                        let from = ((g * co + o) * ci + i) * k, to = ((g * ci + i) * co + o) * k
                        for t in 0..<k { dst[to + t] = src[from + t] }
                    }
                }
            }
            let weight = Tensor(dst, shape: [c, co, kh, kw])
            record(weight, l, "weight")
            var operands = [x, constant(weight, l.name + ".weight")]
            if let b { record(b, l, "bias"); operands.append(constant(b, l.name + ".bias")) }
            let y = try op(.convTranspose(ConvTranspose2D(strides: [sh, sw], pads: [pt, pl, pb, pr], dilations: [dh, dw], groups: groups,
                                                         outputPadding: [opb, opr])), operands, l.name)
            return try activation(l, y)
        }

        mutating func innerProduct(_ l: NCNNLayer, _ x: ValueID) throws -> ValueID {
            let n = try l.int(0, 0), size = try l.int(2, 0)
            let k = dims(x).dropFirst().reduce(1, *)
            guard (1...(1 << 24)).contains(n), let expected = Shape.checkedCount([n, k]), expected == size else {
                throw l.error("weight_data_size \(size) ≠ num_output \(n) × \(k) inputs")
            }
            let (w, b) = try kernelWeights(l, count: size, outputs: n, groups: 1, depthwise: false, biasTerm: 1)
            let weight = Tensor(dtype: .f32, shape: [n, k], storage: w.storage)
            record(weight, l, "weight")
            let flat = dims(x).count == 2 ? x : try op(.reshape(Shape([1, k])), [x], l.name + ":flatten")
            var operands = [flat, constant(weight, l.name + ".weight")]
            if let b { record(b, l, "bias"); operands.append(constant(b, l.name + ".bias")) }
            return try activation(l, op(.linear, operands, l.name))
        }

        mutating func prelu(_ l: NCNNLayer, _ x: ValueID) throws -> ValueID {
            let n = try l.int(0, 0)
            let d = dims(x)
            guard n == 1 || (d.count >= 2 && n == d[1]) else { throw l.error("num_slope \(n) must be 1 or the channel count \(d.count >= 2 ? d[1] : 0)") }
            let slope = try weights.raw(n, layer: l, what: "slopes")
            record(slope, l, "slope")
            var shape = [Int](repeating: 1, count: d.count)
            if n > 1 { shape[1] = n }
            let s = constant(Tensor(dtype: .f32, shape: n == 1 ? [1] : Shape(shape), storage: slope.storage), l.name + ".slope")
            // x ≥ 0: x; else slope·x  =  relu(x) + slope·min(x, 0)
            let positive = try op(.unary(.relu), [x], l.name + ":positive")
            let negative = try op(.binary(.min), [x, scalar(0, l.name + ":zero")], l.name + ":negative")
            return try op(.binary(.add), [positive, op(.binary(.mul), [negative, s], l.name + ":scaled")], l.name)
        }

        mutating func unary(_ l: NCNNLayer, _ x: ValueID) throws -> ValueID {
            let map: [Int: UnaryOp] = [0: .abs, 1: .neg, 2: .floor, 3: .ceil, 5: .sqrt, 7: .exp, 8: .log, 9: .sin, 10: .cos, 11: .tan,
                                       12: .asin, 13: .acos, 14: .atan, 15: .reciprocal, 16: .tanh, 18: .round]
            let t = try l.int(0, 0)
            if t == 4 { return try op(.binary(.mul), [x, x], l.name) }
            if t == 6 { return try op(.unary(.reciprocal), [op(.unary(.sqrt), [x], l.name + ":sqrt")], l.name) }
            guard let u = map[t] else { throw l.error("unary op type \(t) is not supported") }
            return try op(.unary(u), [x], l.name)
        }

        mutating func eltwise(_ l: NCNNLayer, _ inputs: [ValueID]) throws -> ValueID {
            guard inputs.count >= 2 else { throw l.error("needs at least two inputs") }
            let type = try l.int(0, 1)
            let coeffs = try l.array(1)
            switch type {
            case 0, 2:
                var acc = inputs[0]
                for (i, v) in inputs.enumerated().dropFirst() {
                    acc = try op(.binary(type == 0 ? .mul : .max), [acc, v], i == inputs.count - 1 ? l.name : "\(l.name):\(i)")
                }
                return acc
            case 1:
                guard coeffs.isEmpty || coeffs.count == inputs.count else { throw l.error("\(coeffs.count) coefficients for \(inputs.count) inputs") }
                var terms: [ValueID] = []
                for (i, v) in inputs.enumerated() {
                    let c = coeffs.isEmpty ? 1 : coeffs[i]
                    terms.append(c == 1 ? v : try op(.binary(.mul), [v, scalar(c, "\(l.name):coeff\(i)")], "\(l.name):term\(i)"))
                }
                var acc = terms[0]
                for (i, t) in terms.enumerated().dropFirst() {
                    acc = try op(.binary(.add), [acc, t], i == terms.count - 1 ? l.name : "\(l.name):\(i)")
                }
                return acc
            default:
                throw l.error("operation \(type) is unknown (0 product, 1 sum, 2 max)")
            }
        }

        /// An ncnn 1-D blob `[w]` against a `c×h×w` blob broadcasts per channel when `w` is the channel count.
        mutating func broadcastable(_ a: ValueID, _ b: ValueID, _ name: String) throws -> (ValueID, ValueID) {
            let (da, db) = (dims(a), dims(b))
            if da.count == 4 && db.count == 2 && db[1] == da[1] && db[1] != da[3] {
                return (a, try op(.reshape(Shape([1, db[1], 1, 1])), [b], name + ":per_channel"))
            }
            if db.count == 4 && da.count == 2 && da[1] == db[1] && da[1] != db[3] {
                return (try op(.reshape(Shape([1, da[1], 1, 1])), [a], name + ":per_channel"), b)
            }
            return (a, b)
        }

        mutating func binary(_ l: NCNNLayer, _ inputs: [ValueID]) throws -> ValueID {
            let type = try l.int(0, 0)
            let withScalar = try l.int(1, 0) != 0
            var (a, b): (ValueID, ValueID)
            if withScalar {
                guard inputs.count == 1 else { throw l.error("with_scalar takes one input") }
                (a, b) = (inputs[0], scalar(try l.float(2, 0), l.name + ":b"))
            } else {
                guard inputs.count == 2 else { throw l.error("takes two inputs (or one with 1=1)") }
                (a, b) = try broadcastable(inputs[0], inputs[1], l.name)
            }
            let ops: [Int: (BinaryOp, Bool)] = [0: (.add, false), 1: (.sub, false), 2: (.mul, false), 3: (.div, false), 4: (.max, false),
                                                5: (.min, false), 6: (.pow, false), 7: (.sub, true), 8: (.div, true), 9: (.pow, true)]
            guard let (o, reversed) = ops[type] else { throw l.error("operation \(type) is not supported (0...9)") }
            return try op(.binary(o), reversed ? [b, a] : [a, b], l.name)
        }

        mutating func interp(_ l: NCNNLayer, _ x: ValueID) throws -> ValueID {
            let d = dims(x)
            guard d.count == 4 else { throw l.error("input must be a c×h×w blob, got \(Shape(d))") }
            guard try l.int(5, 0) == 0 else { throw l.error("a dynamic target size (5=1) is not supported") }
            let type = try l.int(0, 0)
            let hs = try l.float(1, 1), ws = try l.float(2, 1)
            var oh = try l.int(3, 0), ow = try l.int(4, 0)
            let alignCorner = try l.int(6, 0) != 0
            guard hs.isFinite, ws.isFinite, hs > 0, ws > 0 else { throw l.error("scales must be positive") }
            let given = oh == 0 || ow == 0
            if given {
                // (In Float, as ncnn computes it; out-of-range products refused before they become Ints.)
                let (fh, fw) = (Float(d[2]) * hs, Float(d[3]) * ws)
                guard fh < Float(1 << 21), fw < Float(1 << 21) else { throw l.error("scales \(hs)×\(ws) give an output of more than 2²⁰ rows or columns") }
                (oh, ow) = (Int(fh), Int(fw))
            }
            guard (1...(1 << 20)).contains(oh), (1...(1 << 20)).contains(ow) else { throw l.error("output size \(oh)×\(ow) is out of range") }
            let sizes = [d[0], d[1], oh, ow]
            let scales: [Double] = [1, 1, given ? Double(hs) : Double(oh) / Double(d[2]), given ? Double(ws) : Double(ow) / Double(d[3])]
            let r: Resize
            switch type {
            case 1: r = Resize(mode: .nearest, coordinateTransform: .asymmetric, nearestMode: .floor, sizes: sizes, scales: scales)
            // ncnn maps coordinates with the given scale (1 / scale), not with the sizes' ratio, as ONNX does with scales.
            case 2: r = Resize(mode: .linear, coordinateTransform: alignCorner ? .alignCorners : .halfPixel, sizes: sizes, scales: scales)
            case 3: r = Resize(mode: .cubic, coordinateTransform: alignCorner ? .alignCorners : .halfPixel, cubicCoeffA: -0.75, sizes: sizes, scales: scales)
            default: throw l.error("resize type \(type) is unknown (1 nearest, 2 bilinear, 3 bicubic)")
            }
            return try op(.resize(r), [x], l.name)
        }

        mutating func crop(_ l: NCNNLayer, _ x: ValueID) throws -> ValueID {
            let d = dims(x)
            let n = d.count - 1
            var starts = [Int](repeating: 0, count: n), ends = Array(d.dropFirst())
            let s = try l.ints(9), e = try l.ints(10), a = try l.ints(11)
            if !s.isEmpty || !e.isEmpty {
                guard s.count == e.count, a.isEmpty || a.count == s.count else { throw l.error("starts, ends and axes must have the same length") }
                for (i, start) in s.enumerated() {
                    var axis = a.isEmpty ? i : a[i]
                    if axis < 0 { axis += n }
                    guard (0..<n).contains(axis) else { throw l.error("axis \(a.isEmpty ? i : a[i]) is out of range") }
                    let size = d[axis + 1]
                    func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + size : v, 0), size) }
                    starts[axis] = clamp(start)
                    ends[axis] = e[i] >= size ? size : clamp(e[i])
                }
            } else {
                // w, h, c offsets (0=, 1=, 2=), sizes (3=, 4=, 5=), offsets from the end (6=, 7=, 8=); ncnn order c, h, w.
                let off = [try l.int(2, 0), try l.int(1, 0), try l.int(0, 0)], size = [try l.int(5, 0), try l.int(4, 0), try l.int(3, 0)]
                let tail = [try l.int(8, 0), try l.int(7, 0), try l.int(6, 0)]
                for k in 0..<n {
                    let j = 3 - n + k
                    let extent = d[k + 1]
                    guard off[j] >= 0, tail[j] >= 0, size[j] >= -1 else { throw l.error("offsets and sizes must not be negative") }
                    starts[k] = off[j]
                    ends[k] = size[j] > 0 ? off[j] + size[j] : extent - tail[j]
                    guard starts[k] <= ends[k], ends[k] <= extent else { throw l.error("the crop \(starts[k])..<\(ends[k]) does not fit an extent of \(extent)") }
                }
            }
            guard zip(starts, ends).allSatisfy({ $0 < $1 }) else { throw l.error("the crop is empty") }
            return try op(.slice(SliceSpec(starts: [0] + starts, ends: [d[0]] + ends, steps: [Int](repeating: 1, count: n + 1))), [x], l.name)
        }

        mutating func padding(_ l: NCNNLayer, _ x: ValueID) throws -> ValueID {
            let d = dims(x)
            guard d.count == 4 else { throw l.error("input must be a c×h×w blob, got \(Shape(d))") }
            let (top, bottom, left, right) = (try l.int(0, 0), try l.int(1, 0), try l.int(2, 0), try l.int(3, 0))
            let (front, behind) = (try l.int(7, 0), try l.int(8, 0))
            guard try l.int(6, 0) == 0 else { throw l.error("per-channel pad values (6=) are not supported") }
            let limit = 1 << 16
            guard [top, bottom, left, right, front, behind].allSatisfy({ (0...limit).contains($0) }) else { throw l.error("pads must be in 0...\(limit)") }
            let mode: PadMode
            switch try l.int(4, 0) {
            case 0: mode = .constant
            case 1: mode = .edge
            case 2: mode = .reflect
            case let t: throw l.error("padding type \(t) is unknown (0 constant, 1 replicate, 2 reflect)")
            }
            guard mode == .constant || (front == 0 && behind == 0) else { throw l.error("channel padding (7=, 8=) is constant only") }
            return try op(.pad(mode: mode, pads: [0, front, top, left, 0, behind, bottom, right], value: l.float(5, 0)), [x], l.name)
        }

        mutating func pooling(_ l: NCNNLayer, _ x: ValueID) throws -> ValueID {
            let d = dims(x)
            guard d.count == 4 else { throw l.error("input must be a c×h×w blob, got \(Shape(d))") }
            let type = try l.int(0, 0)
            guard type == 0 || type == 1 else { throw l.error("pooling type \(type) is unknown (0 max, 1 average)") }
            guard try l.int(7, 0) == 0 else { throw l.error("adaptive pooling (7=1) is not supported") }
            if try l.int(4, 0) != 0 {
                return try op(.reduce(type == 0 ? .max : .mean, axes: [2, 3], keepDims: false), [x], l.name)
            }
            let kw = try l.int(1, 0), kh = try l.int(11, kw), sw = try l.int(2, 1), sh = try l.int(12, sw)
            var pl = try l.int(3, 0), pr = try l.int(14, pl), pt = try l.int(13, pl), pb = try l.int(15, pt)
            let limit = 1 << 12
            guard (1...limit).contains(kw), (1...limit).contains(kh), (1...limit).contains(sw), (1...limit).contains(sh),
                  [pl, pr, pt, pb].allSatisfy({ (0...limit).contains($0) }) else { throw l.error("kernel and stride must be in 1...\(limit), pads in 0...\(limit)") }
            let padMode = try l.int(5, 0)
            var tail = false
            switch padMode {
            case 0:  // full padding: extra bottom/right rows so that the last window fits
                let wt = (d[3] + pl + pr - kw) % sw, ht = (d[2] + pt + pb - kh) % sh
                if wt != 0 { pr += sw - wt; tail = true }
                if ht != 0 { pb += sh - ht; tail = true }
            case 1: (pl, pr, pt, pb) = (0, 0, 0, 0)
            case let m:
                let wpad = max(kw + (d[3] - 1) / sw * sw - d[3], 0), hpad = max(kh + (d[2] - 1) / sh * sh - d[2], 0)
                if m == 2 { (pl, pr, pt, pb) = (wpad / 2, wpad - wpad / 2, hpad / 2, hpad - hpad / 2) } else if m == 3 {
                    (pl, pr, pt, pb) = (wpad - wpad / 2, wpad / 2, hpad - hpad / 2, hpad / 2)
                } else { throw l.error("pad mode \(m) is unknown (0 full, 1 valid, 2 same upper, 3 same lower)") }
            }
            let (ph, pw) = (d[2] + pt + pb, d[3] + pl + pr)
            guard ph >= kh, pw >= kw else { throw l.error("the \(kh)×\(kw) window is larger than the padded \(ph)×\(pw) input") }
            let countsPad = try l.int(6, 0) != 0
            if type == 1 && [pl, pr, pt, pb].contains(where: { $0 > 0 }) && (!countsPad || padMode != 0 || tail) {
                throw l.error("average pooling over padded borders is supported only with explicit pads counted in the average (5=0 with no tail, 6=1)")
            }
            let (oh, ow) = ((ph - kh) / sh + 1, (pw - kw) / sw + 1)
            var input = x
            if [pl, pr, pt, pb].contains(where: { $0 > 0 }) {
                input = try op(.pad(mode: .constant, pads: [0, 0, pt, pl, 0, 0, pb, pr], value: type == 0 ? -Float.greatestFiniteMagnitude : 0), [x], l.name + ":pad")
            }
            // The window's kh·kw strided views, combined by max or summed.
            var acc: ValueID?
            for i in 0..<kh {
                for j in 0..<kw {
                    let s = try op(.slice(SliceSpec(starts: [0, 0, i, j], ends: [d[0], d[1], i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1], steps: [1, 1, sh, sw])),
                                   [input], "\(l.name):window\(i)_\(j)")
                    acc = try acc.map { try op(.binary(type == 0 ? .max : .add), [$0, s], "\(l.name):acc\(i)_\(j)") } ?? s
                }
            }
            guard var y = acc else { throw l.error("empty window") }
            if type == 1 { y = try op(.binary(.mul), [y, scalar(1 / Float(kh * kw), l.name + ":area")], l.name) }
            return y
        }

        mutating func reshape(_ l: NCNNLayer, _ x: ValueID) throws -> ValueID {
            let d = dims(x)
            let total = d.reduce(1, *)
            let w = try l.int(0, -233), h = try l.int(1, -233), c = try l.int(2, -233)
            guard try l.int(11, -233) == -233 else { throw l.error("4-D reshapes (11=) are not supported") }
            var target: [Int] = h == -233 ? [w] : (c == -233 ? [h, w] : [c, h, w])
            let source = Array(d.dropFirst())
            // 0 keeps the input's extent (ncnn aligns from the innermost axis), -1 is inferred.
            for i in target.indices where target[i] == 0 {
                let fromEnd = target.count - i
                guard fromEnd <= source.count else { throw l.error("0 names an axis the input does not have") }
                target[i] = source[source.count - fromEnd]
            }
            let known = target.filter { $0 != -1 }.reduce(1, *)
            guard target.filter({ $0 == -1 }).count <= 1, target.allSatisfy({ $0 == -1 || $0 > 0 }), known > 0 else { throw l.error("bad shape \(target)") }
            if let i = target.firstIndex(of: -1) { target[i] = total / known }
            guard target.reduce(1, *) == total else { throw l.error("shape \(target) does not hold the input's \(total) values") }
            return try op(.reshape(Shape([1] + target)), [x], l.name)
        }

        mutating func permute(_ l: NCNNLayer, _ x: ValueID) throws -> ValueID {
            let d = dims(x)
            let t = try l.int(0, 0)
            if d.count == 3 {
                guard t == 0 || t == 1 else { throw l.error("order type \(t) of a 2-D blob must be 0 or 1") }
                return t == 0 ? x : try op(.transpose([0, 2, 1]), [x], l.name)
            }
            guard d.count == 4 else { throw l.error("input must be a 2-D or 3-D blob") }
            let perms: [[Int]] = [[0, 1, 2, 3], [0, 1, 3, 2], [0, 2, 1, 3], [0, 2, 3, 1], [0, 3, 1, 2], [0, 3, 2, 1]]
            guard (0..<6).contains(t) else { throw l.error("order type \(t) of a 3-D blob must be in 0...5") }
            return t == 0 ? x : try op(.transpose(perms[t]), [x], l.name)
        }
    }
}
