import Dispatch
import Kernels
import Synchronization
import Testing

/// `Parallel.forRanges` on the persistent workers: every index once per call, over thousands of back-to-back
/// calls (the hand-over between jobs), calls nested in a job's body and calls from several threads at once
/// (both of which find the pool busy and take the fallback path).
@Suite struct ParallelTests {
    final class Counts: @unchecked Sendable {
        let hits: UnsafeMutablePointer<Atomic<Int>>
        let count: Int
        init(_ count: Int) {
            self.count = count
            hits = .allocate(capacity: count)
            for i in 0..<count { (hits + i).initialize(to: Atomic(0)) }
        }
        func hit(_ i: Int) { hits[i].add(1, ordering: .relaxed) }
        /// Indices hit other than `expected` times.
        func wrong(_ expected: Int) -> [Int] { (0..<count).filter { hits[$0].load(ordering: .relaxed) != expected } }
        deinit { hits.deinitialize(count: count); hits.deallocate() }
    }

    @Test func everyIndexOnceBackToBack() {
        for threads in [2, 3, 5] {
            let counts = Counts(97)
            for call in 0..<2000 {
                let n = 1 + call % 97
                Parallel.forRanges(n, threads: threads) { range in for i in range { counts.hit(i) } }
            }
            // Index i is below n in the calls with n > i: 2000 calls cycle n through 1...97.
            let expected = (0..<97).map { i in (0..<2000).filter { 1 + $0 % 97 > i }.count }
            let wrong = (0..<97).filter { counts.hits[$0].load(ordering: .relaxed) != expected[$0] }
            #expect(wrong.isEmpty, "threads \(threads): indices \(wrong.prefix(5)) hit the wrong number of times")
        }
    }

    @Test func nestedAndConcurrentCalls() {
        let counts = Counts(64 * 32)
        // Four threads at once, each with outer calls whose bodies make inner calls.
        DispatchQueue.concurrentPerform(iterations: 4) { caller in
            for _ in 0..<50 {
                Parallel.forRanges(16, threads: 2) { outer in
                    for o in outer {
                        let row = (caller * 16 + o) % 64
                        Parallel.forRanges(32, threads: 3) { inner in
                            for i in inner { counts.hit(row * 32 + i) }
                        }
                    }
                }
            }
        }
        // Rows 0..<64 each belong to exactly one (caller, o): 50 rounds each.
        #expect(counts.wrong(50).isEmpty)
    }
}
