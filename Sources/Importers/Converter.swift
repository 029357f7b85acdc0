import Dispatch
import Foundation
import Tensors

/// Options of `convert`: which tensors, under which names, in which dtype.
public struct ConvertOptions: Sendable {
    /// Target dtype for floating-point tensors; integer and bool tensors keep theirs. nil: unchanged.
    public var dtype: DType?
    /// Keep only tensors whose (original) name starts with one of these; empty keeps all.
    public var selectPrefixes: [String] = []
    /// Removed from the start of names (the first that matches), after selection.
    public var stripPrefixes: [String] = []
    public var overwrite = false
    /// Largest piece of a tensor converted at once; bounds memory beyond the page cache.
    public var chunkBytes = 8 << 20

    public init(dtype: DType? = nil, selectPrefixes: [String] = [], stripPrefixes: [String] = [], overwrite: Bool = false) {
        self.dtype = dtype
        self.selectPrefixes = selectPrefixes
        self.stripPrefixes = stripPrefixes
        self.overwrite = overwrite
    }
}

/// What a conversion did.
public struct ConvertReport: Sendable {
    public var tensors = 0
    public var retyped = 0
    public var bytesRead = 0
    public var bytesWritten = 0
}

/// Progress of a long conversion, reported after each chunk.
public struct ConvertProgress: Sendable {
    public let tensor: Int
    public let tensorCount: Int
    public let bytesDone: Int
    public let bytesTotal: Int
}

/// Checkpoint → safetensors, tensor by tensor and chunk by chunk, so memory stays bounded by one
/// chunk plus the page cache whatever the checkpoint's size.
public enum Converter {
    public struct Item: Sendable {
        public let entry: TensorEntry
        public let name: String
        public let dtype: DType
    }

    /// The tensors that would be written, with their output names and dtypes.
    public static func plan(_ inputs: [Checkpoint], options: ConvertOptions) throws(CheckpointError) -> [Item] {
        var items: [Item] = []
        var origin: [String: String] = [:]
        for c in inputs {
            for e in c.tensors {
                if !options.selectPrefixes.isEmpty, !options.selectPrefixes.contains(where: { e.name.hasPrefix($0) }) { continue }
                var name = e.name
                if let p = options.stripPrefixes.first(where: { name.hasPrefix($0) }) { name.removeFirst(p.count) }
                guard !name.isEmpty else { throw CheckpointError(c.path, at: "tensor '\(e.name)'", "stripping the prefix leaves an empty name") }
                if let other = origin[name] {
                    throw CheckpointError(c.path, at: "tensor '\(e.name)'", "its output name '\(name)' is also that of a tensor from \(other)")
                }
                origin[name] = "'\(e.name)' in \(c.path)"
                let dtype = e.dtype.isFloatingPoint ? (options.dtype ?? e.dtype) : e.dtype
                items.append(Item(entry: e, name: name, dtype: dtype))
            }
        }
        if items.isEmpty {
            throw CheckpointError(inputs.first?.path ?? "", options.selectPrefixes.isEmpty ? "no tensors to write" : "no tensor matches --select \(options.selectPrefixes.joined(separator: ", "))")
        }
        return items
    }

    public static func convert(_ inputs: [Checkpoint], to path: String, options: ConvertOptions,
                               progress: ((ConvertProgress) -> Void)? = nil) throws(CheckpointError) -> ConvertReport {
        let items = try plan(inputs, options: options)
        var metadata = inputs.first?.metadata ?? []
        if !metadata.contains(where: { $0.0 == "format" }) { metadata.append(("format", "pt")) }
        let writer = try SafetensorsWriter(path: path, tensors: items.map { .init(name: $0.name, dtype: $0.dtype, shape: $0.entry.shape) },
                                           metadata: metadata, overwrite: options.overwrite)
        let output = BackgroundWriter(writer, bufferBytes: options.chunkBytes, buffers: 3)
        let total = items.reduce(0) { $0 + $1.entry.byteCount }
        var report = ConvertReport()
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: options.chunkBytes, alignment: 64)
        defer { scratch.deallocate() }
        for (index, item) in items.enumerated() {
            let e = item.entry
            let retype = item.dtype != e.dtype
            // Pieces of the source sized so that both the source and the converted piece fit a buffer.
            let elements = max(1, options.chunkBytes / max(e.dtype.byteSize, item.dtype.byteSize))
            let piece = elements * e.dtype.byteSize
            /// Converts (or copies) `source` into a free output buffer and queues it for writing.
            func emit(_ source: UnsafeRawBufferPointer) throws(CheckpointError) {
                let n = source.count / e.dtype.byteSize
                let out = try output.acquire()
                if retype {
                    ElementConversion.convert(source, from: e.dtype, into: out, as: item.dtype, count: n)
                } else if source.baseAddress != UnsafeRawPointer(out.baseAddress) {
                    out.copyMemory(from: source)
                }
                output.submit(out, count: n * item.dtype.byteSize)
                report.bytesRead += source.count
                progress?(ConvertProgress(tensor: index, tensorCount: items.count, bytesDone: report.bytesRead, bytesTotal: total))
            }
            if let range = e.contiguousRange {
                // One pass with pread (no page of the mapping faulted in); unconverted pieces are
                // read straight into the buffer that will be written.
                e.file.adviseSequential(range)
                var start = range.lowerBound
                while start < range.upperBound {
                    let end = min(range.upperBound, start + piece)
                    let target = retype ? scratch : try output.peek()
                    do { try e.file.read(start..<end, into: target) } catch { throw CheckpointError(e.file.path, at: "tensor '\(e.name)'", error.message) }
                    try emit(UnsafeRawBufferPointer(rebasing: target[0..<(end - start)]))
                    start = end
                }
            } else {
                try e.forEachChunk(maxBytes: piece) { chunk throws(CheckpointError) in try emit(chunk) }
            }
            report.tensors += 1
            if retype { report.retyped += 1 }
            report.bytesWritten += e.count * item.dtype.byteSize
        }
        try output.finish()
        return report
    }
}

/// Writes pieces on a background thread while the caller reads and converts the next ones: a ring
/// of `buffers` buffers, each reused only once its write has finished, so memory stays bounded.
final class BackgroundWriter: @unchecked Sendable {
    private let writer: SafetensorsWriter
    private let queue = DispatchQueue(label: "diffbir.convert.writer")
    private let free: DispatchSemaphore
    private let ring: [UnsafeMutableRawBufferPointer]
    private var next = 0
    private var reserved = false
    private let lock = NSLock()
    private var failure: CheckpointError?

    init(_ writer: SafetensorsWriter, bufferBytes: Int, buffers: Int) {
        self.writer = writer
        free = DispatchSemaphore(value: buffers)
        ring = (0..<buffers).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: max(bufferBytes, 64), alignment: 64) }
    }

    deinit {
        queue.sync {}
        for b in ring { b.deallocate() }
    }

    private func check() throws(CheckpointError) {
        lock.lock()
        defer { lock.unlock() }
        if let failure { throw failure }
    }

    /// The next buffer to fill, waiting until its previous write is done; `acquire()` then returns it.
    func peek() throws(CheckpointError) -> UnsafeMutableRawBufferPointer {
        if !reserved {
            free.wait()
            reserved = true
        }
        try check()
        return ring[next]
    }

    /// The next buffer to fill (the one `peek()` returned, if it was called).
    func acquire() throws(CheckpointError) -> UnsafeMutableRawBufferPointer {
        let b = try peek()
        reserved = false
        next = (next + 1) % ring.count
        return b
    }

    /// Queues the first `count` bytes of `buffer` (from `acquire()`) for writing, in order.
    func submit(_ buffer: UnsafeMutableRawBufferPointer, count: Int) {
        // The ring's buffers are only touched by the writer between submit and the semaphore signal.
        nonisolated(unsafe) let buffer = buffer
        queue.async { [self] in
            lock.lock()
            let failed = failure != nil
            lock.unlock()
            if !failed {
                do throws(CheckpointError) { try writer.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count])) } catch {
                    lock.lock()
                    failure = error
                    lock.unlock()
                }
            }
            free.signal()
        }
    }

    /// Waits for the queued writes, then finishes the file (or reports the first write error).
    func finish() throws(CheckpointError) {
        queue.sync {}
        try check()
        try writer.finish()
    }
}
