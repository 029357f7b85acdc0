import Plan
import Tensors

/// A picture of a plan's memory: for each entry point, its arena over its instructions — every
/// intermediate a rectangle from the instruction that writes it to the last that reads it (x) over
/// its bytes in the arena (y), coloured by the kind of kernel that made it — and beside it the
/// weights each instruction reads (streamed from the mapped plan).
public enum MemoryPicture {
    /// A tensor's life in the arena.
    public struct Slot: Sendable, Equatable {
        public var offset: Int
        public var bytes: Int
        public var first: Int
        public var last: Int
        public var kind: String
    }

    /// Every tensor of `entry`'s arena with the instructions that make and last read it (inputs
    /// from -1, outputs to the end): a new life begins where an instruction writes bytes it does not
    /// also read (buffers are reused), an in-place write extends the life it reads.
    public static func slots(_ entry: EntryPoint) -> [Slot] {
        var all: [Slot] = []
        var live: [String: Int] = [:]  // (offset, bytes) → index in `all` of its current life
        func key(_ offset: Int, _ dtype: DType, _ shape: Shape) -> (String, Int) {
            let bytes = (Shape.checkedCount(shape.dims) ?? 0) * dtype.byteSize
            return ("\(offset):\(bytes)", bytes)
        }
        func read(_ offset: Int, _ dtype: DType, _ shape: Shape, _ i: Int, kind: String) {
            let (k, bytes) = key(offset, dtype, shape)
            if let j = live[k] { all[j].last = max(all[j].last, i) } else {
                live[k] = all.count
                all.append(Slot(offset: offset, bytes: bytes, first: i, last: i, kind: kind))
            }
        }
        for b in entry.inputs { read(b.offset, b.dtype, b.shape, -1, kind: "input") }
        for (i, ins) in entry.instructions.enumerated() {
            var readKeys = Set<String>()
            for o in ins.operands {
                if case .arena(let off, let d, let s) = o {
                    read(off, d, s, i, kind: ins.kernel.kindName)
                    readKeys.insert(key(off, d, s).0)
                }
            }
            for o in ins.results {
                guard case .arena(let off, let d, let s) = o else { continue }
                let (k, bytes) = key(off, d, s)
                if readKeys.contains(k), let j = live[k] { all[j].last = max(all[j].last, i); continue }
                live[k] = all.count
                all.append(Slot(offset: off, bytes: bytes, first: i, last: i, kind: ins.kernel.kindName))
            }
        }
        for b in entry.outputs { read(b.offset, b.dtype, b.shape, entry.instructions.count, kind: "output") }
        return all
    }

    /// The SVG document: one panel per entry point.
    public static func svg(_ program: Program, width: Int = 1200, panelHeight: Int = 360) -> String {
        let palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
        var kinds: [String: String] = [:]
        func colour(_ kind: String) -> String {
            if let c = kinds[kind] { return c }
            let c = palette[kinds.count % palette.count]
            kinds[kind] = c
            return c
        }
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        let margin = 60, weightsWidth = 120
        let plot = width - 2 * margin - weightsWidth
        var body = ""
        var y0 = 20
        for e in program.entryPoints {
            let slots = slots(e)
            let n = max(e.instructions.count + 2, 1)
            let arena = max(e.arenaBytes, 1)
            func x(_ i: Int) -> Double { Double(margin) + Double(i + 1) / Double(n) * Double(plot) }
            func y(_ offset: Int) -> Double { Double(y0 + 30) + Double(offset) / Double(arena) * Double(panelHeight) }
            body += "<text x=\"\(margin)\" y=\"\(y0 + 18)\" font-size=\"14\" font-family=\"sans-serif\">entry \(esc(e.name)): "
                + "\(e.instructions.count) instructions, arena \(String(format: "%.2f", Double(e.arenaBytes) / 1e6)) MB</text>\n"
            body += "<rect x=\"\(margin)\" y=\"\(y0 + 30)\" width=\"\(plot)\" height=\"\(panelHeight)\" fill=\"#f7f7f7\" stroke=\"#999\"/>\n"
            for s in slots where s.bytes > 0 {
                let (x1, x2) = (x(s.first), x(s.last + 1))
                let (ya, yb) = (y(s.offset), y(s.offset + s.bytes))
                body += String(format: "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%@\" fill-opacity=\"0.75\" stroke=\"#333\" stroke-width=\"0.2\">",
                               x1, ya, max(x2 - x1, 0.5), max(yb - ya, 0.5), colour(s.kind))
                body += "<title>\(esc(s.kind)): \(s.bytes) bytes at \(s.offset), instructions \(s.first)…\(s.last)</title></rect>\n"
            }
            // Weights read per instruction: a bar per instruction, its height the bytes read.
            var read = [Int](repeating: 0, count: e.instructions.count)
            for (i, ins) in e.instructions.enumerated() {
                for o in ins.operands { if case .weight(let w) = o, w < program.weights.count { read[i] += program.weights[w].byteCount } }
            }
            let most = max(read.max() ?? 1, 1)
            let wx = Double(width - margin - weightsWidth + 20)
            body += "<text x=\"\(Int(wx))\" y=\"\(y0 + 24)\" font-size=\"11\" font-family=\"sans-serif\">weights read (max \(String(format: "%.1f", Double(most) / 1e6)) MB)</text>\n"
            for (i, r) in read.enumerated() where r > 0 {
                let yy = Double(y0 + 30) + Double(i) / Double(max(read.count, 1)) * Double(panelHeight)
                body += String(format: "<rect x=\"%.1f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#888\"/>\n",
                               wx, yy, Double(r) / Double(most) * Double(weightsWidth - 30), max(Double(panelHeight) / Double(max(read.count, 1)), 0.5))
            }
            body += "<text x=\"\(margin)\" y=\"\(y0 + 30 + panelHeight + 14)\" font-size=\"11\" font-family=\"sans-serif\">instruction →   (y: arena offset, 0 at the top)</text>\n"
            y0 += panelHeight + 60
        }
        // Legend.
        var legend = ""
        var lx = margin
        for (kind, c) in kinds.sorted(by: { $0.key < $1.key }) {
            legend += "<rect x=\"\(lx)\" y=\"\(y0)\" width=\"10\" height=\"10\" fill=\"\(c)\"/><text x=\"\(lx + 14)\" y=\"\(y0 + 9)\" font-size=\"10\" font-family=\"sans-serif\">\(esc(kind))</text>\n"
            lx += 16 + 7 * kind.count + 10
            if lx > width - 150 { lx = margin; y0 += 16 }
        }
        let height = y0 + 30
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n" + body + legend + "</svg>\n"
    }
}
