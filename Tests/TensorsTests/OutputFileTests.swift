import Foundation
import Tensors
import Testing
import TestSupport

/// Atomic outputs: temporary files beside the target, removed on failure, by a fatal signal, or —
/// when a killed process left one — by the next writer of the same target.
@Suite struct OutputFileTests {
    @Test func staleTemporaryFilesOfDeadProcessesAreRemoved() throws {
        let dir = TemporaryDirectory()
        let target = dir.file("model.safetensors")
        // A PID above the kernel's limit (4194304 at most) names no process; our parent is alive.
        let dead = dir.file(".model.safetensors.tmp-4194305"), alive = dir.file(".model.safetensors.tmp-\(getppid())")
        let other = dir.file(".other.safetensors.tmp-4194305")
        for f in [dead, alive, other] { _ = FileManager.default.createFile(atPath: f, contents: Data([1, 2, 3])) }
        let out = try OutputFile(path: target, overwrite: false)
        #expect(!FileManager.default.fileExists(atPath: dead))
        #expect(FileManager.default.fileExists(atPath: alive))
        #expect(FileManager.default.fileExists(atPath: other), "another target's temporary file is not ours to remove")
        try out.write([7])
        try out.commit()
        #expect(FileManager.default.fileExists(atPath: target))
        #expect(!FileManager.default.fileExists(atPath: out.temporaryPath))
    }

    @Test func controlCharactersAreEscapedInMessages() {
        #expect("a\u{1B}[31mb\nc\u{7F}".escapingControlCharacters == "a\\u{1B}[31mb\\u{A}c\\u{7F}")
        #expect("plain – ünïcode".escapingControlCharacters == "plain – ünïcode")
    }
}
