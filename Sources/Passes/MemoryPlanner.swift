/// Offsets in one arena for buffers with lifetimes over a linear schedule.
///
/// A buffer is live from the instruction that writes it (−1 for entry inputs) to the last that reads
/// it (the schedule's end for entry outputs). Buffers whose lifetimes intersect must not overlap; the
/// planner places buffers largest first, each at the lowest 64-byte-aligned offset that clears every
/// already-placed buffer it is live with (greedy by size). `check` proves the result.
public enum MemoryPlanner {
    public struct Buffer: Sendable, Equatable {
        public var size: Int
        public var start: Int
        public var end: Int
        public init(size: Int, start: Int, end: Int) {
            self.size = size
            self.start = start
            self.end = end
        }
        func overlapsInTime(_ o: Buffer) -> Bool { start <= o.end && o.start <= end }
    }

    public static let alignment = 64

    static func aligned(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    /// Offsets for `buffers` and the arena size.
    public static func plan(_ buffers: [Buffer]) -> (offsets: [Int], arenaBytes: Int) {
        let order = buffers.indices.sorted { (buffers[$0].size, buffers[$1].start) > (buffers[$1].size, buffers[$0].start) }
        var offsets = [Int](repeating: -1, count: buffers.count)
        var placed: [(offset: Int, end: Int, index: Int)] = []
        var arena = 0
        for i in order {
            let b = buffers[i]
            let size = aligned(max(b.size, 1))
            // Busy intervals of already-placed buffers live at the same time, by offset.
            let busy = placed.filter { buffers[$0.index].overlapsInTime(b) }.sorted { $0.offset < $1.offset }
            var candidate = 0
            for p in busy {
                if candidate + size <= p.offset { break }
                candidate = max(candidate, p.end)
            }
            offsets[i] = candidate
            placed.append((candidate, candidate + size, i))
            arena = max(arena, candidate + size)
        }
        return (offsets, arena)
    }

    public struct Overlap: Error, CustomStringConvertible {
        public let first: Int
        public let second: Int
        public var description: String { "buffers \(first) and \(second) are live at the same time and overlap in the arena" }
    }

    public struct Misplaced: Error, CustomStringConvertible {
        public let buffer: Int, offset: Int, size: Int, arenaBytes: Int
        public var description: String { "buffer \(buffer) at offset \(offset) (\(size) B) is misaligned or outside the \(arenaBytes)-byte arena" }
    }

    /// Proves that no two buffers live at the same time share a byte, and that all fit the arena.
    public static func check(_ buffers: [Buffer], offsets: [Int], arenaBytes: Int) throws {
        let order = buffers.indices.sorted { buffers[$0].start < buffers[$1].start }
        for (a, i) in order.enumerated() {
            let bi = buffers[i]
            guard offsets[i] >= 0, offsets[i] + bi.size <= arenaBytes, offsets[i] % alignment == 0 else {
                throw Misplaced(buffer: i, offset: offsets[i], size: bi.size, arenaBytes: arenaBytes)
            }
            for j in order[(a + 1)...] {
                let bj = buffers[j]
                if bj.start > bi.end { break }
                guard bi.size > 0, bj.size > 0 else { continue }
                if offsets[i] < offsets[j] + bj.size && offsets[j] < offsets[i] + bi.size { throw Overlap(first: i, second: j) }
            }
        }
    }
}
