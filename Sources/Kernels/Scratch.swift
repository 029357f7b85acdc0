import Synchronization
import Foundation
import Dispatch
import CKernels
import KernelsAVX2
import KernelsAVX512
import Tensors
/// Per-thread buffers for the blocks of A and B a GEMM packs, grown on demand and kept for the
/// next product of the same thread.
public final class GemmScratch: @unchecked Sendable {
    private(set) var a: UnsafeMutablePointer<Float>? = nil
    private(set) var b: UnsafeMutablePointer<Float>? = nil
    private var aCount = 0, bCount = 0
    public init() {}
    deinit { a?.deallocate(); b?.deallocate(); whole?.deallocate() }

    func aBuffer(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > aCount { a?.deallocate(); a = .allocate(capacity: count); aCount = count }
        return a!
    }

    private var whole: UnsafeMutablePointer<Float>? = nil
    private var wholeCount = 0

    func wholeBuffer(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > wholeCount { whole?.deallocate(); whole = .allocate(capacity: count); wholeCount = count }
        return whole!
    }

    func bBuffer(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > bCount { b?.deallocate(); b = .allocate(capacity: count); bCount = count }
        return b!
    }
}

/// Scratch memory of the kernels' workers, kept between instructions: a GEMM scratch and a few
/// growable float buffers. Allocating them afresh for every instruction cost page faults and page
/// clearing on every run (glibc returns large blocks to the system).
public final class WorkerScratch: @unchecked Sendable {
    public let gemm = GemmScratch()
    private var buffers: [(UnsafeMutablePointer<Float>, Int)] = []

    /// Buffer `slot` with room for at least `count` floats (contents undefined).
    public func floats(_ slot: Int, _ count: Int) -> UnsafeMutablePointer<Float> {
        while buffers.count <= slot { buffers.append((.allocate(capacity: 1), 1)) }
        if buffers[slot].1 < count {
            buffers[slot].0.deallocate()
            buffers[slot] = (.allocate(capacity: count), count)
        }
        return buffers[slot].0
    }

    deinit { for b in buffers { b.0.deallocate() } }
}

/// The process's pool of worker scratch: taken for the duration of one tile loop, then given back.
/// Both workers of a tile loop take their scratch at the same moment: the lock spins (the critical
/// section is a few instructions) rather than sleeping, as a mutex did, in the kernel, for a wake-up
/// that cost the second worker tens of microseconds per parallel region.
public final class ScratchPool: @unchecked Sendable {
    public static let shared = ScratchPool()
    private var free: [WorkerScratch] = []
    private let locked = Atomic<Bool>(false)

    public init() {}

    private func lock() {
        while !locked.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            while locked.load(ordering: .relaxed) { WorkerPool.pause() }
        }
    }

    private func unlock() { locked.store(false, ordering: .releasing) }

    public func take() -> WorkerScratch {
        lock()
        defer { unlock() }
        return free.popLast() ?? WorkerScratch()
    }

    public func give(_ s: WorkerScratch) {
        lock()
        free.append(s)
        unlock()
    }

    /// Frees the scratch of the workers not in use (the next `take` starts empty): between the
    /// stages of a restore under a memory budget, so that buffers sized for one network's shapes do
    /// not stay resident through the next's.
    public func trim() {
        lock()
        let dropped = free
        free.removeAll()
        unlock()
        _ = dropped  // (freed here, outside the lock)
    }
}
