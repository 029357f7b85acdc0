/// An einsum equation with explicit output, labels as small integers; an ellipsis is expanded into
/// fresh labels once the operand ranks are known.
public struct EinsumSpec: Hashable, Sendable {
    /// Labels of each operand's axes.
    public var operands: [[Int]]
    /// Labels of the output's axes.
    public var output: [Int]

    /// Parses `"bij,bjk->bik"`; without `->` the output is the labels used once, in alphabetical
    /// order (NumPy's rule). `ranks` are the operands' ranks, needed to expand `...`.
    public static func parse(_ equation: String, ranks: [Int]) -> EinsumSpec? {
        let text = equation.filter { !$0.isWhitespace }
        let parts = text.split(separator: "->", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2 else { return nil }
        let lhs = parts[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard lhs.count == ranks.count else { return nil }
        var ellipsisRank = 0
        var operands: [[Int]] = []
        for (term, rank) in zip(lhs, ranks) {
            guard let labels = labels(term) else { return nil }
            let explicit = labels.filter { $0 >= 0 }.count
            if labels.contains(-1) {
                guard rank >= explicit else { return nil }
                ellipsisRank = max(ellipsisRank, rank - explicit)
            } else if explicit != rank {
                return nil
            }
            operands.append(labels)
        }
        // Ellipsis axes get labels 100, 101, ... aligned to the right (broadcast like NumPy).
        func expand(_ labels: [Int], rank: Int) -> [Int] {
            guard let e = labels.firstIndex(of: -1) else { return labels }
            let n = rank - (labels.count - 1)
            let fresh = (0..<n).map { 100 + ellipsisRank - n + $0 }
            return Array(labels[..<e]) + fresh + Array(labels[(e + 1)...])
        }
        let expanded = zip(operands, ranks).map { expand($0, rank: $1) }
        var output: [Int]
        if parts.count == 2 {
            guard let out = labels(parts[1]) else { return nil }
            output = out.contains(-1) ? expand(out, rank: out.count - 1 + ellipsisRank) : out
        } else {
            var counts: [Int: Int] = [:]
            for l in expanded.joined() { counts[l, default: 0] += 1 }
            output = (0..<ellipsisRank).map { 100 + $0 } + counts.filter { $0.value == 1 && $0.key < 100 }.keys.sorted()
        }
        let all = Set(expanded.joined())
        guard Set(output).isSubset(of: all), Set(output).count == output.count else { return nil }
        return EinsumSpec(operands: expanded, output: output)
    }

    /// Letters as 0-51, `...` as -1.
    private static func labels(_ term: String) -> [Int]? {
        var out: [Int] = []
        var chars = Array(term)
        var i = 0
        while i < chars.count {
            if chars[i] == "." {
                guard i + 2 < chars.count, chars[i + 1] == ".", chars[i + 2] == ".", !out.contains(-1) else { return nil }
                out.append(-1)
                i += 3
                continue
            }
            guard let a = chars[i].asciiValue else { return nil }
            switch a {
            case 97...122: out.append(Int(a) - 97)
            case 65...90: out.append(Int(a) - 65 + 26)
            default: return nil
            }
            i += 1
        }
        chars = []
        return out
    }

    /// The size of each label, or nil when operands disagree (size-1 ellipsis axes broadcast).
    public func labelSizes(_ shapes: [[Int]]) -> [Int: Int]? {
        var sizes: [Int: Int] = [:]
        for (labels, dims) in zip(operands, shapes) {
            for (l, d) in zip(labels, dims) {
                if let s = sizes[l], s != d {
                    if l >= 100, s == 1 || d == 1 { sizes[l] = max(s, d); continue }
                    return nil
                }
                sizes[l] = d
            }
        }
        return sizes
    }
}
