import Tensors

/// The type of every IR value: element type and static shape.
public struct TensorType: Hashable, Sendable, CustomStringConvertible {
    public var dtype: DType
    public var shape: Shape

    public init(_ dtype: DType, _ shape: Shape) {
        self.dtype = dtype
        self.shape = shape
    }

    public var rank: Int { shape.rank }
    public var dims: [Int] { shape.dims }
    public var count: Int { shape.count }
    /// Bytes of its elements, or nil when a dimension is negative or the size overflows `Int`.
    public var checkedByteCount: Int? { Checked.bytes(shape.dims, elementSize: dtype.byteSize, limit: .max) }

    /// `f32[1,4,64,64]`
    public var description: String { "\(dtype)[" + shape.dims.map(String.init).joined(separator: ",") + "]" }
}
