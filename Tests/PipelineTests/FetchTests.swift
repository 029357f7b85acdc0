import Foundation
import Pipeline
import Tensors
import Testing
import TestSupport

/// `diffbir fetch` against a local HTTP server (Tests/Fixtures/http/range_server.py, Python's
/// standard library): complete, interrupted and resumed, wrong size, wrong digest.
@Suite(.serialized) struct FetchTests {
    /// A server on loopback for `dir`; `cut`: the first response of each file ends after that many bytes.
    final class Server {
        let process = Process()
        let port: Int
        init(_ dir: String, cut: Int? = nil) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", Fixtures.path("http/range_server.py"), dir] + (cut.map { ["--cut", String($0)] } ?? [])
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            var line = Data()
            while let byte = try out.fileHandleForReading.read(upToCount: 1), !byte.isEmpty, byte != Data([0x0A]) { line += byte }
            port = Int(String(decoding: line, as: UTF8.self)) ?? 0
        }
        // (Not waited for: Process.waitUntilExit waits on a run loop that a test's thread does not
        // run; Foundation reaps the child when it exits.)
        deinit { kill(process.processIdentifier, SIGKILL) }
        func url(_ name: String) -> String { "http://127.0.0.1:\(port)/\(name)" }
    }

    /// A 3 MB file of seeded bytes in `dir` and its SHA-256.
    static func payload(_ dir: String) throws -> (name: String, bytes: Data, sha256: String) {
        var state: UInt64 = 0x1234_5678
        let bytes = Data((0..<(3 << 20)).map { _ -> UInt8 in state = state &* 6_364_136_223_846_793_005 &+ 1; return UInt8(truncatingIfNeeded: state >> 33) })
        let name = "weights.bin"
        try bytes.write(to: URL(fileURLWithPath: dir + "/" + name))
        return (name, bytes, try Fetcher.sha256(of: dir + "/" + name))
    }

    @Test func completeDownloadIsCheckedAndRenamed() throws {
        let served = TemporaryDirectory(), target = TemporaryDirectory()
        let p = try Self.payload(served.path)
        let server = try Server(served.path)
        let file = PublishedFile(name: "test", url: server.url(p.name), size: p.bytes.count, sha256: p.sha256, usedBy: "tests")
        let r = try Fetcher.fetch(file, into: target.path)
        #expect(r.bytes == p.bytes.count && r.sha256 == p.sha256 && r.resumedFrom == 0 && !r.alreadyPresent)
        #expect(target.contents == ["weights.bin"])
        // Again: checked in place, not downloaded.
        #expect(try Fetcher.fetch(file, into: target.path).alreadyPresent)
    }

    @Test func interruptedDownloadResumes() throws {
        let served = TemporaryDirectory(), target = TemporaryDirectory()
        let p = try Self.payload(served.path)
        let server = try Server(served.path, cut: 1 << 20)
        let file = PublishedFile(name: "test", url: server.url(p.name), sha256: p.sha256, usedBy: "tests")
        // The first response stops after 1 MB: an error that says to run again, the part kept.
        let error = #expect(throws: FetchError.self) { try Fetcher.fetch(file, into: target.path) }
        #expect(error?.description.contains("127.0.0.1") == true, "\(error?.description ?? "")")
        let part = (try? FileManager.default.attributesOfItem(atPath: target.path + "/weights.bin.part")[.size] as? Int) ?? 0
        #expect(part > 0 && part < p.bytes.count)
        // The second run asks for the rest (Range) and completes it.
        let r = try Fetcher.fetch(file, into: target.path)
        #expect(r.resumedFrom == part && r.sha256 == p.sha256 && r.bytes == p.bytes.count)
        #expect(target.contents == ["weights.bin"])
    }

    @Test func wrongSizeOrDigestKeepsNothing() throws {
        let served = TemporaryDirectory(), target = TemporaryDirectory()
        let p = try Self.payload(served.path)
        let server = try Server(served.path)
        let wrongSize = PublishedFile(name: "test", url: server.url(p.name), size: p.bytes.count + 1, usedBy: "tests")
        let e1 = #expect(throws: FetchError.self) { try Fetcher.fetch(wrongSize, into: target.path) }
        #expect(e1?.description.contains("the published file has \(p.bytes.count + 1)") == true, "\(e1?.description ?? "")")
        #expect(target.contents.isEmpty)
        let wrongDigest = PublishedFile(name: "test", url: server.url(p.name), sha256: String(repeating: "0", count: 64), usedBy: "tests")
        let e2 = #expect(throws: FetchError.self) { try Fetcher.fetch(wrongDigest, into: target.path) }
        #expect(e2?.description.contains("is not the published") == true, "\(e2?.description ?? "")")
        #expect(target.contents.isEmpty)
        let missing = PublishedFile(name: "test", url: server.url("nothing.bin"), usedBy: "tests")
        let e3 = #expect(throws: FetchError.self) { try Fetcher.fetch(missing, into: target.path) }
        #expect(e3?.description.contains("HTTP 404") == true, "\(e3?.description ?? "")")
    }
}
