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
    public var description: String { "\(path): \(message)".escapingControlCharacters }

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
    /// Kept open for `read(_:into:)`, which streams without touching the mapping.
    private let fd: Int32

    public init(path: String) throws(FileError) {
        self.path = path
        // O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; it is refused below.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw FileError(path: path, message: FileError.systemMessage()) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            close(fd)
            throw FileError(path: path, message: FileError.systemMessage())
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw FileError(path: path, message: "not a regular file")
        }
        self.fd = fd
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            close(fd)
            throw FileError(path: path, message: "cannot map \(size) bytes: \(FileError.systemMessage())")
        }
        base = p
        // No huge-page mappings of the file's page-cache folios: with them, releasing a weight's
        // pages (`release`) splits a 2 MB mapping whose next fault — packing the neighbouring weight,
        // reading a bias — maps the whole folio back, released part included (`FilePmdMapped` in
        // smaps; a v2.1 restore kept ~480 MB of packed weights' pages resident that way).
        _ = madvise(p, size, Int32(MADV_NOHUGEPAGE))
    }

    deinit {
        if let base { munmap(base, size) }
        close(fd)
    }

    /// Copies the bytes of `range` into `buffer` with `pread` (no page of the mapping is touched):
    /// for one pass over a large file, faster than faulting the mapping in page by page.
    public func read(_ range: Range<Int>, into buffer: UnsafeMutableRawBufferPointer) throws(FileError) {
        precondition(range.lowerBound >= 0 && range.upperBound <= size && buffer.count >= range.count)
        var done = 0
        while done < range.count {
            let n = pread(fd, buffer.baseAddress! + done, range.count - done, off_t(range.lowerBound + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, message: "read failed at byte \(range.lowerBound + done): \(FileError.systemMessage())")
            }
            if n == 0 { throw FileError(path: path, message: "file shrank while reading (byte \(range.lowerBound + done))") }
            done += n
        }
    }

    /// Tells the kernel `range` will be read once, in order (larger readahead, pages dropped after).
    public func adviseSequential(_ range: Range<Int>) {
        _ = posix_fadvise(fd, off_t(range.lowerBound), off_t(range.count), POSIX_FADV_SEQUENTIAL)
    }

    /// All bytes of the file.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// The bytes in `range`, which must lie inside the file.
    public func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        precondition(range.lowerBound >= 0 && range.upperBound <= size, "range outside \(path)")
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
    }

    /// Asks the kernel to start reading the pages of `range` now (asynchronously), so that many
    /// scattered reads are queued together instead of waiting on each other.
    public func prefetch(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = max(0, range.lowerBound) / page * page
        let end = min(size, range.upperBound)
        guard end > start else { return }
        _ = madvise(base + start, end - start, Int32(MADV_WILLNEED))
    }

    /// Allows (or again forbids) huge-page mappings of the page cache's folios over `range`: for data
    /// read many times and never released, such as a plan's packed weights, whose panels the GEMMs
    /// stream through with far fewer TLB misses so (the f32 denoise step 5.18 → 4.90 s on AVX2).
    public func adviseHugePages(_ range: Range<Int>, _ allowed: Bool) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = max(0, range.lowerBound) / page * page
        let end = min(size, range.upperBound)
        guard end > start else { return }
        _ = madvise(base + start, end - start, allowed ? Int32(MADV_HUGEPAGE) : Int32(MADV_NOHUGEPAGE))
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
