import Tensors

/// The safetensors format: `u64 little-endian N`, `N` bytes of JSON header, then the data section.
///
/// The header maps each tensor name to `{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}`
/// (offsets relative to the data section) and may hold `"__metadata__": {string: string}`. The reader
/// checks what the reference implementation checks: known dtype, non-negative shape, byte count equal
/// to elements × size, offsets that tile the data section exactly (no gap, no overlap, nothing after).
public struct SafetensorsFile: Sendable {
    public let path: String
    public let file: MappedFile
    /// Length of the JSON header in bytes (the data section starts at `8 + headerLength`).
    public let headerLength: Int
    public let metadata: [(String, String)]
    /// Tensors in header order.
    public let tensors: [TensorEntry]

    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderLength = 100_000_000

    public static func open(_ path: String) throws(CheckpointError) -> SafetensorsFile {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw CheckpointError(path, error.message) }
        return try read(file)
    }

    public static func read(_ file: MappedFile) throws(CheckpointError) -> SafetensorsFile {
        let path = file.path
        let bytes = file.bytes
        guard bytes.count >= 8 else {
            throw CheckpointError(path, "file of \(bytes.count) bytes is too short to hold a safetensors header length")
        }
        let n = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard n <= UInt64(maxHeaderLength) else {
            throw CheckpointError(path, at: "byte 0", "header length \(n) exceeds the \(maxHeaderLength)-byte limit")
        }
        let headerLength = Int(n)
        guard 8 + headerLength <= bytes.count else {
            throw CheckpointError(path, at: "byte 0", "header length \(headerLength) runs past the end of the file (\(bytes.count) bytes): truncated or not a safetensors file")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + headerLength)])
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw CheckpointError(path, at: "byte 8", "header does not start with '{'")
        }
        let header: JSONValue
        do { header = try JSONParser.parse(headerBytes) } catch {
            throw CheckpointError(path, at: "header byte \(8 + error.offset)", "invalid JSON: \(error.message)")
        }
        guard case .object(let members) = header else { throw CheckpointError(path, at: "byte 8", "header is not a JSON object") }

        let dataStart = 8 + headerLength
        let dataSize = bytes.count - dataStart
        var metadata: [(String, String)] = []
        var parsed: [(name: String, dtype: DType, shape: Shape, begin: Int, end: Int)] = []
        var seen = Set<String>()
        for (name, value) in members {
            func bad(_ message: String) -> CheckpointError { CheckpointError(path, at: "header, tensor '\(name)'", message) }
            if name == "__metadata__" {
                guard case .object(let entries) = value else { throw CheckpointError(path, at: "header, __metadata__", "is not an object of strings") }
                for (k, v) in entries {
                    guard case .string(let s) = v else {
                        throw CheckpointError(path, at: "header, __metadata__", "value of '\(k)' is \(v.kind), not a string")
                    }
                    metadata.append((k, s))
                }
                continue
            }
            guard seen.insert(name).inserted else { throw bad("appears twice") }
            guard case .object(let fields) = value else { throw bad("is \(value.kind), not an object") }
            func field(_ key: String) throws(CheckpointError) -> JSONValue {
                guard let v = fields.first(where: { $0.0 == key })?.1 else { throw bad("has no \"\(key)\"") }
                return v
            }
            guard case .string(let dtypeName) = try field("dtype") else { throw bad("\"dtype\" is not a string") }
            guard let dtype = DType(safetensorsName: dtypeName) else {
                throw bad("unknown dtype \"\(dtypeName)\" (this build reads \(DType.allCases.map(\.safetensorsName).joined(separator: ", ")))")
            }
            guard case .array(let shapeValues) = try field("shape") else { throw bad("\"shape\" is not an array") }
            var dims: [Int] = []
            for d in shapeValues {
                guard case .integer(let v) = d, v >= 0 else { throw bad("\"shape\" has an entry that is not a non-negative integer") }
                dims.append(Int(v))
            }
            guard let size = Checked.bytes(dims, elementSize: dtype.byteSize) else {
                throw bad("shape \(Shape(dims)) is too large")
            }
            guard case .array(let offsets) = try field("data_offsets"), offsets.count == 2,
                  case .integer(let b) = offsets[0], case .integer(let e) = offsets[1], b >= 0, e >= 0 else {
                throw bad("\"data_offsets\" is not a pair of non-negative integers")
            }
            guard b <= e else { throw bad("data_offsets [\(b), \(e)] are misordered (begin after end)") }
            guard e - b == Int64(size) else {
                throw bad("data_offsets [\(b), \(e)] hold \(e - b) bytes but \(dtype.safetensorsName)\(Shape(dims)) needs \(size)")
            }
            guard e <= Int64(dataSize) else {
                throw bad("data_offsets [\(b), \(e)] run past the end of the data section (\(dataSize) bytes): the file is truncated")
            }
            parsed.append((name, dtype, Shape(dims), Int(b), Int(e)))
        }

        // The offsets must tile the data section: sorted by begin, each starts where the last ended.
        var cursor = 0
        var previous = "the start of the data section"
        for t in parsed.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            if t.begin < cursor {
                throw CheckpointError(path, at: "header, tensor '\(t.name)'", "data_offsets [\(t.begin), \(t.end)] overlap \(previous) (which ends at \(cursor))")
            }
            if t.begin > cursor {
                throw CheckpointError(path, at: "header, tensor '\(t.name)'", "data_offsets [\(t.begin), \(t.end)] leave a gap after \(previous) (which ends at \(cursor))")
            }
            cursor = t.end
            previous = "tensor '\(t.name)'"
        }
        if cursor != dataSize {
            throw CheckpointError(path, at: "byte \(dataStart + cursor)", "\(dataSize - cursor) bytes after the last tensor are not described by the header")
        }
        let tensors = parsed.map { t in
            TensorEntry(name: t.name, dtype: t.dtype, shape: t.shape, file: file,
                        storage: (dataStart + t.begin)..<(dataStart + t.end))
        }
        return SafetensorsFile(path: path, file: file, headerLength: headerLength, metadata: metadata, tensors: tensors)
    }
}

/// Streams a safetensors file to disk: the header first, then each tensor's bytes in header order.
///
/// The header is padded with spaces so that the data section starts 64 bytes into a page-aligned
/// mapping (`8 + N` is a multiple of 64). Writes go through `OutputFile`: nothing appears at the
/// target path until `finish()` succeeds.
public final class SafetensorsWriter {
    public struct Item: Sendable {
        public let name: String
        public let dtype: DType
        public let shape: Shape
        public init(name: String, dtype: DType, shape: Shape) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
        }
        public var byteCount: Int { shape.count * dtype.byteSize }
    }

    public static let alignment = 64

    private let output: OutputFile
    private let items: [Item]
    private var current = 0
    private var writtenInCurrent = 0
    private let dataStart: Int

    public init(path: String, tensors: [Item], metadata: [(String, String)] = [], overwrite: Bool = false) throws(CheckpointError) {
        var names = Set<String>()
        for t in tensors where !names.insert(t.name).inserted {
            throw CheckpointError(path, "two tensors are named '\(t.name)'")
        }
        if tensors.contains(where: { $0.name == "__metadata__" }) {
            throw CheckpointError(path, "a tensor cannot be named '__metadata__'")
        }
        var header = SafetensorsWriter.header(tensors: tensors, metadata: metadata)
        let unpadded = 8 + header.utf8.count
        let padded = (unpadded + Self.alignment - 1) / Self.alignment * Self.alignment
        header += String(repeating: " ", count: padded - unpadded)
        do {
            let out = try OutputFile(path: path, overwrite: overwrite)
            let length = UInt64(header.utf8.count)
            try out.write((0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) } + Array(header.utf8))
            output = out
        } catch {
            throw CheckpointError(path, error.message)
        }
        items = tensors
        dataStart = padded
        skipEmpty()
    }

    static func header(tensors: [Item], metadata: [(String, String)]) -> String {
        var members: [(String, JSONValue)] = []
        if !metadata.isEmpty { members.append(("__metadata__", .object(metadata.map { ($0.0, .string($0.1)) }))) }
        var offset = 0
        for t in tensors {
            members.append((t.name, .object([
                ("dtype", .string(t.dtype.safetensorsName)),
                ("shape", .array(t.shape.dims.map { .integer(Int64($0)) })),
                ("data_offsets", .array([.integer(Int64(offset)), .integer(Int64(offset + t.byteCount))])),
            ])))
            offset += t.byteCount
        }
        return JSONValue.object(members).serialized
    }

    private func skipEmpty() {
        while current < items.count, writtenInCurrent == items[current].byteCount {
            current += 1
            writtenInCurrent = 0
        }
    }

    /// Appends bytes of the tensors in order; a call may span tensor boundaries.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        var remaining = bytes.count
        while remaining > 0 {
            guard current < items.count else {
                throw CheckpointError(output.path, "more bytes written than the header describes")
            }
            let n = min(remaining, items[current].byteCount - writtenInCurrent)
            writtenInCurrent += n
            remaining -= n
            skipEmpty()
        }
        do { try output.write(bytes) } catch { throw CheckpointError(output.path, error.message) }
    }

    /// Checks that every tensor was written in full and moves the file into place.
    public func finish() throws(CheckpointError) {
        guard current == items.count else {
            output.discard()
            throw CheckpointError(output.path, "tensor '\(items[current].name)' was not written in full")
        }
        do { try output.commit() } catch { throw CheckpointError(output.path, error.message) }
    }

    /// Writes whole tensors (as `Tensor`s, dtype and shape must match the items) in one call.
    public static func write(path: String, tensors: [(String, Tensor)], metadata: [(String, String)] = [],
                             overwrite: Bool = false) throws(CheckpointError) {
        let writer = try SafetensorsWriter(path: path, tensors: tensors.map { Item(name: $0.0, dtype: $0.1.dtype, shape: $0.1.shape) },
                                           metadata: metadata, overwrite: overwrite)
        for (_, t) in tensors { try writer.write(t.bytes) }
        try writer.finish()
    }
}
