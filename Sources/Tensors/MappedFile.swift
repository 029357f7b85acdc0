#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error opening, mapping, reading or writing a file; always names the file.
public struct FileError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }

    /// The text of the current `errno`.
    public static func systemMessage(_ code: Int32 = errno) -> String {
        String(cString: strerror(code))
    }
}

/// A whole file mapped read-only into memory. Tensor views keep the mapping alive.
///
/// Pages are read from disk when first touched; `release(_:)` drops pages from this process's
/// resident set (they stay in the page cache), so a pass over a large file keeps a small RSS.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    private let base: UnsafeMutableRawPointer?

    public init(path: String) throws(FileError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, message: FileError.systemMessage()) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError(path: path, message: FileError.systemMessage()) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw FileError(path: path, message: "not a regular file")
        }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw FileError(path: path, message: "cannot map \(size) bytes: \(FileError.systemMessage())")
        }
        base = p
    }

    deinit {
        if let base { munmap(base, size) }
    }

    /// All bytes of the file.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// The bytes in `range`, which must lie inside the file.
    public func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        precondition(range.lowerBound >= 0 && range.upperBound <= size, "range outside \(path)")
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
    }

    /// Advises the kernel that the pages fully inside `range` will not be needed again soon,
    /// removing them from this process's resident set.
    public func release(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page
        let end = min(size, range.upperBound) / page * page
        guard end > start else { return }
        _ = madvise(base + start, end - start, Int32(MADV_DONTNEED))
    }
}
