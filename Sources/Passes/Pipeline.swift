import IR
import Tensors

/// Options of a compilation.
public struct CompileOptions: Sendable {
    /// Passes switched off by name (`--disable-pass`).
    public var disabled: Set<String> = []
    /// Run the verifier after every pass (`--verify-each`; always on in tests).
    public var verifyEach = false
    public var evaluator: ConstantEvaluator = ReferenceEvaluator()
    /// Constants larger than this are not produced by folding (bytes).
    public var maxFoldedBytes = 64 << 20
    /// The formats convolution and linear weights are stored in (`--weights-dtype`, `--quant-rule`,
    /// the models' exclusions). bf16 weights run bf16 GEMMs (f32 accumulation); f16 and int8 weights
    /// are expanded to f32 inside the GEMM's packing.
    public var quantization = QuantizationPolicy()
    /// Entry points without a model definition (ONNX imports): their first and last convolution or
    /// linear layer stay f32 unless a rule names them.
    public var keepFirstAndLast: Set<String> = []
    /// bf16 operands into attention's products too (`--activations bf16`, `--precision bf16`).
    public var bf16Activations = false
    /// int8 activations into the convolutions and linear layers with int8 weights (`--activations
    /// int8`): inputs quantised on the fly, VNNI int8 × int8 products; attention's products run in
    /// bf16 as in bf16 plans where the processor has AVX512-BF16 (the executor chooses; see
    /// `CPU.precisionNote`).
    public var int8Activations = false
    /// int8 weights quantised beforehand (error compensation, `compile --gptq`), by weight name: used
    /// instead of plain rounding where the policy stores that weight as int8 and the shapes agree.
    public var int8Overrides: [String: QuantizedWeight] = [:]
    /// The smallest output plane (height × width) whose 3×3 convolutions with f32 weights run as
    /// Winograd F(2,3): 32×32 by default; `compile` gives 16×16 on processors without AVX-512, where
    /// the direct convolutions of the small levels run further from the FMA peak (the pass
    /// `winograd-16` switched off keeps 32×32). Each such kernel is transformed once, into 16/9 of
    /// its bytes, when the plan first uses it.
    public var f32WinogradMinimumPlane = 32 * 32
    /// That plane as the switched-off passes leave it: at least 32×32 without `winograd-16`, nil
    /// without `winograd`.
    public var f32WinogradPlane: Int? {
        if disabled.contains("winograd") { return nil }
        return disabled.contains("winograd-16") ? max(32 * 32, f32WinogradMinimumPlane) : f32WinogradMinimumPlane
    }
    public init() {}
}

/// What one pass did.
public struct PassRecord: Sendable {
    public let name: String
    public let changes: Int
    public let nodesBefore: Int
    public let nodesAfter: Int
    public let seconds: Double
}

/// A named graph rewrite: returns how many places it changed.
public struct Pass: Sendable {
    public let name: String
    public let summary: String
    public let run: @Sendable (inout Graph, CompileOptions) throws -> Int
}

/// The pass pipeline: one readable list of named stages, run in order.
public enum PassPipeline {
    public static let standard: [Pass] = [
        Cleanup.deadCode,
        Cleanup.commonSubexpressions,
        Cleanup.constantFolding,
        Cleanup.reshapeTransposeSimplification,
        Cleanup.gatherAsSplit,
        Cleanup.slicesAsSplit,
        Cleanup.unitAxesAroundAdd,
        Layout.constantMatmulIntoLinear,
        Fusion.batchNormFolding,
        Fusion.attention,
        Fusion.geglu,
        Fusion.convPrologue,
        Fusion.upsampleConv,
        Layout.movementIntoLinear,
        Fusion.layerNormLinear,
        Fusion.gegluLinear,
        Fusion.epilogues,
        Layout.transposeIntoMatmul,
        Cleanup.deadCode,
    ]

    /// Passes on the lowered plan (run by `Compiler` after lowering), switched off the same way.
    public static let planPasses = ["winograd", "winograd-f43", "winograd-16"]

    public static var names: [String] { Array(Set(standard.map(\.name) + planPasses)).sorted() }

    /// Runs the pipeline; `log` receives one line per pass.
    public static func run(_ graph: inout Graph, options: CompileOptions, log: (String) -> Void = { _ in }) throws -> [PassRecord] {
        if let unknown = options.disabled.first(where: { !names.contains($0) }) {
            throw IRError(node: "", "no pass is named '\(unknown)' (passes: \(names.joined(separator: ", ")))")
        }
        var records: [PassRecord] = []
        for pass in standard {
            let before = graph.nodes.count
            if options.disabled.contains(pass.name) {
                log("\(pass.name): disabled")
                continue
            }
            let start = ContinuousClock.now
            let changes = try pass.run(&graph, options)
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            if options.verifyEach {
                do { try graph.verify() } catch { throw IRError(node: error.node, "after pass \(pass.name): \(error.message)") }
            }
            records.append(PassRecord(name: pass.name, changes: changes, nodesBefore: before, nodesAfter: graph.nodes.count, seconds: seconds))
            log("\(pass.name): \(changes) change\(changes == 1 ? "" : "s"), \(before) → \(graph.nodes.count) nodes")
        }
        return records
    }
}

/// Uses of each value and the graph outputs, for legality checks.
struct Uses {
    let counts: [Int]
    let outputs: Set<ValueID>

    init(_ g: Graph) {
        var c = [Int](repeating: 0, count: g.values.count)
        for n in g.nodes { for v in n.inputs { c[v] += 1 } }
        counts = c
        outputs = Set(g.outputs.map(\.value))
    }

    /// A value a fusion may absorb: used exactly once, and not a graph output.
    func absorbable(_ v: ValueID) -> Bool { counts[v] == 1 && !outputs.contains(v) }
}

extension Graph {
    func producerNode(_ v: ValueID) -> (index: Int, node: Node)? {
        if case .node(let i, _) = values[v].definition { return (i, nodes[i]) }
        return nil
    }

    func scalarConstant(_ v: ValueID) -> Double? {
        guard let t = values[v].constant, t.count == 1 else { return nil }
        return t.converted(to: .f64).withElements(as: Double.self) { $0[0] }
    }
}
