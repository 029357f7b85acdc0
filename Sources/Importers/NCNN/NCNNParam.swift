/// The text `.param` file of an ncnn model (ncnn's `src/net.cpp` reads the same grammar):
///
/// ```
/// 7767517                                   magic
/// LAYER_COUNT BLOB_COUNT
/// TYPE NAME BOTTOM_COUNT TOP_COUNT BOTTOM... TOP... [ID=VALUE]...
/// ```
///
/// One layer a line. `ID` is 0...31; a value is an integer, or a float when it holds `.`, `e` or
/// `E`. Arrays use the key `-23300 - ID` and the value `COUNT,V1,V2,...`. Blobs are named by the
/// layers that produce them (each once) and consumed by later layers only.

/// One parameter value as written.
public enum NCNNValue: Sendable, Equatable {
    case int(Int)
    case float(Float)
    case array([Float])
}

/// A layer line of a `.param` file.
public struct NCNNLayer: Sendable {
    public var type: String
    public var name: String
    public var bottoms: [String]
    public var tops: [String]
    public var params: [Int: NCNNValue]
    /// 1-based line in the `.param` file.
    public var line: Int
}

/// A parsed `.param` file.
public struct NCNNParamFile: Sendable {
    public var path: String
    public var layers: [NCNNLayer]
    public var blobCount: Int

    /// The largest counts a file may declare (ncnn models have a few thousand layers at most).
    public static let maximumLayers = 1 << 20
    public static let maximumBlobsPerLayer = 1 << 12
    public static let maximumArrayLength = 1 << 20

    public static let magic = 7767517

    /// Parses the text of a `.param` file; every error names the line.
    public static func parse(_ text: String, path: String) throws(CheckpointError) -> NCNNParamFile {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().lazy
            .map { (number: $0.offset + 1, tokens: $0.element.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })) }
            .filter { !$0.tokens.isEmpty }
            .makeIterator()
        func fail(_ line: Int, _ message: String) -> CheckpointError { CheckpointError(path, at: "line \(line)", message) }
        guard let first = lines.next() else { throw CheckpointError(path, "empty file: not an ncnn .param file") }
        guard first.tokens.count == 1, Int(first.tokens[0]) == magic else {
            throw fail(first.number, "not an ncnn .param file: the first line must be the magic number \(magic)"
                       + " (a binary .param.bin is not read; convert it with ncnn's ncnn2table or export the text form)")
        }
        guard let counts = lines.next() else { throw CheckpointError(path, "the layer and blob counts are missing after the magic number") }
        guard counts.tokens.count == 2, let layerCount = Int(counts.tokens[0]), let blobCount = Int(counts.tokens[1]),
              (1...maximumLayers).contains(layerCount), (1...(maximumLayers * 4)).contains(blobCount) else {
            throw fail(counts.number, "expected 'LAYER_COUNT BLOB_COUNT' (1 to \(maximumLayers) layers)")
        }
        var layers: [NCNNLayer] = []
        layers.reserveCapacity(layerCount)
        var produced = Set<String>()
        while let l = lines.next() {
            let t = l.tokens
            guard layers.count < layerCount else { throw fail(l.number, "more layers than the \(layerCount) the header declares") }
            guard t.count >= 4, let nb = Int(t[2]), let nt = Int(t[3]), (0...maximumBlobsPerLayer).contains(nb),
                  (0...maximumBlobsPerLayer).contains(nt), t.count >= 4 + nb + nt else {
                throw fail(l.number, "expected 'TYPE NAME BOTTOM_COUNT TOP_COUNT BOTTOMS... TOPS... PARAMS...'")
            }
            let type = String(t[0]), name = String(t[1])
            let bottoms = t[4..<(4 + nb)].map(String.init)
            let tops = t[(4 + nb)..<(4 + nb + nt)].map(String.init)
            for b in bottoms where !produced.contains(b) {
                throw fail(l.number, "layer '\(name)' reads blob '\(b)', which no earlier layer produces")
            }
            for top in tops {
                guard produced.insert(top).inserted else { throw fail(l.number, "layer '\(name)' produces blob '\(top)', which already exists") }
            }
            var params: [Int: NCNNValue] = [:]
            for token in t[(4 + nb + nt)...] {
                let kv = token.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard kv.count == 2, let key = Int(kv[0]) else { throw fail(l.number, "layer '\(name)': parameter '\(token)' is not ID=VALUE") }
                let isArray = key <= -23300
                let id = isArray ? -key - 23300 : key
                guard (0..<32).contains(id) else { throw fail(l.number, "layer '\(name)': parameter id \(key) is out of range (0...31, or -23300...-23331 for arrays)") }
                guard params[id] == nil else { throw fail(l.number, "layer '\(name)': parameter \(id) is given twice") }
                if isArray {
                    let parts = kv[1].split(separator: ",", omittingEmptySubsequences: false)
                    guard let n = Int(parts[0]), (0...maximumArrayLength).contains(n), parts.count == n + 1 else {
                        throw fail(l.number, "layer '\(name)': array parameter \(id) must be COUNT,V1,...,VCOUNT")
                    }
                    var values: [Float] = []
                    for p in parts.dropFirst() {
                        guard let v = Float(p), v.isFinite else { throw fail(l.number, "layer '\(name)': array parameter \(id) has the non-number '\(p)'") }
                        values.append(v)
                    }
                    params[id] = .array(values)
                } else if kv[1].contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) {
                    guard let v = Float(kv[1]), !v.isNaN else { throw fail(l.number, "layer '\(name)': parameter \(id) is not a number: '\(kv[1])'") }
                    params[id] = .float(v)
                } else {
                    guard let v = Int(kv[1]) else { throw fail(l.number, "layer '\(name)': parameter \(id) is not an integer: '\(kv[1])'") }
                    params[id] = .int(v)
                }
            }
            layers.append(NCNNLayer(type: type, name: name, bottoms: bottoms, tops: tops, params: params, line: l.number))
        }
        guard layers.count == layerCount else {
            throw CheckpointError(path, "the header declares \(layerCount) layers, the file has \(layers.count)")
        }
        guard produced.count == blobCount else {
            throw CheckpointError(path, "the header declares \(blobCount) blobs, the layers produce \(produced.count)")
        }
        return NCNNParamFile(path: path, layers: layers, blobCount: blobCount)
    }
}

extension NCNNLayer {
    /// An integer parameter (a float one is refused: ncnn would read its bits as an integer).
    public func int(_ id: Int, _ defaultValue: Int) throws(CheckpointError) -> Int {
        switch params[id] {
        case nil: return defaultValue
        case .int(let v): return v
        default: throw error("parameter \(id) must be an integer")
        }
    }

    /// A float parameter (an integer one is read as its value).
    public func float(_ id: Int, _ defaultValue: Float) throws(CheckpointError) -> Float {
        switch params[id] {
        case nil: return defaultValue
        case .float(let v): return v
        case .int(let v): return Float(v)
        case .array: throw error("parameter \(id) must be a number, not an array")
        }
    }

    public func array(_ id: Int) throws(CheckpointError) -> [Float] {
        switch params[id] {
        case nil: return []
        case .array(let v): return v
        default: throw error("parameter \(id) must be an array (key \(-23300 - id))")
        }
    }

    /// An integer array parameter.
    public func ints(_ id: Int) throws(CheckpointError) -> [Int] {
        try array(id).map { v throws(CheckpointError) -> Int in
            guard v == v.rounded(), abs(v) < 1e9 else { throw error("array parameter \(id) must hold integers") }
            return Int(v)
        }
    }

    /// An error that names this layer and its line.
    public func error(_ message: String, path: String = "") -> CheckpointError {
        CheckpointError(path, at: "line \(line), layer '\(name)' (\(type))", message)
    }
}
