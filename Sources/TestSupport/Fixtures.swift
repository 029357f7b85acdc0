import CPNG
import Foundation
import Tensors

/// Paths of the committed fixtures (`Tests/Fixtures/...`), found from this file's location so that
/// tests run from any working directory.
public enum Fixtures {
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // Sources/TestSupport/Fixtures.swift → package root
        return url.appendingPathComponent("Tests/Fixtures").path
    }()

    public static func path(_ relative: String) -> String { root + "/" + relative }

    /// The JSON object in a fixture file.
    public static func json(_ relative: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(relative)))
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }
}

/// zlib's crc32 of some bytes (the checksum the fixture scripts record).
public func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
    var crc = CPNG.crc32(0, nil, 0)
    var offset = 0
    while offset < bytes.count {
        let n = min(bytes.count - offset, 1 << 30)
        crc = CPNG.crc32(crc, base.assumingMemoryBound(to: UInt8.self) + offset, UInt32(n))
        offset += n
    }
    return UInt32(crc)
}

/// A fresh, empty directory under the system's temporary directory, removed by `cleanUp()`.
public final class TemporaryDirectory {
    public let path: String

    public init() {
        var template = Array((NSTemporaryDirectory() + "/diffbir-test-XXXXXX").utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    /// Names of the files now in the directory (hidden ones included).
    public var contents: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

public func copyFile(_ from: String, _ to: String, truncatedTo length: Int? = nil, edit: ((inout [UInt8]) -> Void)? = nil) throws {
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: from)))
    if let length { bytes = Array(bytes.prefix(length)) }
    edit?(&bytes)
    try Data(bytes).write(to: URL(fileURLWithPath: to))
}
