import Tensors

/// A non-tensor entry of a checkpoint (training state, hyper-parameters, ...), listed and skipped.
public struct SkippedEntry: Sendable, Equatable {
    public let name: String
    public let summary: String
}

/// A checkpoint opened for reading: its format and the lazy index of its tensors.
public struct Checkpoint: Sendable {
    public enum Format: String, Sendable {
        case safetensors
        case torch = "torch-zip"
    }

    public let path: String
    public let format: Format
    /// Tensors in file order (safetensors: header order; torch: pickle order).
    public let tensors: [TensorEntry]
    /// `__metadata__` of a safetensors file.
    public let metadata: [(String, String)]
    /// Non-tensor entries that were skipped.
    public let skipped: [SkippedEntry]
    /// The key the tensors were found under when the file wraps them (Lightning's `state_dict`).
    public let wrapper: String?

    /// Opens `path`, recognising the format by its first bytes (not its extension).
    public static func open(_ path: String) throws(CheckpointError) -> Checkpoint {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw CheckpointError(path, error.message) }
        let head = Array(file.bytes(0..<min(16, file.size)))
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || head.starts(with: [0x50, 0x4B, 0x05, 0x06]) {
            let c = try TorchCheckpoint.read(file)
            return Checkpoint(path: path, format: .torch, tensors: c.tensors, metadata: [], skipped: c.skipped, wrapper: c.wrapper)
        }
        if head.starts(with: TorchCheckpoint.legacyMagic) {
            throw CheckpointError(path, "legacy torch.save format (PyTorch < 1.6, not a zip) is not read; convert it once with a recent PyTorch: python -c \"import torch; torch.save(torch.load('IN', weights_only=True), 'OUT.pt')\"")
        }
        if head.count >= 9, head[8] == UInt8(ascii: "{") {
            let st = try SafetensorsFile.read(file)
            return Checkpoint(path: path, format: .safetensors, tensors: st.tensors, metadata: st.metadata, skipped: [], wrapper: nil)
        }
        if head.count < 9 {
            throw CheckpointError(path, "file of \(file.size) bytes is too short to be a checkpoint")
        }
        let hex = head.prefix(8).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
        throw CheckpointError(path, "unrecognised format (first bytes \(hex)): expected safetensors (8-byte length, then '{') or a torch.save zip ('PK')")
    }

    public var totalBytes: Int { tensors.reduce(0) { $0 + $1.byteCount } }
    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.count } }
}
