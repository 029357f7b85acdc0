import Synchronization
import Foundation
import Dispatch
import CKernels
import KernelsAVX2
import KernelsAVX512
import Tensors
/// A matrix stored as the micro-kernel reads it: panels of `width` rows of A (or columns of B), each
/// panel `k` groups of `width` values, zero-padded at the last panel. Made once per weight (when a
/// plan's instruction first uses it) so that the GEMMs never repack weights.
public final class PackedMatrix: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    /// Rows (A side) or columns (B side) packed, per group.
    public let extent: Int
    public let k: Int
    public let width: Int
    public let groups: Int
    public var panels: Int { (extent + width - 1) / width }
    public var panelStride: Int { k * width }
    public var groupStride: Int { panels * panelStride }
    /// How the values are stored: nil for 4-byte words (f32, or bf16 pairs), else quantised
    /// (`pointer` then holds bytes of that element type, `scales` one f32 per padded row for int8).
    public let element: PanelElement?
    public let scales: UnsafeMutablePointer<Float>?
    /// For block-format panels (`int8-block32`, `int8-block16`): how the blocks are coded, and a
    /// code per element and block of steps, one byte each (`QuantizedPanels`).
    public let coding: Quantization.BlockCoding?
    public let codes: UnsafeMutablePointer<UInt8>?
    /// Blocks of `coding.size` steps along `k` (for `codes`).
    public var blocks: Int { coding?.blocks(k: k) ?? 0 }
    public var byteCount: Int {
        groups * groupStride * (element?.byteSize ?? 4) + (scales == nil ? 0 : groups * panels * width * 4)
            + (codes == nil ? 0 : groups * panels * blocks * width)
    }

    /// Whether `pointer` is memory of another owner (a plan's packed form, mapped), never freed here.
    public let borrowed: Bool

    /// f32 (or bf16-pair) panels already packed at `pointer` (a plan's packed form, mapped): used in
    /// place, never written or freed. The caller has checked that `groups · ⌈extent / width⌉ · k ·
    /// width` words and 64 bytes more lie behind `pointer`.
    public init(borrowing pointer: UnsafeRawPointer, extent: Int, k: Int, width: Int, groups: Int) {
        self.pointer = UnsafeMutablePointer(mutating: pointer.assumingMemoryBound(to: Float.self))
        self.extent = extent
        self.k = k
        self.width = width
        self.groups = groups
        element = nil
        coding = nil
        scales = nil
        codes = nil
        borrowed = true
    }

    init(extent: Int, k: Int, width: Int, groups: Int, element: PanelElement? = nil, coding: Quantization.BlockCoding? = nil) {
        borrowed = false
        self.extent = extent
        self.coding = element == .int8 ? coding : nil
        self.k = k
        self.width = width
        self.groups = groups
        self.element = element
        let count = max(1, groups * ((extent + width - 1) / width) * k * width)
        let bytes = count * (element?.byteSize ?? 4)
        // Quantised panels are expanded 16 values at a time: room to read a vector past the end.
        pointer = UnsafeMutableRawPointer.allocate(byteCount: bytes + 64, alignment: 64).bindMemory(to: Float.self, capacity: (bytes + 64) / 4)
        scales = element == .int8 ? .allocate(capacity: max(1, groups * ((extent + width - 1) / width) * width)) : nil
        codes = element == .int8 && coding != nil
            ? .allocate(capacity: max(1, groups * ((extent + width - 1) / width) * coding!.blocks(k: k) * width)) : nil
    }

    deinit {
        guard !borrowed else { return }
        UnsafeMutableRawPointer(pointer).deallocate(); scales?.deallocate(); codes?.deallocate()
    }

    /// Rows of `a [groups·rows, k]` (row-major, as convolution weights `[oc, ic/g·kh·kw]` are) as A panels.
    public static func rowsOf(_ a: UnsafePointer<Float>, rows: Int, k: Int, groups: Int = 1, width: Int, threads: Int = 1) -> PackedMatrix {
        let p = PackedMatrix(extent: rows, k: k, width: width, groups: groups)
        let panels = p.panels
        Parallel.forRanges(groups * panels, threads: threads) { range in
            for item in range {
                let (g, panel) = (item / panels, item % panels)
                Gemm.packA(a + g * rows * k, lda: k, transposed: false, rows: (panel * width)..<min(rows, (panel + 1) * width), depth: 0..<k,
                           width: width, into: p.pointer + g * p.groupStride + panel * p.panelStride)
            }
        }
        return p
    }

    /// Reads element `i` of an f32 or bf16 weight as f32.
    @inline(__always)
    static func element(_ v: View, _ i: Int) -> Float {
        v.dtype == .bf16 ? Float(bitPattern: UInt32(v.pointer.assumingMemoryBound(to: UInt16.self)[i]) << 16) : v.floats[i]
    }

    /// Convolution weights `[groups·rows, icg, kh, kw]` (f32 or bf16) as bf16 A panels whose steps
    /// run tap by tap and, within a tap, over pairs of input channels (`k` = kh·kw·⌈icg/2⌉ steps):
    /// the order in which a padded copy of the input, channel pairs interleaved, holds its taps.
    public static func convolutionWeights16(_ w: View, groups: Int, width: Int, threads: Int = 1) -> PackedMatrix {
        let (oc, icg, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3])
        let rows = oc / groups, taps = kh * kw, pairs = (icg + 1) / 2
        let p = PackedMatrix(extent: rows, k: taps * pairs, width: width, groups: groups)
        let panels = p.panels
        Parallel.forRanges(groups * panels, threads: threads) { range in
          for item in range {
            let g = item / panels
            let base = p.pointer + g * p.groupStride
            for o in ((item % panels) * width)..<((item % panels + 1) * width) {
                let panel = o / width, r = o % width
                let d = base + panel * p.panelStride + r
                for t in 0..<taps {
                    for cp in 0..<pairs {
                        var word: Float = 0
                        if o < rows {
                            let w0 = ((g * rows + o) * icg + 2 * cp) * taps + t
                            word = Gemm.bf16Pair(element(w, w0), 2 * cp + 1 < icg ? element(w, w0 + taps) : 0)
                        }
                        d[(t * pairs + cp) * width] = word
                    }
                }
            }
          }
        }
        return p
    }

    /// Linear weights `[columns, k]` (f32 or bf16) as bf16 B panels of `wᵀ` (⌈k/2⌉ steps).
    public static func columnsOf16(_ w: View, columns: Int, k: Int, width: Int, threads: Int = 1) -> PackedMatrix {
        let steps = (k + 1) / 2
        let p = PackedMatrix(extent: columns, k: steps, width: width, groups: 1)
        Parallel.forRanges(p.panels, threads: threads) { range in
          for j in (range.lowerBound * width)..<(range.upperBound * width) {
            let panel = j / width, c = j % width
            let d = p.pointer + panel * p.panelStride + c
            for s in 0..<steps {
                var word: Float = 0
                if j < columns {
                    word = Gemm.bf16Pair(element(w, j * k + 2 * s), 2 * s + 1 < k ? element(w, j * k + 2 * s + 1) : 0)
                }
                d[s * width] = word
            }
          }
        }
        return p
    }

    /// Rows of `w [columns, k]` (as linear weights `[out, in]` are) as B panels of `wᵀ`.
    public static func columnsOf(_ w: UnsafePointer<Float>, columns: Int, k: Int, width: Int, threads: Int = 1) -> PackedMatrix {
        let p = PackedMatrix(extent: columns, k: k, width: width, groups: 1)
        Parallel.forRanges(p.panels, threads: threads) { range in
            let c = (range.lowerBound * width)..<min(columns, range.upperBound * width)
            Gemm.packB(w, ldb: k, transposed: true, columns: c, depth: 0..<k, width: width, into: p.pointer + range.lowerBound * p.panelStride)
        }
        return p
    }
}
