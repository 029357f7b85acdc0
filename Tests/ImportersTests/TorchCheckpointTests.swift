import Foundation
import Testing
@testable import Importers
import Tensors
import TestSupport

/// Reads the fixtures written by `Tools/fixtures/make_checkpoint_fixtures.py make` (real torch.save
/// files) and compares each tensor with the crc32 the script recorded from torch.
@Suite struct TorchCheckpointTests {
    static func record(_ file: String) throws -> [String: [String: Any]] {
        let files = try Fixtures.json("checkpoints/record.json")["files"] as! [String: Any]
        return files[file] as! [String: [String: Any]]
    }

    /// Every tensor of `file` matches the record: dtype, shape and the crc32 of its contiguous bytes.
    static func expectMatchesRecord(_ file: String, rename: (String) -> String = { $0 }) throws {
        let checkpoint = try Checkpoint.open(Fixtures.path("checkpoints/" + file))
        let expected = try record(file)
        #expect(checkpoint.tensors.count == expected.count)
        for t in checkpoint.tensors {
            let e = try #require(expected[rename(t.name)], "unexpected tensor \(t.name)")
            #expect(t.dtype.rawValue == e["dtype"] as? String, "\(t.name)")
            #expect(t.shape.dims == e["shape"] as? [Int], "\(t.name)")
            let tensor = t.load()
            #expect(crc32(tensor.bytes) == UInt32(e["crc32"] as! Int), "\(file): \(t.name)")
        }
    }

    @Test func everyDtype() throws {
        try Self.expectMatchesRecord("dtypes.pt")
        let c = try Checkpoint.open(Fixtures.path("checkpoints/dtypes.pt"))
        #expect(Set(c.tensors.map(\.dtype)) == Set(DType.allCases))
    }

    @Test func viewsOffsetsStridesAndSharedStorage() throws {
        try Self.expectMatchesRecord("views.pt")
        let c = try Checkpoint.open(Fixtures.path("checkpoints/views.pt"))
        let byName = Dictionary(uniqueKeysWithValues: c.tensors.map { ($0.name, $0) })
        let base = try #require(byName["base"])
        // Shared storages are one record; contiguous views are zero-copy views of the mapping.
        #expect(byName["shared_a"]?.storageKey == base.storageKey)
        #expect(byName["shared_b"]?.storageKey == base.storageKey)
        #expect(byName["shared_b"]?.elementOffset == 12)
        #expect(byName["row_slice"]?.load().storage.isMapped == true)
        #expect(byName["transposed"]?.isContiguous == false)
        #expect(byName["transposed"]?.load().floats() == [0, 6, 12, 18, 1, 7, 13, 19, 2, 8, 14, 20, 3, 9, 15, 21, 4, 10, 16, 22, 5, 11, 17, 23])
        #expect(byName["column"]?.load().floats() == [2, 8, 14, 20])
        #expect(byName["expanded"]?.strides == [1, 0])
    }

    /// The form torch uses for newer dtypes: `_rebuild_tensor_v3` over an untyped (byte-counted)
    /// storage, offsets and strides in elements of the separately given dtype.
    @Test func rebuildTensorV3UntypedStorage() throws {
        try Self.expectMatchesRecord("rebuild_v3.pt")
        let c = try Checkpoint.open(Fixtures.path("checkpoints/rebuild_v3.pt"))
        #expect(c.tensors.map(\.dtype) == [.f32, .f16, .i64])
        #expect(c.tensors[1].elementOffset == 6 && c.tensors[1].strides == [5, 1])
    }

    @Test func unsupportedDtypeIsNamed() {
        let error = #expect(throws: CheckpointError.self) { try Checkpoint.open(Fixtures.path("checkpoints/uint16.pt")) }
        #expect(error?.description.contains("tensor of dtype torch.uint16, which this build does not read") == true, "\(error?.description ?? "")")
    }

    @Test func lightningCheckpointWithExtraObjects() throws {
        try Self.expectMatchesRecord("lightning.ckpt")
        let c = try Checkpoint.open(Fixtures.path("checkpoints/lightning.ckpt"))
        #expect(c.wrapper == "state_dict")
        #expect(c.tensors.map(\.name) == ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias"])
        let skipped = Set(c.skipped.map(\.name))
        #expect(skipped.isSuperset(of: ["epoch", "global_step", "callbacks", "optimizer_states", "hyper_parameters"]))
    }

    @Test func fp16DataParallelCheckpoint() throws {
        try Self.expectMatchesRecord("fp16_dataparallel.ckpt")
        let c = try Checkpoint.open(Fixtures.path("checkpoints/fp16_dataparallel.ckpt"))
        #expect(c.tensors.allSatisfy { $0.name.hasPrefix("module.") && $0.dtype == .f16 })
    }

    /// Pickles that call os.system, eval and subprocess.Popen are refused when the global is
    /// named, and the command they carry never runs (its marker file is never created).
    @Test(arguments: [("evil_os_system.pt", "posix.system", "/tmp/diffbir-evil-os-system"),
                      ("evil_eval.pt", "builtins.eval", "/tmp/diffbir-evil-eval"),
                      ("evil_popen.pt", "subprocess.Popen", "/tmp/diffbir-evil-popen")])
    func maliciousPicklesAreRefused(file: String, global: String, marker: String) throws {
        unlink(marker)
        let error = #expect(throws: CheckpointError.self) { try Checkpoint.open(Fixtures.path("checkpoints/" + file)) }
        let text = error?.description ?? ""
        #expect(text.contains("refused global '\(global)'"), "\(text)")
        #expect(text.contains("data.pkl offset "), "\(text)")
        #expect(text.contains(file))
        #expect(access(marker, F_OK) != 0, "the payload ran")
    }

    @Test(arguments: [
        ("missing_record.pt", "has no record"),
        ("short_record.pt", "truncated"),
        ("legacy.pt", "legacy torch.save format"),
    ])
    func damagedFiles(file: String, phrase: String) {
        let error = #expect(throws: CheckpointError.self) { try Checkpoint.open(Fixtures.path("checkpoints/" + file)) }
        #expect(error?.description.contains(phrase) == true, "\(error?.description ?? "")")
    }

    /// A file cut anywhere is an error naming the file, never a crash.
    @Test func truncatedAnywhere() throws {
        let dir = TemporaryDirectory()
        let source = Fixtures.path("checkpoints/lightning.ckpt")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: source)[.size] as? Int)
        for length in [0, 3, 10, 100, size / 3, size / 2, size - 30, size - 1] {
            let path = dir.file("cut-\(length).ckpt")
            try copyFile(source, path, truncatedTo: length)
            let error = #expect(throws: CheckpointError.self) { try Checkpoint.open(path) }
            #expect(error?.description.hasPrefix(path) == true)
        }
    }

    /// Every single-byte corruption of the pickle either still parses or fails with an error.
    @Test func flippedBytesInThePickleNeverCrash() throws {
        let source = Fixtures.path("checkpoints/lightning.ckpt")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: source)))
        let zip = try ZipArchive.read(try MappedFile(path: source))
        let pkl = try #require(zip.records.first { $0.name.hasSuffix("data.pkl") })
        let dir = TemporaryDirectory()
        let path = dir.file("flipped.ckpt")
        var failures = 0
        for offset in pkl.data {
            var copy = bytes
            copy[offset] ^= 0x5A
            try Data(copy).write(to: URL(fileURLWithPath: path))
            do { _ = try Checkpoint.open(path) } catch { failures += 1 }
        }
        #expect(failures > 0)
    }
}

/// The pickle machine on hand-written byte strings.
@Suite struct PickleMachineTests {
    func run(_ bytes: [UInt8]) throws(PickleMachine.Failure) -> PickleValue {
        let result = bytes.withUnsafeBytes { buf in
            Result { () throws(PickleMachine.Failure) -> PickleValue in
                var m = PickleMachine(buf) { _, offset throws(PickleMachine.Failure) in
                    throw PickleMachine.Failure(offset: offset, message: "no persistent ids here")
                }
                return try m.run()
            }
        }
        return try result.get()
    }

    @Test func dictOfValues() throws {
        // {'a': 1, 'b': [2.5, None]} (protocol 2)
        let v = try run([0x80, 0x02, 0x7D, 0x28, 0x58, 1, 0, 0, 0, 0x61, 0x4B, 1, 0x58, 1, 0, 0, 0, 0x62, 0x5D, 0x28,
                         0x47, 0x40, 0x04, 0, 0, 0, 0, 0, 0, 0x4E, 0x65, 0x75, 0x2E])
        guard case .dict(let d) = v else { Issue.record("not a dict"); return }
        #expect(d.items.count == 2)
        guard case .list(let l) = d.items[1].1, case .float(let f) = l.items[0] else { Issue.record("bad list"); return }
        #expect(f == 2.5)
    }

    @Test func longIntegers() throws {
        // LONG1 with 2 bytes 0xFF 0x7F = 32767; LONG1 0x00 0x80 = -32768 (two's complement)
        guard case .int(let a) = try run([0x8A, 2, 0xFF, 0x7F, 0x2E]) else { Issue.record(); return }
        guard case .int(let b) = try run([0x8A, 2, 0x00, 0x80, 0x2E]) else { Issue.record(); return }
        #expect(a == 32767 && b == -32768)
    }

    @Test(arguments: [
        ([0x80, 0x02, 0xFF] as [UInt8], "unknown pickle opcode 0xFF", 2),
        ([0x80, 0x02, 0x2E], "stack underflow", 2),
        ([0x80, 0x02, 0x4E, 0x86, 0x2E], "stack underflow", 3),
        ([0x74, 0x2E], "no mark", 0),
        ([0x68, 7, 0x2E], "memo entry 7", 0),
        ([0x58, 0xFF, 0xFF, 0, 0, 0x61], "runs past the end", 0),
        ([0x4E], "truncated", 1),
        ([0x28, 0x4E, 0x86, 0x2E], "stack underflow", 2),
        ([0x63] + Array("os\nsystem\n".utf8) + [0x2E], "refused global 'os.system'", 0),
        ([0x8C, 5] + Array("posix".utf8) + [0x8C, 6] + Array("system".utf8) + [0x93, 0x2E], "refused global 'posix.system'", 15),
        ([0x4E, 0x29, 0x52, 0x2E], "not callable", 2),
    ])
    func malformedPickles(bytes: [UInt8], phrase: String, offset: Int) {
        do {
            _ = try run(bytes)
            Issue.record("accepted \(bytes)")
        } catch {
            #expect(error.message.contains(phrase), "\(error.message)")
            #expect(error.offset == offset)
        }
    }
}

/// Hostile checkpoints: structures that would crash, hang or exhaust memory a naive reader are
/// refused with an error naming the file.
@Suite struct HostileCheckpointTests {
    /// A stored (uncompressed) zip of `records`, as torch.save lays them out (CRCs left at zero:
    /// the reader does not check them).
    static func zip(_ records: [(String, [UInt8])]) -> [UInt8] {
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        var out: [UInt8] = [], cd: [UInt8] = []
        for (name, data) in records {
            let n = Array(name.utf8), offset = out.count
            out += le(UInt32(0x0403_4B50)) + le(UInt16(20)) + [UInt8](repeating: 0, count: 8) + le(UInt32(0))
            out += le(UInt32(data.count)) + le(UInt32(data.count)) + le(UInt16(n.count)) + le(UInt16(0)) + n + data
            cd += le(UInt32(0x0201_4B50)) + le(UInt16(20)) + le(UInt16(20)) + [UInt8](repeating: 0, count: 8) + le(UInt32(0))
            cd += le(UInt32(data.count)) + le(UInt32(data.count)) + le(UInt16(n.count)) + [UInt8](repeating: 0, count: 8)
            cd += le(UInt32(0)) + le(UInt32(offset)) + n
        }
        let start = out.count
        out += cd + le(UInt32(0x0605_4B50)) + le(UInt32(0)) + le(UInt16(records.count)) + le(UInt16(records.count))
        out += le(UInt32(cd.count)) + le(UInt32(start)) + le(UInt16(0))
        return out
    }

    /// Opens a checkpoint of `pickle` (and `extra` records) and returns the error's text.
    static func refusal(_ pickle: [UInt8], extra: [(String, [UInt8])] = [], duplicatePickle: Bool = false) throws -> String {
        let dir = TemporaryDirectory()
        let path = dir.file("hostile.pt")
        var records = [("archive/data.pkl", pickle)] + extra
        if duplicatePickle { records.append(("archive/data.pkl", [0x4E, 0x2E])) }
        try Data(zip(records)).write(to: URL(fileURLWithPath: path))
        do {
            _ = try Checkpoint.open(path)
            return "accepted"
        } catch {
            #expect(error.description.hasPrefix(path), "\(error.description)")
            return error.description
        }
    }

    // Pickle pieces.
    static func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
    static func long8(_ v: Int) -> [UInt8] { [0x8A, 8] + withUnsafeBytes(of: Int64(v).littleEndian) { Array($0) } }
    static func string(_ s: String) -> [UInt8] { [0x8C, UInt8(s.utf8.count)] + Array(s.utf8) }
    /// `_rebuild_tensor_v2(storage('0', FloatStorage, 6 elements), 0, size, stride, False, OrderedDict())`.
    static func tensor(size: [Int], stride: [Int], storageElements: Int = 6) -> [UInt8] {
        var p: [UInt8] = [0x80, 0x02] + global("torch._utils", "_rebuild_tensor_v2") + [0x28]
        p += [0x28] + string("storage") + global("torch", "FloatStorage") + string("0") + string("cpu") + long8(storageElements) + [0x74, 0x51]
        p += [0x4B, 0]
        p += [0x28] + size.flatMap(long8) + [0x74]
        p += [0x28] + stride.flatMap(long8) + [0x74]
        p += [0x89] + global("collections", "OrderedDict") + [0x29, 0x52]
        return p + [0x74, 0x52, 0x2E]
    }
    static let storage: [(String, [UInt8])] = [("archive/data/0", [UInt8](repeating: 0, count: 24))]

    @Test func theFixtureTensorItselfIsRead() throws {
        // (The hand-made tensor pickle is well formed: a 2 × 3 view of its 6 floats loads.)
        #expect(try Self.refusal(Self.tensor(size: [2, 3], stride: [3, 1]), extra: Self.storage) == "accepted")
    }

    @Test func aListOrDictThatContainsItselfIsRefused() throws {
        // l = []; l.append(l)      d = {}; d['a'] = d
        let list: [UInt8] = [0x80, 0x02, 0x5D, 0x71, 0, 0x68, 0, 0x61, 0x2E]
        let dict: [UInt8] = [0x80, 0x02, 0x7D, 0x71, 0] + Self.string("a") + [0x68, 0, 0x73, 0x2E]
        // a = []; b = [a]; a.append(b): a is already inside b
        let mutual: [UInt8] = [0x80, 0x02, 0x5D, 0x71, 0, 0x30, 0x5D, 0x71, 1, 0x68, 0, 0x61, 0x30, 0x68, 0, 0x68, 1, 0x61, 0x2E]
        for p in [list, dict, mutual] {
            let message = try Self.refusal(p)
            #expect(message.contains("self-referencing"), "\(message)")
        }
    }

    @Test func deepNestingIsRefused() throws {
        // ((((…),),),) 100 000 levels deep: the reader would recurse (and so would freeing it).
        let p: [UInt8] = [0x80, 0x02, 0x29] + [UInt8](repeating: 0x85, count: 100_000) + [0x2E]
        let message = try Self.refusal(p)
        #expect(message.contains("nested deeper than 1000"), "\(message)")
    }

    @Test func sharedReferencesAreCountedWhenExpanded() throws {
        // x₀ = (); xᵢ = (xᵢ₋₁, xᵢ₋₁) through the memo, 60 levels: 2⁶⁰ paths in a few hundred bytes.
        var p: [UInt8] = [0x80, 0x02, 0x29, 0x71, 0]
        for i in 1...60 { p += [0x30, 0x68, UInt8(i - 1), 0x68, UInt8(i - 1), 0x86, 0x71, UInt8(i)] }
        p.append(0x2E)
        let message = try Self.refusal(p)
        #expect(message.contains("more than \(TorchCheckpoint.maxNodes) values"), "\(message)")
    }

    @Test func twoRecordsOfTheSameNameAreRefused() throws {
        // torch.load would read the last data.pkl, we the first: neither is trusted.
        let message = try Self.refusal([0x80, 0x02, 0x7D, 0x2E], duplicatePickle: true)
        #expect(message.contains("two records"), "\(message)")
    }

    /// Found by fuzzing: a 54-byte zip whose zip64 locator made a size computation go negative
    /// (trapped); and a 22-byte one whose directory names a local header.
    @Test func tinyZipsAreRefused() throws {
        let fuzzed: [UInt8] = [0x50, 0x4b, 0x03, 0x04, 0x00, 0x00, 0x08, 0xd5, 0xd5, 0x00, 0x00, 0x00, 0x50, 0x4b, 0x06, 0x07,
                               0x00, 0x00, 0x00, 0x00, 0x29, 0x0b, 0x8a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
                               0x50, 0x4b, 0x05, 0x06, 0x00, 0x00, 0xfe, 0xff, 0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x75,
                               0x20, 0x00, 0x00, 0x00, 0x00, 0x00]
        let dir = TemporaryDirectory()
        for (name, bytes) in [("fuzzed.pt", fuzzed), ("eocd-only.pt", [0x50, 0x4b, 0x05, 0x06] + [UInt8](repeating: 0, count: 18))] {
            let path = dir.file(name)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let error = #expect(throws: CheckpointError.self) { try Checkpoint.open(path) }
            #expect(error?.description.hasPrefix(path) == true, "\(error?.description ?? "")")
        }
    }

    @Test func viewsThatRepeatOrOverflowAreRefused() throws {
        // 2⁴⁰ elements over a 6-element storage (stride 0): would be written out as 4 TB.
        let repeating = try Self.refusal(Self.tensor(size: [1 << 40], stride: [0]), extra: Self.storage)
        #expect(repeating.contains("repeats the 6 elements"), "\(repeating)")
        // size × stride past Int.max.
        let overflow = try Self.refusal(Self.tensor(size: [1 << 62, 4], stride: [4, 1]), extra: Self.storage)
        #expect(overflow.contains("overflow") || overflow.contains("invalid size"), "\(overflow)")
        // A storage whose byte size overflows.
        let huge = try Self.refusal(Self.tensor(size: [2], stride: [1], storageElements: Int.max / 2), extra: Self.storage)
        #expect(huge.contains("larger than 1024 GB"), "\(huge)")
    }
}
