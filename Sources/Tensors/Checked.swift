/// Checked arithmetic for sizes, counts, offsets and strides read from files: every reader computes
/// them here, so that no value in a file can overflow an `Int` (which traps) or stand for more than
/// a stated limit. Each returns nil where the result would be negative, overflow or exceed `limit`.
public enum Checked {
    /// The most bytes any one tensor or section read from a file may take (1 TB): larger sizes are
    /// refused before any arithmetic on them can overflow.
    public static let maxBytes = 1 << 40

    /// A size computed in floating point (a dimension times a scale), as an `Int`: nil when it is not
    /// finite, negative, or above `limit` (default 2⁴⁰), where converting would trap.
    public static func size(_ v: Double, limit: Int = 1 << 40) -> Int? {
        guard v.isFinite, v >= 0, v <= Double(limit) else { return nil }
        return Int(v)
    }

    /// a + b.
    public static func sum(_ a: Int, _ b: Int, limit: Int = .max) -> Int? {
        guard a >= 0, b >= 0 else { return nil }
        let (s, o) = a.addingReportingOverflow(b)
        return o || s > limit ? nil : s
    }

    /// The sum of `values`, every one non-negative.
    public static func sum(_ values: [Int], limit: Int = .max) -> Int? {
        var total = 0
        for v in values {
            guard let t = sum(total, v, limit: limit) else { return nil }
            total = t
        }
        return total
    }

    /// a · b.
    public static func product(_ a: Int, _ b: Int, limit: Int = .max) -> Int? {
        guard a >= 0, b >= 0 else { return nil }
        let (p, o) = a.multipliedReportingOverflow(by: b)
        return o || p > limit ? nil : p
    }

    /// The number of elements of `dims`.
    public static func count(_ dims: [Int], limit: Int = .max) -> Int? {
        var n = 1
        for d in dims {
            guard let p = product(n, d) else { return nil }
            n = p
        }
        return n <= limit ? n : nil
    }

    /// The bytes of `dims` elements of `elementSize` bytes, at most `limit` (default `maxBytes`).
    public static func bytes(_ dims: [Int], elementSize: Int, limit: Int = maxBytes) -> Int? {
        count(dims).flatMap { product($0, elementSize, limit: limit) }
    }

    /// `offset ..< offset + length` when it lies inside `0 ..< size`.
    public static func range(offset: Int, length: Int, within size: Int) -> Range<Int>? {
        guard offset >= 0, length >= 0, offset <= size, length <= size - offset else { return nil }
        return offset ..< (offset + length)
    }

    /// The last element a strided view reaches, `offset + Σ (size − 1)·stride` (the view has at
    /// least one element), for non-negative offsets and strides.
    public static func lastElement(offset: Int, sizes: [Int], strides: [Int]) -> Int? {
        guard sizes.count == strides.count, offset >= 0, sizes.allSatisfy({ $0 > 0 }) else { return nil }
        var last = offset
        for (s, st) in zip(sizes, strides) {
            guard let step = product(s - 1, st), let next = sum(last, step) else { return nil }
            last = next
        }
        return last
    }
}
