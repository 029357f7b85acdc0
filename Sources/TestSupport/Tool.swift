import Foundation

/// Runs the `diffbir` executable built beside the tests, for tests of the command line itself.
public enum Tool {
    public struct Result: CustomStringConvertible {
        public var status: Int32
        /// Standard output's bytes (an image with `-o -`), and as text.
        public var output: Data
        public var stdout: String { String(decoding: output, as: UTF8.self) }
        public var stderr: String
        public var description: String { "exit \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }

        /// Standard output as one JSON object.
        public func json() -> [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any]
        }
    }

    /// The built executable: beside the test bundle (SwiftPM puts products and test bundles in one
    /// folder), else in the package's .build/debug.
    public static let path: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var candidates: [String] = []
        if !exe.isEmpty {
            var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
            // (…/debug/mainPackageTests.xctest, or a helper inside the toolchain: then the bundle's folder is unknown.)
            for _ in 0..<2 {
                candidates.append(dir.appendingPathComponent("diffbir").path)
                dir.deleteLastPathComponent()
            }
        }
        candidates.append(URL(fileURLWithPath: Fixtures.root).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/diffbir").path)
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
    }()

    /// `diffbir ARGS…` in `directory`, its outputs captured (through files: no pipe to fill), waited
    /// for with waitpid (Foundation's Process waits on a run loop a test's thread does not run).
    public static func run(_ arguments: [String], in directory: String? = nil) -> Result {
        directory == nil ? run(program: path, arguments) : run(program: "/usr/bin/env", ["-C", directory ?? ".", path] + arguments)
    }

    /// Any program (an absolute path), as `run` runs `diffbir`.
    public static func run(program: String, _ arguments: [String]) -> Result {
        let scratch = TemporaryDirectory()
        let outPath = scratch.file("stdout"), errPath = scratch.file("stderr")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        // (In another directory through env -C: glibc's posix_spawn_file_actions_addchdir_np is not
        // visible to Swift.)
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, program, &actions, nil, argv, environ)
        guard spawned == 0 else { return Result(status: -1, output: Data(), stderr: "cannot run \(program): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0
        let read = { (p: String) in (try? Data(contentsOf: URL(fileURLWithPath: p))) ?? Data() }
        return Result(status: exited ? (status >> 8) & 0xff : 128 + (status & 0x7f), output: read(outPath),
                      stderr: String(decoding: read(errPath), as: UTF8.self))
    }
}
