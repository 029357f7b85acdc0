/// NumPy broadcasting of shapes: trailing axes aligned; each pair equal or one of them 1.
public func broadcastShapes(_ shapes: [[Int]]) -> [Int]? {
    let rank = shapes.map(\.count).max() ?? 0
    var out = [Int](repeating: 1, count: rank)
    for s in shapes {
        let offset = rank - s.count
        for (i, d) in s.enumerated() {
            let j = i + offset
            if out[j] == 1 {
                out[j] = d
            } else if d != 1 && d != out[j] {
                return nil
            }
        }
    }
    return out
}

/// Normalises a possibly negative axis for a tensor of `rank`, or nil when out of range.
public func normalizeAxis(_ axis: Int, rank: Int) -> Int? {
    let a = axis < 0 ? axis + rank : axis
    return (0..<max(rank, 1)).contains(a) ? a : nil
}
