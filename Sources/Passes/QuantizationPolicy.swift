import IR
import Tensors

/// One `--quant-rule PATTERN=FORMAT`: weights whose name matches the glob `PATTERN` (`*` any run of
/// characters, `?` one character; the whole name must match) are stored as `FORMAT`.
public struct QuantRule: Sendable, Equatable, CustomStringConvertible {
    public var pattern: String
    public var format: WeightFormat

    public init(pattern: String, format: WeightFormat) {
        self.pattern = pattern
        self.format = format
    }

    /// Parses `PATTERN=FORMAT` (FORMAT: f32, bf16, f16, int8, int8-block32, int8-block16).
    public init(parsing text: String) throws {
        guard let eq = text.lastIndex(of: "="), eq != text.startIndex else {
            throw IRError(node: "", "quantisation rule '\(text)': expected PATTERN=FORMAT, e.g. '*time_embed*=f32'")
        }
        let name = String(text[text.index(after: eq)...])
        guard let f = WeightFormat(userName: name) else {
            throw IRError(node: "", "quantisation rule '\(text)': '\(name)' is not a weight format (f32, bf16, f16, int8, int8-block32, int8-block16)")
        }
        self.init(pattern: String(text[..<eq]), format: f)
    }

    public var description: String { "\(pattern)=\(format.rawValue)" }

    public func matches(_ name: String) -> Bool { Self.glob(Array(pattern.utf8), Array(name.utf8)) }

    /// Iterative glob match with backtracking to the last `*`.
    static func glob(_ p: [UInt8], _ s: [UInt8]) -> Bool {
        var (i, j) = (0, 0)
        var star = -1, mark = 0
        while j < s.count {
            if i < p.count && (p[i] == UInt8(ascii: "?") || p[i] == s[j]) {
                i += 1; j += 1
            } else if i < p.count && p[i] == UInt8(ascii: "*") {
                star = i; mark = j; i += 1
            } else if star >= 0 {
                i = star + 1; mark += 1; j = mark
            } else {
                return false
            }
        }
        while i < p.count && p[i] == UInt8(ascii: "*") { i += 1 }
        return i == p.count
    }
}

/// Which format each convolution and linear weight is stored in: the user's rules in order (the first
/// that matches decides), then the model's exclusions (kept f32: first and last convolutions, the
/// time embedding ...), then the default format. Every other weight (norms, biases, embeddings)
/// stays as it is.
public struct QuantizationPolicy: Sendable {
    public var defaultFormat: WeightFormat = .f32
    public var rules: [QuantRule] = []
    /// Patterns the model definitions keep in f32 unless a rule says otherwise.
    public var exclusions: [String] = []

    public init(defaultFormat: WeightFormat = .f32, rules: [QuantRule] = [], exclusions: [String] = []) {
        self.defaultFormat = defaultFormat
        self.rules = rules
        self.exclusions = exclusions
    }

    /// The format of the weight `name`, and why (the rule, "excluded by the model", or "default").
    public func format(of name: String) -> (WeightFormat, String) {
        if let r = rules.first(where: { $0.matches(name) }) { return (r.format, "rule \(r)") }
        if let e = exclusions.first(where: { QuantRule(pattern: $0, format: .f32).matches(name) }) { return (.f32, "model keeps \(e)") }
        return (defaultFormat, "default")
    }

    /// Whether every weight stays f32.
    public var isIdentity: Bool { defaultFormat == .f32 && rules.allSatisfy { $0.format == .f32 } }
}
