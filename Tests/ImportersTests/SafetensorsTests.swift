import Foundation
import Testing
@testable import Importers
import Tensors
import TestSupport

@Suite struct SafetensorsTests {
    /// A file written by the Python `safetensors` package: every dtype, and its metadata.
    @Test func readsWhatPythonWrote() throws {
        let path = Fixtures.path("checkpoints/python_written.safetensors")
        let file = try SafetensorsFile.open(path)
        let metadata = Dictionary(uniqueKeysWithValues: file.metadata)
        #expect(metadata == (try Fixtures.json("checkpoints/record.json")["python_written_metadata"] as? [String: String]))
        try TorchCheckpointTests.expectMatchesRecord("python_written.safetensors")
        // Zero-copy: contiguous tensors are views of the mapping.
        #expect(file.tensors.allSatisfy { $0.load().storage.isMapped })
    }

    /// What `diffbir convert` wrote was checked by the Python package, bit for bit against torch
    /// (`make_checkpoint_fixtures.py check-swift`, which records the result). The writer must still
    /// produce exactly those bytes, so that the record still holds.
    @Test(arguments: [("swift_written.safetensors", nil as DType?), ("swift_written_f16.safetensors", .f16),
                      ("swift_written_bf16.safetensors", .bf16)])
    func writerOutputIsWhatPythonVerified(file: String, dtype: DType?) throws {
        let check = try #require(try Fixtures.json("checkpoints/swift_written.check.json")[file] as? [String: Any])
        #expect(check["ok"] as? Bool == true)
        let dir = TemporaryDirectory()
        let out = dir.file(file)
        let inputs = try ["dtypes.pt", "views.pt"].map { try Checkpoint.open(Fixtures.path("checkpoints/" + $0)) }
        _ = try Converter.convert(inputs, to: out, options: ConvertOptions(dtype: dtype))
        let written = try Data(contentsOf: URL(fileURLWithPath: out))
        let committed = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("checkpoints/" + file)))
        #expect(written == committed)
        #expect(written.withUnsafeBytes { crc32($0) } == UInt32(check["crc32_file"] as! Int))
        #expect((check["data_offset"] as! Int) % 64 == 0)
    }

    @Test func roundTripEveryDtypeAligned() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("all.safetensors")
        var tensors: [(String, Tensor)] = []
        for (i, d) in DType.allCases.enumerated() {
            tensors.append((d.rawValue, Tensor((0..<(i + 3)).map { Float($0) - 1 }, shape: [i + 3]).converted(to: d)))
        }
        tensors.append(("empty", Tensor.zeros(.f32, [0, 4])))
        tensors.append(("scalar", Tensor([7], shape: [])))
        try SafetensorsWriter.write(path: path, tensors: tensors, metadata: [("k", "v \"quoted\"\n")])
        let file = try SafetensorsFile.open(path)
        #expect((8 + file.headerLength) % 64 == 0)
        #expect(file.metadata.first?.1 == "v \"quoted\"\n")
        #expect(file.tensors.map(\.name) == tensors.map(\.0))
        for (t, (_, original)) in zip(file.tensors, tensors) {
            #expect(t.dtype == original.dtype && t.shape == original.shape)
            #expect(Array(t.load().bytes) == Array(original.bytes))
        }
    }

    /// Writes `8-byte length + header + data` for the malformed-file tests.
    static func craft(_ path: String, header: String, data: [UInt8], length: UInt64? = nil) throws {
        let h = Array(header.utf8)
        let n = length ?? UInt64(h.count)
        let bytes = (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) } + h + data
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    @Test(arguments: [
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, nil as UInt64?, "" as String),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, nil, "run past the end of the data section"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 1000, "runs past the end of the file"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, nil, "misordered"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, nil, "overlap"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, nil, "leave a gap"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, nil, "not described by the header"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, nil, "needs 12"),
        ("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, nil, "unknown dtype \"F8_E4M3\""),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, nil, "non-negative"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, nil, "invalid JSON"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, nil, "too large"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, nil, "has no \"data_offsets\""),
        ("{\"__metadata__\":{\"k\":1}}", 0, nil, "not a string"),
        ("[]", 0, nil, "does not start with '{'"),
        // Two entries of one name: readers differ on which counts.
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, nil,
         "duplicate key \"a\""),
        // A name with control characters is shown escaped in the one-line error.
        ("{\"\\u001b[2J\\n\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, nil, "\\u{1B}[2J\\u{A}"),
    ])
    func malformedHeaders(header: String, dataBytes: Int, length: UInt64?, phrase: String) throws {
        let dir = TemporaryDirectory()
        let path = dir.file("bad.safetensors")
        try Self.craft(path, header: header, data: [UInt8](repeating: 0, count: dataBytes), length: length)
        if phrase.isEmpty {
            #expect(try SafetensorsFile.open(path).tensors.count == 1)
            return
        }
        let error = #expect(throws: CheckpointError.self) { try SafetensorsFile.open(path) }
        #expect(error?.description.contains(phrase) == true, "\(error?.description ?? "")")
        #expect(error?.description.hasPrefix(path) == true)
    }

    @Test func truncatedFiles() throws {
        let dir = TemporaryDirectory()
        let source = Fixtures.path("checkpoints/python_written.safetensors")
        for length in [0, 5, 8, 20, 200, 4000] {
            let path = dir.file("cut.safetensors")
            try copyFile(source, path, truncatedTo: length)
            let error = #expect(throws: CheckpointError.self) { try Checkpoint.open(path) }
            #expect(error?.description.hasPrefix(path) == true)
        }
    }

    @Test func jsonParser() throws {
        let v = try JSONParser.parse(#"{"a": [1, -2.5e3, true, null, "x\u00e9\ud83d\ude00\n"], "b": {}}"#)
        #expect(v == .object([("a", .array([.integer(1), .number(-2500), .bool(true), .null, .string("xé😀\n")])), ("b", .object([]))]))
        #expect(JSONValue.string("a\"\u{1}").serialized == #""a\"\u0001""#)
        for bad in ["{", "[1,]", "01", "\"\\ud800\"", "{\"a\" 1}", "[1] x", String(repeating: "[", count: 100)] {
            #expect(throws: JSONError.self, "\(bad)") { try JSONParser.parse(bad) }
        }
    }
}

@Suite struct ConverterTests {
    @Test func selectStripAndRetype() throws {
        let dir = TemporaryDirectory()
        let out = dir.file("out.safetensors")
        let c = try Checkpoint.open(Fixtures.path("checkpoints/fp16_dataparallel.ckpt"))
        let report = try Converter.convert([c], to: out, options: ConvertOptions(dtype: .f32, selectPrefixes: ["module.0."], stripPrefixes: ["module."]))
        #expect(report.tensors == 2 && report.retyped == 2)
        let back = try Checkpoint.open(out)
        #expect(back.tensors.map(\.name) == ["0.weight", "0.bias"])
        #expect(back.tensors.allSatisfy { $0.dtype == .f32 })
        let original = c.tensors.first { $0.name == "module.0.weight" }!.load().floats()
        #expect(back.tensors[0].load().floats() == original)
        #expect(dir.contents == ["out.safetensors"])
    }

    @Test func duplicateNamesLeaveNoFile() throws {
        let dir = TemporaryDirectory()
        let c = try Checkpoint.open(Fixtures.path("checkpoints/small.pt"))
        let error = #expect(throws: CheckpointError.self) { try Converter.convert([c, c], to: dir.file("o.safetensors"), options: ConvertOptions()) }
        #expect(error?.description.contains("also that of a tensor") == true)
        #expect(dir.contents.isEmpty)
    }

    @Test func existingOutputIsKeptUnlessOverwrite() throws {
        let dir = TemporaryDirectory()
        let out = dir.file("o.safetensors")
        try Data("keep".utf8).write(to: URL(fileURLWithPath: out))
        let c = try Checkpoint.open(Fixtures.path("checkpoints/small.pt"))
        let error = #expect(throws: CheckpointError.self) { try Converter.convert([c], to: out, options: ConvertOptions()) }
        #expect(error?.description.contains("already exists") == true)
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "keep")
        _ = try Converter.convert([c], to: out, options: ConvertOptions(overwrite: true))
        #expect(try Checkpoint.open(out).tensors.count == 2)
        #expect(dir.contents == ["o.safetensors"])
    }

    @Test func unwritableDirectory() throws {
        let c = try Checkpoint.open(Fixtures.path("checkpoints/small.pt"))
        let error = #expect(throws: CheckpointError.self) {
            try Converter.convert([c], to: "/nonexistent-dir/o.safetensors", options: ConvertOptions())
        }
        #expect(error?.description.contains("/nonexistent-dir") == true)
    }

    /// A writer that is dropped before `finish()` removes its temporary file.
    @Test func abandonedWriterLeavesNothing() throws {
        let dir = TemporaryDirectory()
        do {
            let w = try SafetensorsWriter(path: dir.file("o.safetensors"), tensors: [.init(name: "a", dtype: .f32, shape: [4])])
            try [Float](repeating: 1, count: 2).withUnsafeBytes { b in try w.write(b) }
            #expect(throws: CheckpointError.self) { try w.finish() }
        }
        #expect(dir.contents.isEmpty)
    }

    /// Chunks smaller than a tensor give the same file as one piece (strided and contiguous).
    @Test func smallChunksGiveTheSameBytes() throws {
        let dir = TemporaryDirectory()
        let c = try Checkpoint.open(Fixtures.path("checkpoints/views.pt"))
        var options = ConvertOptions(dtype: .bf16)
        _ = try Converter.convert([c], to: dir.file("a.safetensors"), options: options)
        options.chunkBytes = 6
        _ = try Converter.convert([c], to: dir.file("b.safetensors"), options: options)
        let a = try Data(contentsOf: URL(fileURLWithPath: dir.file("a.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: dir.file("b.safetensors")))
        #expect(a == b)
    }
}
