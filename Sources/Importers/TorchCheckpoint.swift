import Tensors

/// Reads `torch.save` zip files (.pt, .pth, .ckpt): `<root>/data.pkl` (the pickled object tree),
/// `<root>/data/<key>` (raw little-endian storage bytes, one record per storage), `<root>/byteorder`.
///
/// The pickle is parsed by `PickleMachine`, which names no code it does not know; tensors become
/// `TensorEntry`s viewing their storage records in the mapped file (views, storage offsets, strides
/// and storages shared between tensors all preserved, no bytes copied).
enum TorchCheckpoint {
    /// The first bytes of a legacy (pre-1.6, non-zip) `torch.save` file: protocol 2 + the magic
    /// number 0x1950a86a20f9469cfc6c as a LONG1.
    static let legacyMagic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    /// Limits of the walk over the unpickled tree.
    static let maxNodes = 1 << 22, maxName = 4096
    /// The most bytes a view that repeats its storage's elements may stand for.
    static let maxRepeatedBytes = 1 << 30

    struct Contents {
        var tensors: [TensorEntry]
        var skipped: [SkippedEntry]
        var wrapper: String?
    }

    static func read(_ file: MappedFile) throws(CheckpointError) -> Contents {
        let path = file.path
        let zip = try ZipArchive.read(file)
        let pickles = zip.records.filter { $0.name == "data.pkl" || $0.name.hasSuffix("/data.pkl") }
        guard let pkl = pickles.min(by: { $0.name.count < $1.name.count }) else {
            throw CheckpointError(path, "zip has no data.pkl record: not a torch.save checkpoint")
        }
        let root = String(pkl.name.dropLast("data.pkl".count))
        guard pkl.method == 0 else {
            throw CheckpointError(path, at: "zip record '\(pkl.name)'", "compressed record (method \(pkl.method)); torch.save writes stored records: re-save the file with torch.save")
        }
        if let bo = zip.record(root + "byteorder") {
            let order = String(decoding: file.bytes(bo.data), as: UTF8.self)
            guard order == "little" else {
                throw CheckpointError(path, at: "zip record '\(bo.name)'", "byte order '\(order)' is not supported (only little-endian)")
            }
        }

        // Persistent ids name storages; check each against its record once.
        var storages: [String: StorageRef] = [:]
        let load: (PickleValue, Int) throws(PickleMachine.Failure) -> PickleValue = { pid, offset throws(PickleMachine.Failure) in
            guard case .tuple(let t) = pid, t.count >= 5, case .string("storage") = t[0] else {
                throw PickleMachine.Failure(offset: offset, message: "persistent id \(pid.summary) is not a torch storage reference")
            }
            guard case .global(.storageType(let dtype)) = t[1] else {
                throw PickleMachine.Failure(offset: offset, message: "storage type is \(t[1].summary)")
            }
            guard case .string(let key) = t[2], case .int(let count) = t[4], count >= 0 else {
                throw PickleMachine.Failure(offset: offset, message: "malformed storage reference")
            }
            let ref = StorageRef(key: key, dtype: dtype, count: count)
            storages[key] = ref
            return .storage(ref)
        }
        var machine = PickleMachine(file.bytes(pkl.data), persistentLoad: load)
        let tree: PickleValue
        do { tree = try machine.run() } catch {
            throw CheckpointError(path, at: "\(pkl.name) offset \(error.offset)", error.message)
        }

        // Walk the tree into named entries.
        var contents = Contents(tensors: [], skipped: [], wrapper: nil)
        var start = tree
        if case .dict(let d) = tree, let sd = d.items.first(where: { if case .string("state_dict") = $0.0 { return true } else { return false } }),
           case .dict = sd.1 {
            contents.wrapper = "state_dict"
            for (k, v) in d.items {
                if case .string("state_dict") = k { continue }
                contents.skipped.append(SkippedEntry(name: keyName(k), summary: v.summary))
            }
            start = sd.1
        }
        // Iteratively, depth first in the tree's order. Shared (memoised) values are visited once per
        // reference, so a tree of few bytes can stand for an exponential number of paths: the walk
        // stops at `maxNodes` values, and names stop at `maxName` bytes.
        var names = Set<String>()
        var pending: [(PickleValue, String)] = [(start, "")]
        var visited = 0
        while let (v, name) = pending.popLast() {
            visited += 1
            guard visited <= maxNodes else {
                throw CheckpointError(path, at: pkl.name, "the object tree holds more than \(maxNodes) values once shared references are expanded")
            }
            guard name.utf8.count <= maxName else {
                throw CheckpointError(path, at: pkl.name, "a nested entry's name is longer than \(maxName) bytes")
            }
            func child(_ key: String) -> String { name.isEmpty ? key : name + "." + key }
            switch v {
            case .dict(let d):
                for (k, x) in d.items.reversed() { pending.append((x, child(keyName(k)))) }
            case .list(let l):
                for (i, x) in l.items.enumerated().reversed() { pending.append((x, child(String(i)))) }
            case .tuple(let t):
                for (i, x) in t.items.enumerated().reversed() { pending.append((x, child(String(i)))) }
            case .tensor(let t):
                let entryName = name.isEmpty ? "tensor" : name
                guard names.insert(entryName).inserted else {
                    throw CheckpointError(path, "two tensors are named '\(entryName)' once nested names are joined with '.'")
                }
                contents.tensors.append(try entry(t, entryName, root: root, zip: zip, file: file, pickle: pkl.name))
            default:
                contents.skipped.append(SkippedEntry(name: name.isEmpty ? "(root)" : name, summary: v.summary))
            }
        }
        return contents
    }

    private static func keyName(_ k: PickleValue) -> String {
        switch k {
        case .string(let s): return s
        case .int(let i): return String(i)
        default: return k.summary
        }
    }

    private static func entry(_ t: TensorRef, _ name: String, root: String, zip: ZipArchive, file: MappedFile,
                              pickle: String) throws(CheckpointError) -> TensorEntry {
        let path = file.path
        let at = "tensor '\(name)' (\(pickle) offset \(t.pickleOffset))"
        let recordName = root + "data/" + t.storage.key
        guard let record = zip.record(recordName) else {
            throw CheckpointError(path, at: at, "its storage '\(t.storage.key)' has no record '\(recordName)' in the zip")
        }
        guard record.method == 0 else {
            throw CheckpointError(path, at: "zip record '\(recordName)'", "compressed record (method \(record.method)); torch.save writes stored records")
        }
        let dtype = t.storage.dtype
        guard let needed = Checked.product(t.storage.count, dtype.byteSize, limit: Checked.maxBytes) else {
            throw CheckpointError(path, at: "zip record '\(recordName)'", "storage '\(t.storage.key)' declares \(t.storage.count) elements of \(dtype): larger than \(Checked.maxBytes >> 30) GB")
        }
        guard record.data.count >= needed else {
            throw CheckpointError(path, at: "zip record '\(recordName)'", "holds \(record.data.count) bytes, but storage '\(t.storage.key)' declares \(t.storage.count) elements of \(dtype) (\(needed) bytes): truncated")
        }
        guard let count = Checked.count(t.size) else { throw CheckpointError(path, at: at, "invalid size \(t.size)") }
        guard t.offset >= 0, t.stride.allSatisfy({ $0 >= 0 }) else {
            throw CheckpointError(path, at: at, "negative storage offset \(t.offset) or stride \(t.stride)")
        }
        if count > 0 {
            // The last element reached must lie inside the storage.
            guard let last = Checked.lastElement(offset: t.offset, sizes: t.size, strides: t.stride) else {
                throw CheckpointError(path, at: at, "size \(t.size) with stride \(t.stride) overflows")
            }
            guard last < t.storage.count else {
                throw CheckpointError(path, at: at, "view (offset \(t.offset), size \(t.size), stride \(t.stride)) reaches element \(last) of a storage of \(t.storage.count) elements")
            }
            // A view with more elements than its storage repeats elements (zero or overlapping
            // strides, as `expand` makes): converting it writes them all, so it may reach
            // `maxRepeatedBytes` at most (a few bytes of storage must not become terabytes).
            guard count <= t.storage.count || Checked.product(count, dtype.byteSize, limit: maxRepeatedBytes) != nil else {
                throw CheckpointError(path, at: at, "view (size \(t.size), stride \(t.stride)) repeats the \(t.storage.count) elements of its storage as \(count): more than \(maxRepeatedBytes >> 20) MB once written out")
            }
        }
        return TensorEntry(name: name, dtype: dtype, shape: Shape(t.size), file: file,
                           storage: record.data.lowerBound..<(record.data.lowerBound + needed),
                           elementOffset: t.offset, strides: t.stride, storageKey: t.storage.key)
    }
}
