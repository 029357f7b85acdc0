import Executor
import Foundation
import IR
import Kernels
import Passes
import Plan
import Tensors
import Testing
import TestSupport

/// Plans whose products have no instructions on the processor (int8 × int8 without VNNI, bf16
/// without AVX512-BF16) run what is faster there instead of the emulation, checked with the AVX2
/// kernels (forced where the processor has more): attention in f32, and an int8 plan's 3×3
/// convolutions of 32×32 outputs or more as Winograd on the int8 weights with f32 activations.
@Suite struct EmulatedPrecisionTests {
    /// A 3×3 convolution at 32×32 and one at 16×16 (32 channels), and an attention of 64 keys.
    static func graph() throws -> Graph {
        var g = Graph()
        var seed: UInt64 = 7
        func values(_ n: Int, _ scale: Float) -> [Float] {
            (0..<n).map { _ in
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return (Float(seed >> 40) / Float(1 << 24) - 0.5) * scale
            }
        }
        for (name, size) in [("big", 32), ("small", 16)] {
            let x = g.addInput(name + ".x", TensorType(.f32, Shape([1, 32, size, size])))
            let w = g.addConstant(Tensor(values(32 * 32 * 9, 0.2), shape: Shape([32, 32, 3, 3])), name: name + ".w")
            g.setOutput(name, try g.add1(.conv(Conv2D(pads: [1, 1, 1, 1])), [x, w], name: name))
        }
        let q = g.addInput("q", TensorType(.f32, Shape([2, 64, 16])))
        let k = g.addInput("k", TensorType(.f32, Shape([2, 64, 16])))
        let v = g.addInput("v", TensorType(.f32, Shape([2, 64, 16])))
        let s = try g.add1(.matmul, [q, try g.add1(.transpose([0, 2, 1]), [k], name: "kt")], name: "s")
        let scaled = try g.add1(.binary(.mul), [s, g.addConstant(Tensor([0.25], shape: []), name: "scale")], name: "scaled")
        let p = try g.add1(.softmax(axis: -1), [scaled], name: "p")
        g.setOutput("attn", try g.add1(.matmul, [p, v], name: "attn"))
        return g
    }

    static func inputs() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        var seed: UInt64 = 11
        for (name, shape) in [("big.x", [1, 32, 32, 32]), ("small.x", [1, 32, 16, 16]), ("q", [2, 64, 16]), ("k", [2, 64, 16]), ("v", [2, 64, 16])] {
            let n = shape.reduce(1, *)
            let values: [Float] = (0..<n).map { _ in
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Float(seed >> 40) / Float(1 << 24) * 2 - 1
            }
            out[name] = Tensor(values, shape: Shape(shape))
        }
        return out
    }

    static func run(_ g: Graph, _ options: CompileOptions, isa: ISA, in dir: TemporaryDirectory, name: String) throws -> [String: [Float]] {
        let compiled = try Compiler.compile([("main", g)], options: options)
        let path = dir.file(name + ".plan")
        try PlanWriter.write(path: path, program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: true)
        let r = try Executor(plan: try PlanFile(path: path), threads: 2, isa: isa).run(entry: "main", inputs: inputs())
        #expect(r.fallbacks.isEmpty, "\(name): reference kernels ran for \(r.fallbacks)")
        return Dictionary(uniqueKeysWithValues: r.outputs.map { ($0.name, $0.tensor.floats()) })
    }

    static func difference(_ a: [Float], _ b: [Float]) -> Double {
        var d = 0.0, n = 0.0
        for (x, y) in zip(a, b) { d += Double(x - y) * Double(x - y); n += Double(y) * Double(y) }
        return (d / max(n, 1e-30)).squareRoot()
    }

    @Test func avx2RunsWhatIsFasterThanTheEmulation() throws {
        guard ISA.avx2.isSupported else { return }
        let g = try Self.graph()
        let dir = TemporaryDirectory()
        var weightsOnly = CompileOptions()
        weightsOnly.quantization = QuantizationPolicy(defaultFormat: .int8Channel)
        var int8 = weightsOnly
        int8.int8Activations = true
        var bf16 = CompileOptions()
        bf16.quantization = QuantizationPolicy(defaultFormat: .bf16)
        bf16.bf16Activations = true
        let f32 = try Self.run(g, CompileOptions(), isa: .avx2, in: dir, name: "f32")
        let w8 = try Self.run(g, weightsOnly, isa: .avx2, in: dir, name: "w8")
        let a8 = try Self.run(g, int8, isa: .avx2, in: dir, name: "a8")
        let b16 = try Self.run(g, bf16, isa: .avx2, in: dir, name: "b16")
        // Attention in f32: the f32 plan's numbers exactly (the emulated bf16 products differ by ~1e-3).
        #expect(a8["attn"]! == f32["attn"]!, "int8 plan's attention: \(Self.difference(a8["attn"]!, f32["attn"]!)) from f32")
        #expect(b16["attn"]! == f32["attn"]!, "bf16 plan's attention: \(Self.difference(b16["attn"]!, f32["attn"]!)) from f32")
        // 32×32: Winograd F(2,3) on the int8 weights, as the weight-only int8 plan runs it (f32
        // activations: no activation rounding); 16×16: int8 × int8, which rounds the activations.
        let big = Self.difference(a8["big"]!, w8["big"]!), small = Self.difference(a8["small"]!, w8["small"]!)
        #expect(big < 1e-6, "32×32 convolution: \(big) from the int8-weight plan")
        #expect(small > 1e-4 && small < 5e-2, "16×16 convolution: \(small) from the int8-weight plan")
        #expect(Self.difference(a8["big"]!, f32["big"]!) < 5e-2)
        // Where VNNI is there, the int8 plan multiplies int8 × int8 at 32×32 too, and attention's
        // products are bf16 where AVX512-BF16 is.
        if Int8Gemm.hasVNNI, ISA.avx512.isSupported {
            let native = try Self.run(g, int8, isa: .avx512, in: dir, name: "a8-512")
            #expect(Self.difference(native["big"]!, w8["big"]!) > 1e-4)
            if CPU.hasBF16(.avx512) { #expect(native["attn"]! != f32["attn"]!) }
        }
    }
}
