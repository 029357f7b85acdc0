import Importers
import IR
import Passes
import Pipeline
import Tensors

/// The two prompt embeddings a DiffBIR plan carries as constants (`diffbir.text.positive`,
/// `diffbir.text.negative`) when its text encoder is left out.
public enum PromptEmbeddings {
    public static let names = ["positive", "negative"]

    public static func constantName(_ name: String) -> String { "diffbir.text." + name }

    /// Runs the text encoder `text` (input `tokens` [1, L] int64, output `context`) once per prompt.
    public static func bake(text: Graph, prompts: (positive: String, negative: String), contextLength: Int) throws
        -> [(name: String, tensor: Tensor)] {
        let tokenizer = try CLIPTokenizer(contextLength: contextLength)
        var out: [(name: String, tensor: Tensor)] = []
        for (name, prompt) in zip(names, [prompts.positive, prompts.negative]) {
            let ids = tokenizer.tokenize(prompt).map { Int64($0) }
            let tokens = Tensor(dtype: .i64, shape: [1, ids.count], storage: TensorStorage(byteCount: ids.count * 8))
            guard let bytes = tokens.storage.mutableBytes else { throw PromptEmbeddingError("cannot allocate the prompt's tokens") }
            ids.withUnsafeBytes { bytes.copyMemory(from: $0) }
            let results = try Interpreter.run(text, inputs: ["tokens": tokens], evaluator: FastEvaluator())
            guard let context = results["context"] else { throw PromptEmbeddingError("the text encoder has no output 'context'") }
            out.append((constantName(name), context))
        }
        return out
    }

    /// Reads `positive` and `negative` from a checkpoint (`compile --prompt-embeddings FILE`), each
    /// [1, 77, contextDim].
    public static func load(_ path: String, contextDim: Int) throws -> [(name: String, tensor: Tensor)] {
        let checkpoint = try Checkpoint.open(path)
        return try names.map { name in
            guard let t = checkpoint.tensors.first(where: { $0.name == name }) else { throw PromptEmbeddingError("\(path): no tensor '\(name)'") }
            let want: Shape = [1, 77, contextDim]
            guard t.shape == want else { throw PromptEmbeddingError("\(path): '\(name)' is \(t.shape), the UNet takes \(want)") }
            return (constantName(name), t.load().converted(to: .f32))
        }
    }
}

public struct PromptEmbeddingError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
