import Compilation
import Foundation
import Importers
import TestSupport
import IR
import ModelGraphs
import Passes
import Pipeline
import Tensors
import Testing

/// `compile --model diffbir-…` without `--text-encoder` runs the text encoder once per prompt and
/// stores the results (Compilation.PromptEmbeddings).
@Suite struct PromptBakingTests {
    /// A CLIP text tower with the real vocabulary (49408 tokens) and a small width, synthetic weights.
    static func textEncoder() throws -> (Graph, NetworkConfig) {
        var config = NetworkConfig()
        config.clip.width = 16
        config.clip.heads = 2
        config.clip.layers = 2
        var entries: [String: WeightFile.Entry] = [:]
        for (k, t) in try SynthLayout.sd21Zsnr.tensors(config).enumerated() where t.key.hasPrefix("cond_stage_model.") {
            let tensor = t.make(seed: UInt64(k), dtype: .f32)
            entries[t.key] = WeightFile.Entry(dtype: .f32, shape: t.shape, load: { tensor })
        }
        var graph = try Network.clipText.graph(config, inputs: Network.clipText.inputs(config, height: 64, width: 64))
        _ = try Network.clipText.bind(&graph, config: config, files: [WeightFile(path: "synthetic", entries: entries, firstKey: nil)])
        return (graph, config)
    }

    @Test func bakedEmbeddingsAreTheEncoderOnTheTokenizersTokens() throws {
        let (graph, config) = try Self.textEncoder()
        let prompts = (positive: "a sharp photo of a cat", negative: "blurry, low quality")
        let baked = try PromptEmbeddings.bake(text: graph, prompts: prompts, contextLength: config.clip.context_length)
        #expect(baked.map(\.name) == ["diffbir.text.positive", "diffbir.text.negative"])

        let tokenizer = try CLIPTokenizer(contextLength: config.clip.context_length)
        for (k, prompt) in [prompts.positive, prompts.negative].enumerated() {
            let ids = tokenizer.tokenize(prompt).map { Int64($0) }
            let tokens = Tensor(dtype: .i64, shape: [1, ids.count], storage: TensorStorage(byteCount: ids.count * 8))
            ids.withUnsafeBytes { tokens.storage.mutableBytes?.copyMemory(from: $0) }
            let reference = try #require(try Interpreter.run(graph, inputs: ["tokens": tokens], evaluator: ReferenceEvaluator())["context"])
            let got = baked[k].tensor
            #expect(got.shape == [1, 77, 16])
            let (a, b) = (got.floats(), reference.floats())
            let worst = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst < 1e-4, "prompt \(k): max |baked - reference| = \(worst)")
        }
        // Different prompts give different embeddings (the tokens reached the encoder).
        #expect(baked[0].tensor.floats() != baked[1].tensor.floats())
    }

    @Test func embeddingsFileOfTheWrongShapeIsRefused() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("text.safetensors")
        let t = Tensor([Float](repeating: 0, count: 77 * 8), shape: [1, 77, 8])
        try SafetensorsWriter.write(path: path, tensors: [("positive", t), ("negative", t)])
        #expect(throws: PromptEmbeddingError.self) { try PromptEmbeddings.load(path, contextDim: 16) }
        let loaded = try PromptEmbeddings.load(path, contextDim: 8)
        #expect(loaded.map(\.name) == ["diffbir.text.positive", "diffbir.text.negative"])
    }
}
