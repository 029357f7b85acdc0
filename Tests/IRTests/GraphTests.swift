import IR
import Passes
import Tensors
import Testing

@Suite struct GraphTests {
    /// conv → group norm → silu → linear over tokens: the builder infers every type.
    static func small() throws -> Graph {
        var g = Graph()
        let x = g.addInput("x", TensorType(.f32, [1, 2, 4, 4]))
        let w = g.addConstant(Tensor((0..<(32 * 18)).map { Float($0 % 7) / 10 - 0.3 }, shape: [32, 2, 3, 3]), name: "conv.weight")
        let b = g.addConstant(Tensor([Float](repeating: 0.1, count: 32), shape: [32]), name: "conv.bias")
        let c = try g.add1(.conv(Conv2D(pads: [1, 1, 1, 1])), [x, w, b], name: "conv")
        let gamma = g.addConstant(Tensor([Float](repeating: 1, count: 32), shape: [32]), name: "norm.weight")
        let beta = g.addConstant(Tensor([Float](repeating: 0, count: 32), shape: [32]), name: "norm.bias")
        let n = try g.add1(.groupNorm(groups: 8, epsilon: 1e-5), [c, gamma, beta], name: "norm")
        let s = try g.add1(.unary(.silu), [n], name: "act")
        let t = try g.add1(.reshape([1, 32, 16]), [s], name: "tokens")
        let tt = try g.add1(.transpose([0, 2, 1]), [t], name: "tokens_t")
        let lw = g.addConstant(Tensor([Float](repeating: 0.01, count: 8 * 32), shape: [8, 32]), name: "proj.weight")
        let y = try g.add1(.linear, [tt, lw], name: "proj")
        g.setOutput("y", y)
        return g
    }

    @Test func builderInfersTypesAndVerifies() throws {
        let g = try Self.small()
        try g.verify()
        #expect(g.type(g.outputs[0].value) == TensorType(.f32, [1, 16, 8]))
        let out = try Interpreter.run(g, inputs: ["x": Tensor([Float](repeating: 0.5, count: 32), shape: [1, 2, 4, 4])])
        #expect(out["y"]?.shape == [1, 16, 8])
    }

    @Test func printerIsStable() throws {
        let text = try Self.small().text
        #expect(text.hasPrefix("input %0 \"x\": f32[1,2,4,4]\n"))
        #expect(text.contains("= conv strides=[1,1] pads=[1,1,1,1] dilations=[1,1] groups=1 (%0, %1, %2): f32[1,32,4,4]  # conv"))
        #expect(text.contains("= group_norm groups=8 eps=1e-05"))
        #expect(text.hasSuffix("%11 = linear (%9, %10): f32[1,16,8]  # proj\noutput \"y\" = %11\n"))
        #expect(try Self.small().text == text)
    }

    @Test func typeErrorsNameTheNode() throws {
        var g = Graph()
        let x = g.addInput("x", TensorType(.f32, [1, 3, 8, 8]))
        let w = g.addConstant(Tensor.zeros(.f32, [4, 2, 3, 3]), name: "w")
        #expect(throws: IRError.self) { try g.add(.conv(Conv2D()), [x, w], name: "bad_conv") }
        do { _ = try g.add(.conv(Conv2D()), [x, w], name: "bad_conv") } catch {
            #expect(error.description.contains("bad_conv") && error.description.contains("3 input channels"), "\(error)")
        }
        #expect(throws: IRError.self) { try g.add(.reshape([5, 5]), [x], name: "r") }
        #expect(throws: IRError.self) { try g.add(.binary(.add), [x, g.addConstant(Tensor.zeros(.f32, [3, 7]), name: "c")], name: "b") }
    }

    /// Found by fuzzing the ONNX importer: a Concat of scalars indexed a dimension that is not there.
    /// Indexing ops refuse scalars, and sizes that would overflow are errors, not traps.
    @Test func scalarsAndOverflowingSizesAreRefused() throws {
        var g = Graph()
        let s = g.addInput("s", TensorType(.f32, []))
        let idx = g.addInput("i", TensorType(.i64, [2]))
        let big = g.addInput("big", TensorType(.f32, [1 << 62, 1]))
        for (op, operands) in [(Op.concat(axis: 0), [s, s]), (.split(axis: 0, sizes: [1]), [s]), (.gather(axis: 0), [s, idx]),
                               (.argExtreme(max: true, axis: 0, keepDims: true, selectLastIndex: false), [s])] {
            let error = #expect(throws: IRError.self) { try g.add(op, operands, name: "scalar_op") }
            #expect(error?.description.contains("not a scalar") == true, "\(String(describing: error))")
        }
        let error = #expect(throws: IRError.self) { try g.add(.concat(axis: 0), [big, big], name: "huge_concat") }
        #expect(error?.description.contains("overflow") == true, "\(String(describing: error))")
        #expect(throws: IRError.self) { try g.add(.split(axis: 0, sizes: [Int.max, Int.max, 2]), [big], name: "huge_split") }
    }

    @Test func verifierCatchesBrokenGraphs() throws {
        // A node reading a value produced after it (out of order, as a cycle would be).
        var g = try Self.small()
        g.nodes[1].inputs[0] = g.nodes[3].outputs[0]
        #expect(throws: IRError.self) { try g.verify() }
        // An output typed differently from what inference gives.
        g = try Self.small()
        g.values[g.nodes[0].outputs[0]].type = TensorType(.f32, [1, 32, 5, 5])
        #expect(throws: IRError.self) { try g.verify() }
        // A graph output that refers to nothing.
        g = try Self.small()
        g.outputs.append(("dangling", g.values.count + 3))
        #expect(throws: IRError.self) { try g.verify() }
    }

    @Test func deadNodeRemovalKeepsResults() throws {
        var g = try Self.small()
        _ = try g.add1(.unary(.exp), [g.inputs[0]], name: "unused")
        #expect(g.nodes.count == 7)
        let pruned = g.withoutDeadNodes()
        try pruned.verify()
        #expect(pruned.nodes.count == 6)
        let input = Tensor((0..<32).map { Float($0) / 32 }, shape: [1, 2, 4, 4])
        #expect(try Interpreter.run(pruned, inputs: ["x": input])["y"]!.floats() == Interpreter.run(g, inputs: ["x": input])["y"]!.floats())
    }

    @Test func einsumSpecs() {
        let s = EinsumSpec.parse("bij,bjk->bik", ranks: [3, 3])
        #expect(s?.output == [1, 8, 10])
        #expect(EinsumSpec.parse("...ij,...jk", ranks: [4, 3])?.output.count == 4)
        #expect(EinsumSpec.parse("ij,jk->ix", ranks: [2, 2]) == nil)
        #expect(EinsumSpec.parse("ij->ij", ranks: [3]) == nil)
    }
}
