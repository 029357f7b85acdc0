import Tensors

/// Writes `torch.save`-compatible zip checkpoints that `torch.load` (and our reader) read: a
/// protocol-2 pickle of an `OrderedDict` of tensors (optionally inside `{"state_dict": ...}`, as
/// Lightning checkpoints are), each tensor `_rebuild_tensor_v2` over its own storage record
/// `archive/data/N`. Records are stored uncompressed with their data 64-byte aligned (an extra field
/// pads the local header, as torch does); Zip64 structures are written when offsets pass 4 GB.
/// Tensors are streamed one at a time, so memory stays at one tensor.
public final class TorchCheckpointWriter {
    public struct Item: Sendable {
        public let name: String
        public let dtype: DType
        public let shape: Shape
        public init(name: String, dtype: DType, shape: Shape) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
        }
    }

    private struct Record {
        let name: String
        let crc: UInt32
        let size: Int
        let headerOffset: Int
    }

    private let output: OutputFile
    private let items: [Item]
    private let root: String
    private var records: [Record] = []
    private var next = 0

    static let storageNames: [DType: String] = [
        .f32: "FloatStorage", .f16: "HalfStorage", .bf16: "BFloat16Storage", .f64: "DoubleStorage", .i8: "CharStorage",
        .u8: "ByteStorage", .i16: "ShortStorage", .i32: "IntStorage", .i64: "LongStorage", .bool: "BoolStorage",
    ]

    public init(path: String, items: [Item], wrapper: String? = nil, archiveName: String = "archive", overwrite: Bool = false) throws(CheckpointError) {
        var names = Set<String>()
        for i in items where !names.insert(i.name).inserted { throw CheckpointError(path, "two tensors are named '\(i.name)'") }
        self.items = items
        root = archiveName
        do { output = try OutputFile(path: path, overwrite: overwrite) } catch { throw CheckpointError(path, error.message) }
        try record("data.pkl", Self.pickle(items, wrapper: wrapper))
        try record("byteorder", Array("little".utf8))
    }

    /// The pickle: `{wrapper: OrderedDict([(name, tensor), ...])}` or the OrderedDict alone.
    static func pickle(_ items: [Item], wrapper: String?) -> [UInt8] {
        var p: [UInt8] = [0x80, 0x02]
        func string(_ s: String) {
            let u = Array(s.utf8)
            p.append(0x58)
            withUnsafeBytes(of: UInt32(u.count).littleEndian) { p += $0 }
            p += u
        }
        func int(_ v: Int) {
            if let small = Int32(exactly: v) {
                p.append(0x4A)
                withUnsafeBytes(of: small.littleEndian) { p += $0 }
            } else {
                p += [0x8A, 8]
                withUnsafeBytes(of: Int64(v).littleEndian) { p += $0 }
            }
        }
        func global(_ module: String, _ name: String) { p += [0x63] + Array("\(module)\n\(name)\n".utf8) }
        func orderedDict() { global("collections", "OrderedDict"); p += [0x29, 0x52] }  // EMPTY_TUPLE, REDUCE
        if let wrapper {
            p.append(0x7D)  // EMPTY_DICT
            string(wrapper)
        }
        orderedDict()
        if !items.isEmpty {
            p.append(0x28)  // MARK
            for (i, item) in items.enumerated() {
                string(item.name)
                global("torch._utils", "_rebuild_tensor_v2")
                p.append(0x28)
                // Persistent id ('storage', torch.XStorage, key, 'cpu', numel).
                p.append(0x28)
                string("storage")
                global("torch", storageNames[item.dtype]!)
                string(String(i))
                string("cpu")
                int(item.shape.count)
                p += [0x74, 0x51]  // TUPLE, BINPERSID
                int(0)
                p.append(0x28); for d in item.shape.dims { int(d) }; p.append(0x74)
                p.append(0x28); for s in item.shape.contiguousStrides { int(s) }; p.append(0x74)
                p.append(0x89)  // requires_grad False
                orderedDict()   // backward hooks
                p += [0x74, 0x52]  // TUPLE, REDUCE
            }
            p.append(0x75)  // SETITEMS
        }
        if wrapper != nil { p.append(0x73) }  // SETITEM
        p.append(0x2E)
        return p
    }

    private func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    /// A local header whose data starts at a multiple of 64, then the data.
    private func record(_ name: String, _ data: [UInt8]) throws(CheckpointError) {
        let crc = data.withUnsafeBytes { CRC32.checksum($0) }
        try beginRecord(name, crc: crc, size: data.count)
        do { try output.write(data) } catch { throw CheckpointError(output.path, error.message) }
    }

    private func beginRecord(_ name: String, crc: UInt32, size: Int) throws(CheckpointError) {
        let full = Array("\(root)/\(name)".utf8)
        let offset = output.bytesWritten
        let fixed = 30 + full.count + 4  // header, name, padding field's own header
        let pad = (64 - (offset + fixed) % 64) % 64
        var h: [UInt8] = le(UInt32(0x0403_4B50)) + le(UInt16(45)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0))
        h += le(crc) + le(UInt32(size)) + le(UInt32(size)) + le(UInt16(full.count)) + le(UInt16(4 + pad)) + full
        h += le(UInt16(0x4246)) + le(UInt16(pad)) + [UInt8](repeating: 0x5A, count: pad)  // "FB" padding field
        do { try output.write(h) } catch { throw CheckpointError(output.path, error.message) }
        records.append(Record(name: "\(root)/\(name)", crc: crc, size: size, headerOffset: offset))
    }

    /// Writes the next tensor (in the order of `items`); its dtype and shape must match.
    public func write(_ tensor: Tensor) throws(CheckpointError) {
        guard next < items.count else { throw CheckpointError(output.path, "more tensors written than declared") }
        let item = items[next]
        guard tensor.dtype == item.dtype, tensor.shape == item.shape else {
            throw CheckpointError(output.path, "tensor '\(item.name)' is \(tensor.dtype)\(tensor.shape), declared \(item.dtype)\(item.shape)")
        }
        guard tensor.byteCount < Int(UInt32.max) else { throw CheckpointError(output.path, "tensor '\(item.name)' is larger than 4 GB") }
        try beginRecord("data/\(next)", crc: CRC32.checksum(tensor.bytes), size: tensor.byteCount)
        do { try output.write(tensor.bytes) } catch { throw CheckpointError(output.path, error.message) }
        next += 1
    }

    /// Writes the version record and the central directory, and moves the file into place.
    public func finish() throws(CheckpointError) {
        guard next == items.count else {
            output.discard()
            throw CheckpointError(output.path, "only \(next) of \(items.count) tensors were written")
        }
        try record("version", Array("3\n".utf8))
        let cdStart = output.bytesWritten
        var cd: [UInt8] = []
        for r in records {
            let name = Array(r.name.utf8)
            let needs64 = r.headerOffset >= 0xFFFF_FFFF
            let extra = needs64 ? le(UInt16(0x0001)) + le(UInt16(8)) + le(UInt64(r.headerOffset)) : []
            cd += le(UInt32(0x0201_4B50)) + le(UInt16(45)) + le(UInt16(45)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0))
            cd += le(r.crc) + le(UInt32(r.size)) + le(UInt32(r.size)) + le(UInt16(name.count)) + le(UInt16(extra.count)) + le(UInt16(0))
            cd += le(UInt16(0)) + le(UInt16(0)) + le(UInt32(0)) + le(UInt32(needs64 ? 0xFFFF_FFFF : r.headerOffset)) + name + extra
        }
        let cdEnd = cdStart + cd.count
        var tail: [UInt8] = []
        let zip64 = cdEnd >= 0xFFFF_FFFF || records.count >= 0xFFFF
        if zip64 {
            // Zip64 end of central directory record and locator.
            tail += le(UInt32(0x0606_4B50)) + le(UInt64(44)) + le(UInt16(45)) + le(UInt16(45)) + le(UInt32(0)) + le(UInt32(0))
            tail += le(UInt64(records.count)) + le(UInt64(records.count)) + le(UInt64(cd.count)) + le(UInt64(cdStart))
            tail += le(UInt32(0x0706_4B50)) + le(UInt32(0)) + le(UInt64(cdEnd)) + le(UInt32(1))
        }
        let count16 = UInt16(min(records.count, 0xFFFF))
        tail += le(UInt32(0x0605_4B50)) + le(UInt16(0)) + le(UInt16(0)) + le(zip64 ? 0xFFFF : count16) + le(zip64 ? 0xFFFF : count16)
        tail += le(UInt32(min(cd.count, 0xFFFF_FFFF))) + le(UInt32(zip64 ? 0xFFFF_FFFF : cdStart)) + le(UInt16(0))
        do {
            try output.write(cd + tail)
            try output.commit()
        } catch {
            throw CheckpointError(output.path, error.message)
        }
    }
}
