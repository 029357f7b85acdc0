/// The bytes behind a tensor: either owned (64-byte aligned, zero-initialised) or a view into a
/// memory-mapped file, which it keeps alive. Storage is immutable once shared; only owned storage
/// exposes mutable bytes, for the code that fills it.
public final class TensorStorage: @unchecked Sendable {
    /// Alignment of owned storage in bytes (one AVX-512 register, one cache line).
    public static let alignment = 64

    private enum Backing {
        case owned
        case mapped(MappedFile)
    }

    private let backing: Backing
    public let bytes: UnsafeRawBufferPointer

    /// Zero-filled owned storage of `byteCount` bytes.
    public init(byteCount: Int) {
        precondition(byteCount >= 0)
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: Self.alignment)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
        backing = .owned
        bytes = UnsafeRawBufferPointer(start: p, count: byteCount)
    }

    /// A view of `range` in a mapped file.
    public init(file: MappedFile, range: Range<Int>) {
        backing = .mapped(file)
        bytes = file.bytes(range)
    }

    deinit {
        if case .owned = backing, let base = bytes.baseAddress {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }

    public var isMapped: Bool {
        if case .mapped = backing { return true }
        return false
    }

    /// Writable bytes of owned storage; nil for a mapped view.
    public var mutableBytes: UnsafeMutableRawBufferPointer? {
        guard case .owned = backing else { return nil }
        return UnsafeMutableRawBufferPointer(mutating: bytes)
    }
}
