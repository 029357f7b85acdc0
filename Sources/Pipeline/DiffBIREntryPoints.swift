import Plan
import Tensors

/// A DiffBIR plan's entry points as typed calls: the names of the entries and of their tensors
/// (what `compile --model diffbir-…` builds) are written here and nowhere else in the pipeline.
public struct DiffBIREntryPoints {
    public enum Entry: String, CaseIterable, Sendable {
        case stage1, encode, denoise, decode, text

        /// The input whose height and width the plan fixed (the tile), for tiling.
        var spatialInput: String {
            switch self {
            case .stage1, .encode: return "image"
            case .denoise: return "x"
            case .decode: return "latent"
            case .text: return "tokens"
            }
        }
    }

    let program: Program
    /// Runs an entry point on named inputs, giving its named outputs.
    let call: (Entry, [String: Tensor]) throws -> [String: Tensor]

    /// The outputs each entry must have (a plan compiled by an older version may lack some).
    static let requiredOutputs: [(Entry, String)] = [(.stage1, "image"), (.encode, "latent"), (.encode, "std"), (.denoise, "out"), (.decode, "image")]

    /// The spatial size (height = width) the plan compiled `entry` for.
    public func tileSize(_ entry: Entry) -> Int {
        program.entry(entry.rawValue)?.inputs.first { $0.name == entry.spatialInput }?.shape.dims[2] ?? 0
    }

    func output(_ entry: Entry, _ outputs: [String: Tensor], _ name: String) throws -> Tensor {
        guard let t = outputs[name] else { throw RestoreError("entry point '\(entry.rawValue)' gave no output '\(name)'") }
        return t
    }

    /// Stage 1: the restoration network on an image tile `[1, 3, H, W]` in [0, 1].
    public func stage1(image: Tensor) throws -> Tensor {
        try output(.stage1, call(.stage1, ["image": image]), "image")
    }

    /// The VAE encoder on an image tile in [-1, 1]: the posterior's mean and std, both × 0.18215.
    public func encode(image: Tensor) throws -> (latent: Tensor, std: Tensor) {
        let r = try call(.encode, ["image": image])
        return (try output(.encode, r, "latent"), try output(.encode, r, "std"))
    }

    /// One denoiser evaluation (IRControlNet + UNet) on a latent tile.
    public func denoise(x: Tensor, t: Tensor, hint: Tensor, context: Tensor, controlScale: Tensor) throws -> Tensor {
        try output(.denoise, call(.denoise, ["x": x, "t": t, "hint": hint, "context": context, "control_scale": controlScale]), "out")
    }

    /// The VAE decoder on a latent tile.
    public func decode(latent: Tensor) throws -> Tensor {
        try output(.decode, call(.decode, ["latent": latent]), "image")
    }

    /// The CLIP text encoder on token ids `[1, 77]` (i64).
    public func text(tokens: Tensor) throws -> Tensor {
        let r = try call(.text, ["tokens": tokens])
        guard let context = r["context"] ?? r.values.first else { throw RestoreError("entry point 'text' gave no output") }
        return context
    }
}
