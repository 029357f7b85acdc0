#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written atomically: bytes go to a hidden temporary file beside the target, which is
/// renamed over the target by `commit()`. If the writer is dropped or `discard()`ed before that,
/// the temporary file is removed, so a failed or interrupted write leaves nothing half-written.
public final class OutputFile {
    public let path: String
    public let temporaryPath: String
    private var fd: Int32
    private var buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    public private(set) var bytesWritten = 0
    private var done = false
    /// Its slot in `TemporaryFiles` (removed by a fatal signal until committed or discarded).
    private var registration: Int?

    /// Opens a temporary file beside `path`. Unless `overwrite`, an existing `path` is an error.
    public init(path: String, overwrite: Bool, bufferSize: Int = 1 << 22) throws(FileError) {
        self.path = path
        if !overwrite, access(path, F_OK) == 0 {
            throw FileError(path: path, message: "already exists (pass --overwrite to replace it)")
        }
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        temporaryPath = (dir.isEmpty ? "" : dir + "/") + ".\(name).tmp-\(getpid())"
        TemporaryFiles.removeStale(besidePath: path)
        registration = TemporaryFiles.register(temporaryPath)
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let message = FileError.systemMessage()
            TemporaryFiles.unregister(registration)
            throw FileError(path: path, message: "cannot create a file in '\(dir)': \(message)")
        }
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 64)
    }

    deinit {
        if !done { discard() }
        buffer.deallocate()
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(FileError) {
        precondition(!done, "write after commit or discard")
        var src = bytes
        while !src.isEmpty {
            if buffered == 0 && src.count >= buffer.count {
                try writeAll(src)
                bytesWritten += src.count
                return
            }
            let n = min(src.count, buffer.count - buffered)
            UnsafeMutableRawBufferPointer(rebasing: buffer[buffered..<(buffered + n)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: src[0..<n]))
            buffered += n
            bytesWritten += n
            src = UnsafeRawBufferPointer(rebasing: src[n...])
            if buffered == buffer.count { try flush() }
        }
    }

    public func write(_ bytes: [UInt8]) throws(FileError) {
        let result = bytes.withUnsafeBytes { b in Result { () throws(FileError) in try write(b) } }
        try result.get()
    }

    /// Overwrites bytes already written, at `offset` (headers filled in at the end).
    public func patch(at offset: Int, _ bytes: [UInt8]) throws(FileError) {
        precondition(!done && offset + bytes.count <= bytesWritten)
        try flush()
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard n == bytes.count else { throw FileError(path: path, message: "write failed: \(FileError.systemMessage())") }
    }

    private func flush() throws(FileError) {
        guard buffered > 0 else { return }
        try writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<buffered]))
        buffered = 0
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws(FileError) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, message: "write failed: \(FileError.systemMessage())")
            }
            offset += n
        }
    }

    /// Flushes, syncs to disk, closes and renames the temporary file over `path`: after a crash
    /// the target holds either its old contents or all of the new ones.
    public func commit() throws(FileError) {
        precondition(!done)
        try flush()
        if fsync(fd) != 0 {
            let message = FileError.systemMessage()
            discard()
            throw FileError(path: path, message: "fsync failed: \(message)")
        }
        guard close(fd) == 0 else {
            let message = FileError.systemMessage()
            fd = -1
            discard()
            throw FileError(path: path, message: "close failed: \(message)")
        }
        fd = -1
        guard rename(temporaryPath, path) == 0 else {
            let message = FileError.systemMessage()
            discard()
            throw FileError(path: path, message: "cannot rename into place: \(message)")
        }
        TemporaryFiles.unregister(registration)
        registration = nil
        done = true
    }

    /// Removes the temporary file; the target is left as it was.
    public func discard() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(temporaryPath)
        TemporaryFiles.unregister(registration)
        registration = nil
        done = true
    }
}
