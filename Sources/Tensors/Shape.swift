/// A static tensor shape: dimensions outermost first (NCHW for images, `[out, in]` for linear weights).
public struct Shape: Hashable, Sendable, Codable, CustomStringConvertible, ExpressibleByArrayLiteral {
    public var dims: [Int]

    public init(_ dims: [Int]) { self.dims = dims }
    public init(arrayLiteral elements: Int...) { self.dims = elements }

    public var rank: Int { dims.count }

    /// Number of elements. Traps on overflow: build shapes from untrusted input with `checkedCount`.
    public var count: Int { dims.reduce(1, *) }

    /// Number of elements, or nil when a dimension is negative or the product overflows `Int`.
    public static func checkedCount(_ dims: [Int]) -> Int? { Checked.count(dims) }

    /// Row-major strides in elements.
    public var contiguousStrides: [Int] {
        var strides = [Int](repeating: 1, count: dims.count)
        var s = 1
        for i in stride(from: dims.count - 1, through: 0, by: -1) {
            strides[i] = s
            s *= dims[i]
        }
        return strides
    }

    /// `[2, 3, 4]`
    public var description: String { "[" + dims.map(String.init).joined(separator: ", ") + "]" }
}
