/// A dense, row-major tensor: dtype, static shape and the storage holding exactly its bytes.
public struct Tensor: Sendable {
    public let dtype: DType
    public let shape: Shape
    public let storage: TensorStorage

    /// Wraps `storage`, whose size must be `shape.count * dtype.byteSize` bytes.
    public init(dtype: DType, shape: Shape, storage: TensorStorage) {
        precondition(storage.bytes.count == shape.count * dtype.byteSize,
                     "storage of \(storage.bytes.count) bytes for \(dtype)\(shape)")
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
    }

    /// A zero-filled tensor in owned storage.
    public static func zeros(_ dtype: DType, _ shape: Shape) -> Tensor {
        Tensor(dtype: dtype, shape: shape, storage: TensorStorage(byteCount: shape.count * dtype.byteSize))
    }

    /// A float32 tensor holding `values` (row-major).
    public init(_ values: [Float], shape: Shape) {
        precondition(values.count == shape.count, "\(values.count) values for shape \(shape)")
        let storage = TensorStorage(byteCount: values.count * 4)
        values.withUnsafeBytes { storage.mutableBytes!.copyMemory(from: $0) }
        self.init(dtype: .f32, shape: shape, storage: storage)
    }

    public var count: Int { shape.count }
    public var byteCount: Int { storage.bytes.count }
    public var bytes: UnsafeRawBufferPointer { storage.bytes }

    /// The elements as `T`, which must have the dtype's size.
    public func withElements<T, R>(as type: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
        precondition(MemoryLayout<T>.stride == dtype.byteSize, "\(T.self) does not match \(dtype)")
        return try bytes.withMemoryRebound(to: T.self, body)
    }

    /// The values as float32 (floating and integer dtypes; bool as 0/1).
    public func floats() -> [Float] {
        if dtype == .f32 { return withElements(as: Float.self) { Array($0) } }
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBytes { dst in
            ElementConversion.convert(bytes, from: dtype, into: dst, as: .f32, count: count)
        }
        return out
    }

    /// A copy in `target`; float ↔ float conversions round to nearest even, float → integer
    /// truncates toward zero (saturating), as a C cast would within range.
    public func converted(to target: DType) -> Tensor {
        if target == dtype { return self }
        let out = Tensor.zeros(target, shape)
        ElementConversion.convert(bytes, from: dtype, into: out.storage.mutableBytes!, as: target, count: count)
        return out
    }
}
