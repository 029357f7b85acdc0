import Dispatch
import Tensors

/// A tensor in memory the executor owns (arena) or maps (weights): pointer, dtype, shape.
public struct View: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let dtype: DType
    public let shape: Shape

    public init(pointer: UnsafeMutableRawPointer, dtype: DType, shape: Shape) {
        self.pointer = pointer
        self.dtype = dtype
        self.shape = shape
    }

    public var floats: UnsafeMutablePointer<Float> { pointer.assumingMemoryBound(to: Float.self) }
    public var count: Int { shape.count }
    public var dims: [Int] { shape.dims }
    public var byteCount: Int { shape.count * dtype.byteSize }
}

/// Splits `count` items over `threads` workers (contiguous ranges).
public enum Parallel {
    public static func forRanges(_ count: Int, threads: Int, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
        let workers = max(1, min(threads, count / max(1, minimumPerThread)))
        if workers <= 1 {
            if count > 0 { body(0..<count) }
            return
        }
        let chunk = (count + workers - 1) / workers
        // The workers only run during this call, and each writes its own range.
        let ran = WorkerPool.shared.run(workers) { w in
            let lo = w * chunk, hi = min(count, lo + chunk)
            if lo < hi { body(lo..<hi) }
        }
        if ran { return }
        withoutActuallyEscaping(body) { escaping in
            let work = UncheckedSendable(value: escaping)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let lo = w * chunk, hi = min(count, lo + chunk)
                if lo < hi { work.value(lo..<hi) }
            }
        }
    }
}

struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
}
