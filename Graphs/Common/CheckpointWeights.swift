import Importers

extension WeightFile {
    /// A checkpoint's tensors for the binder: any format `Checkpoint.open` reads (safetensors,
    /// PyTorch zip or legacy pickle, ncnn, ...), each tensor loaded only when bound.
    public static func open(_ path: String) throws -> WeightFile {
        let checkpoint = try Checkpoint.open(path)
        var entries: [String: Entry] = [:]
        for e in checkpoint.tensors { entries[e.name] = Entry(dtype: e.dtype, shape: e.shape, load: { e.load() }) }
        return WeightFile(path: path, entries: entries, firstKey: checkpoint.tensors.first?.name)
    }
}
