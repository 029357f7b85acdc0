import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import CKernels

/// Persistent worker threads for `Parallel.forRanges`. A plan's step runs about 1 300 parallel
/// regions, most of a millisecond or less; with `DispatchQueue.concurrentPerform` each woke a
/// sleeping thread (about 2 500 context switches a step on the 2-core VM, and 8 % of the two cores
/// idle). A worker here waits for its next job spinning for a short while (`spinNanoseconds`) before
/// it sleeps, so the regions of a running plan hand over in well under a microsecond.
///
/// Each worker has its own mailbox: a job slot and a ticket. The caller writes the slot of an idle
/// worker, then bumps its ticket (release); the worker sees the new ticket (acquire), takes the
/// slot, runs it and counts itself done. Only one caller uses the pool at a time; a second caller
/// (another thread, or a job's body calling `forRanges` itself) finds it busy and falls back to
/// `concurrentPerform`. The ranges are the same either way: which thread runs a range never changes
/// a result.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()
    /// How long an idle worker spins before it sleeps; the caller spins as long for its workers
    /// before it yields between checks.
    static let spinNanoseconds: UInt64 = 300_000

    final class Worker: @unchecked Sendable {
        let index: Int
        let ticket = Atomic<Int>(0)
        let sleeping = Atomic<Bool>(false)
        let wake = DispatchSemaphore(value: 0)
        /// Written by the caller only while the worker is idle (before the ticket's release).
        var job: ((Int) -> Void)?
        unowned let pool: WorkerPool

        init(index: Int, pool: WorkerPool) {
            self.index = index
            self.pool = pool
        }

        func loop() {
            var seen = 0
            while true {
                seen = waitForTicket(after: seen)
                // The slot is released before the job counts as done (`withoutActuallyEscaping`
                // checks that nothing holds the caller's closure once it returns). A wake that finds
                // the slot empty is not a job: wait again (seen once, in a test run where two test
                // cases used the pool in turn; its cause was not found).
                do {
                    guard let body = job else { continue }
                    job = nil
                    body(index)
                }
                pool.pending.subtract(1, ordering: .releasing)
            }
        }

        private func waitForTicket(after seen: Int) -> Int {
            let deadline = DispatchTime.now().uptimeNanoseconds + WorkerPool.spinNanoseconds
            var spins = 0
            while true {
                let t = ticket.load(ordering: .acquiring)
                if t != seen { return t }
                WorkerPool.pause()
                spins += 1
                if spins & 255 == 0 && DispatchTime.now().uptimeNanoseconds > deadline { break }
            }
            // Sleep: announce it, then look once more (the caller bumps the ticket, then takes the
            // flag and signals if it was set; one of the two sides always sees the other).
            sleeping.store(true, ordering: .sequentiallyConsistent)
            let t = ticket.load(ordering: .sequentiallyConsistent)
            if t != seen {
                // Not asleep after all; if the caller already took the flag, its signal is on the way.
                if !sleeping.exchange(false, ordering: .sequentiallyConsistent) { wake.wait() }
                return ticket.load(ordering: .acquiring)
            }
            wake.wait()
            return ticket.load(ordering: .acquiring)
        }

        /// Caller side: hands `body` to this idle worker.
        func post(_ body: @escaping (Int) -> Void) {
            job = body
            ticket.add(1, ordering: .sequentiallyConsistent)
            if sleeping.exchange(false, ordering: .sequentiallyConsistent) { wake.signal() }
        }
    }

    private let busy = Atomic<Bool>(false)
    fileprivate let pending = Atomic<Int>(0)
    /// Grown (never shrunk) by the caller that holds `busy`.
    private var workers: [Worker] = []

    @inline(__always)
    static func pause() { ck_spin_pause() }

    /// The processors this process may run on: more workers than that would spin against each other
    /// (a third thread on two cores waited for a time slice, 0.5 ms a call), so such calls take the
    /// fallback path.
    static let processors = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Runs `body(w)` for w in 0..<count, w = 0 on the calling thread; false (nothing run) if the
    /// pool is in use or `count` is more than the processors.
    func run(_ count: Int, _ body: (Int) -> Void) -> Bool {
        guard count <= WorkerPool.processors else { return false }
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        while workers.count < count - 1 { start(Worker(index: workers.count + 1, pool: self)) }
        withoutActuallyEscaping(body) { escaping in
            pending.store(count - 1, ordering: .relaxed)
            for w in 1..<max(1, count) { workers[w - 1].post(escaping) }
            escaping(0)
            let deadline = DispatchTime.now().uptimeNanoseconds + WorkerPool.spinNanoseconds
            var spins = 0, yielding = false
            while pending.load(ordering: .acquiring) != 0 {
                if yielding {
                    sched_yield()
                } else {
                    WorkerPool.pause()
                    spins += 1
                    if spins & 255 == 0 && DispatchTime.now().uptimeNanoseconds > deadline { yielding = true }
                }
            }
        }
        return true
    }

    private func start(_ worker: Worker) {
        workers.append(worker)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        pthread_attr_setstacksize(&attributes, 8 << 20)
        var thread = pthread_t()
        let context = Unmanaged.passRetained(worker).toOpaque()
        let status = pthread_create(&thread, &attributes, { raw in
            let worker = Unmanaged<Worker>.fromOpaque(raw!).takeRetainedValue()
            worker.loop()
            return nil
        }, context)
        pthread_attr_destroy(&attributes)
        precondition(status == 0, "pthread_create failed (\(status))")
    }
}
