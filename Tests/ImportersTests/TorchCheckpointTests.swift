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
