import Tensors

/// Options of `convert`: which tensors, under which names, in which dtype.
public struct ConvertOptions: Sendable {
    /// Target dtype for floating-point tensors; integer and bool tensors keep theirs. nil: unchanged.
    public var dtype: DType?
    /// Keep only tensors whose (original) name starts with one of these; empty keeps all.
    public var selectPrefixes: [String] = []
    /// Removed from the start of names (the first that matches), after selection.
    public var stripPrefixes: [String] = []
    public var overwrite = false
    /// Largest piece of a tensor converted at once; bounds memory beyond the page cache.
    public var chunkBytes = 8 << 20

    public init(dtype: DType? = nil, selectPrefixes: [String] = [], stripPrefixes: [String] = [], overwrite: Bool = false) {
        self.dtype = dtype
        self.selectPrefixes = selectPrefixes
        self.stripPrefixes = stripPrefixes
        self.overwrite = overwrite
    }
}

/// What a conversion did.
public struct ConvertReport: Sendable {
    public var tensors = 0
    public var retyped = 0
    public var bytesRead = 0
    public var bytesWritten = 0
}

/// Progress of a long conversion, reported after each chunk.
public struct ConvertProgress: Sendable {
    public let tensor: Int
    public let tensorCount: Int
    public let bytesDone: Int
    public let bytesTotal: Int
}

/// Checkpoint → safetensors, tensor by tensor and chunk by chunk, so memory stays bounded by one
/// chunk plus the page cache whatever the checkpoint's size.
public enum Converter {
    public struct Item: Sendable {
        public let entry: TensorEntry
        public let name: String
        public let dtype: DType
    }

    /// The tensors that would be written, with their output names and dtypes.
    public static func plan(_ inputs: [Checkpoint], options: ConvertOptions) throws(CheckpointError) -> [Item] {
        var items: [Item] = []
        var origin: [String: String] = [:]
        for c in inputs {
            for e in c.tensors {
                if !options.selectPrefixes.isEmpty, !options.selectPrefixes.contains(where: { e.name.hasPrefix($0) }) { continue }
                var name = e.name
                if let p = options.stripPrefixes.first(where: { name.hasPrefix($0) }) { name.removeFirst(p.count) }
                guard !name.isEmpty else { throw CheckpointError(c.path, at: "tensor '\(e.name)'", "stripping the prefix leaves an empty name") }
                if let other = origin[name] {
                    throw CheckpointError(c.path, at: "tensor '\(e.name)'", "its output name '\(name)' is also that of a tensor from \(other)")
                }
                origin[name] = "'\(e.name)' in \(c.path)"
                let dtype = e.dtype.isFloatingPoint ? (options.dtype ?? e.dtype) : e.dtype
                items.append(Item(entry: e, name: name, dtype: dtype))
            }
        }
        if items.isEmpty {
            throw CheckpointError(inputs.first?.path ?? "", options.selectPrefixes.isEmpty ? "no tensors to write" : "no tensor matches --select \(options.selectPrefixes.joined(separator: ", "))")
        }
        return items
    }

    public static func convert(_ inputs: [Checkpoint], to path: String, options: ConvertOptions,
                               progress: ((ConvertProgress) -> Void)? = nil) throws(CheckpointError) -> ConvertReport {
        let items = try plan(inputs, options: options)
        var metadata = inputs.first?.metadata ?? []
        if !metadata.contains(where: { $0.0 == "format" }) { metadata.append(("format", "pt")) }
        let writer = try SafetensorsWriter(path: path, tensors: items.map { .init(name: $0.name, dtype: $0.dtype, shape: $0.entry.shape) },
                                           metadata: metadata, overwrite: options.overwrite)
        let total = items.reduce(0) { $0 + $1.entry.byteCount }
        var report = ConvertReport()
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: options.chunkBytes * 2 + 64, alignment: 64)
        defer { scratch.deallocate() }
        for (index, item) in items.enumerated() {
            let e = item.entry
            let retype = item.dtype != e.dtype
            // Chunks of the source sized so that the converted chunk also fits the scratch.
            let maxSource = max(e.dtype.byteSize, options.chunkBytes / max(1, item.dtype.byteSize) * e.dtype.byteSize)
            let result = Result { () throws(CheckpointError) in
                try e.forEachChunk(maxBytes: maxSource) { chunk throws(CheckpointError) in
                    if retype {
                        let n = chunk.count / e.dtype.byteSize
                        ElementConversion.convert(chunk, from: e.dtype, into: scratch, as: item.dtype, count: n)
                        try writer.write(UnsafeRawBufferPointer(rebasing: scratch[0..<(n * item.dtype.byteSize)]))
                    } else {
                        try writer.write(chunk)
                    }
                    report.bytesRead += chunk.count
                    progress?(ConvertProgress(tensor: index, tensorCount: items.count, bytesDone: report.bytesRead, bytesTotal: total))
                }
            }
            try result.get()
            report.tensors += 1
            if retype { report.retyped += 1 }
            report.bytesWritten += e.count * item.dtype.byteSize
        }
        try writer.finish()
        return report
    }
}
