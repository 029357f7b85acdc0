import Tensors

/// One tensor of a checkpoint, described but not loaded: the lazy weight index entry.
///
/// The bytes stay in the memory-mapped file until `load()` (zero-copy for contiguous tensors) or
/// `forEachChunk` (bounded memory, for streaming conversion) asks for them.
public struct TensorEntry: Sendable {
    public let name: String
    public let dtype: DType
    public let shape: Shape
    /// The mapped file holding the bytes.
    public let file: MappedFile
    /// Byte range in `file` of the storage the tensor views (for safetensors: exactly the tensor).
    public let storage: Range<Int>
    /// Offset of element `[0, 0, ...]` from the start of the storage, in elements.
    public let elementOffset: Int
    /// Strides in elements, one per dimension.
    public let strides: [Int]
    /// Name of the storage this tensor views, when the format has shared storages (torch zip).
    public let storageKey: String?

    public init(name: String, dtype: DType, shape: Shape, file: MappedFile, storage: Range<Int>,
                elementOffset: Int = 0, strides: [Int]? = nil, storageKey: String? = nil) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.file = file
        self.storage = storage
        self.elementOffset = elementOffset
        self.strides = strides ?? shape.contiguousStrides
        self.storageKey = storageKey
    }

    public var count: Int { shape.count }
    public var byteCount: Int { shape.count * dtype.byteSize }

    /// True when the elements are one dense row-major run in the storage (dimensions of size 1
    /// may have any stride).
    public var isContiguous: Bool {
        if count == 0 { return true }
        var expected = 1
        for d in stride(from: shape.rank - 1, through: 0, by: -1) where shape.dims[d] != 1 {
            if strides[d] != expected { return false }
            expected *= shape.dims[d]
        }
        return true
    }

    /// Byte range in the file of a contiguous tensor.
    public var contiguousRange: Range<Int>? {
        guard isContiguous else { return nil }
        let start = storage.lowerBound + elementOffset * dtype.byteSize
        return start..<(start + byteCount)
    }

    /// The tensor: a view into the mapped file when contiguous, else a gathered copy.
    public func load() -> Tensor {
        if let range = contiguousRange {
            return Tensor(dtype: dtype, shape: shape, storage: TensorStorage(file: file, range: range))
        }
        let out = Tensor.zeros(dtype, shape)
        let dst = out.storage.mutableBytes!
        var written = 0
        forEachChunk(maxBytes: Int.max) { chunk in
            UnsafeMutableRawBufferPointer(rebasing: dst[written..<(written + chunk.count)]).copyMemory(from: chunk)
            written += chunk.count
        }
        return out
    }

    /// Calls `body` with the tensor's bytes in row-major order, in pieces of at most `maxBytes`
    /// (at least one element), taken from the mapping: slices of it for a contiguous tensor,
    /// gathered rows for a strided one.
    public func forEachChunk<E: Error>(maxBytes: Int, _ body: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
        let size = dtype.byteSize
        let step = max(size, maxBytes / size * size)
        if let range = contiguousRange {
            var start = range.lowerBound
            while start < range.upperBound {
                let end = min(range.upperBound, start + step)
                try body(file.bytes(start..<end))
                start = end
            }
            return
        }
        // Strided: walk the index space; the innermost dimension is one row.
        let rank = shape.rank
        let rowLength = shape.dims[rank - 1]
        let rowStride = strides[rank - 1] * size
        let base = file.bytes(storage)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(step, byteCount), alignment: 64)
        defer { buffer.deallocate() }
        var filled = 0
        var index = [Int](repeating: 0, count: rank - 1)
        let rows = count / max(rowLength, 1)
        for _ in 0..<rows {
            var offset = elementOffset
            for d in 0..<(rank - 1) { offset += index[d] * strides[d] }
            var src = offset * size
            for _ in 0..<rowLength {
                if filled + size > buffer.count {
                    try body(UnsafeRawBufferPointer(rebasing: buffer[0..<filled]))
                    filled = 0
                }
                buffer.baseAddress!.advanced(by: filled)
                    .copyMemory(from: base.baseAddress!.advanced(by: src), byteCount: size)
                filled += size
                src += rowStride
            }
            var d = rank - 2
            while d >= 0 {
                index[d] += 1
                if index[d] < shape.dims[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        if filled > 0 { try body(UnsafeRawBufferPointer(rebasing: buffer[0..<filled])) }
    }
}
