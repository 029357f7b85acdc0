#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif
import Tensors

/// How the values of quantised weight panels are stored. The GEMM expands them to f32, one block of
/// panels at a time, as it packs (`Gemm.run` with `.quantized` operands): the weights stay in this
/// form in memory, and the f32 product equals the f32 GEMM on the dequantised matrix bit for bit.
public enum PanelElement: Sendable, Equatable {
    /// int8 values; element (row or column) `i` of the panels is `Float(q) · scales[i]`.
    case int8
    /// IEEE binary16 values.
    case f16

    public var byteSize: Int { self == .int8 ? 1 : 2 }
}

/// Quantised panels as a GEMM operand: panel `p` (of `width` rows of A or columns of B) starts at
/// element `p · panelStride` of `values` and holds `k` groups of `width` values; `scales` (int8)
/// has one value per row (A) or column (B), from the first row or column of panel 0.
/// For block-format weights (`int8-block32`, `int8-block16`), `codes` holds the block codes panel by
/// panel, a byte each: panel `p`, block `b` (of `blocks`, `coding.size` steps each), element `i` at
/// `(p · blocks + b) · width + i`; the element's scale in that block is `coding.scale(scales[i], code)`.
public struct QuantizedPanels: @unchecked Sendable {
    public var values: UnsafeRawPointer
    public var element: PanelElement
    public var panelStride: Int
    public var scales: UnsafePointer<Float>?
    public var codes: UnsafePointer<UInt8>?
    public var coding: Quantization.BlockCoding?
    public var blocks: Int

    public init(values: UnsafeRawPointer, element: PanelElement, panelStride: Int, scales: UnsafePointer<Float>?,
                codes: UnsafePointer<UInt8>? = nil, coding: Quantization.BlockCoding? = nil, blocks: Int = 0) {
        self.values = values
        self.element = element
        self.panelStride = panelStride
        self.scales = scales
        self.codes = codes
        self.coding = coding
        self.blocks = blocks
    }

    /// The panels from row (or column) `first`, a multiple of the panel width `width`.
    public func advanced(by first: Int, width: Int) -> QuantizedPanels {
        precondition(first % width == 0)
        return QuantizedPanels(values: values + (first / width) * panelStride * element.byteSize, element: element,
                               panelStride: panelStride, scales: scales.map { $0 + first },
                               codes: codes.map { $0 + (first / width) * blocks * width }, coding: coding, blocks: blocks)
    }

    /// Writes `panels` panels, steps `depth` of each, as f32: `dst[(panel·depth.count + p)·width + r]`.
    func expand(panels: Range<Int>, depth: Range<Int>, width: Int, into dst: UnsafeMutablePointer<Float>) {
        let kd = depth.count
        for (i, panel) in panels.enumerated() {
            let src = values + (panel * panelStride + depth.lowerBound * width) * element.byteSize
            let d = dst + i * kd * width
            switch element {
            case .int8:
                guard let codes, let coding else {
                    QuantizedPanels.expandInt8(src.assumingMemoryBound(to: Int8.self), scales: scales! + panel * width, width: width,
                                               count: kd * width, into: d)
                    continue
                }
                // Block by block, each with its elements' block scales (`rowScale · levels[code]`, the
                // definition's product), as a pattern of whole 8-lane vectors.
                let rowScales = scales! + panel * width
                let q = src.assumingMemoryBound(to: Int8.self)
                let period = QuantizedPanels.period(width)
                coding.levels.withUnsafeBufferPointer { levels in
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: period) { pattern in
                        let pat = pattern.baseAddress!
                        var step = depth.lowerBound
                        while step < depth.upperBound {
                            let b = step / coding.size
                            let end = min(depth.upperBound, (b + 1) * coding.size)
                            let c = codes + (panel * blocks + b) * width
                            for r in 0..<width { pat[r] = rowScales[r] * levels[Int(c[r])] }
                            var rep = width
                            while rep < period { (pat + rep).update(from: pat, count: width); rep += width }
                            let offset = (step - depth.lowerBound) * width
                            QuantizedPanels.expandInt8(q + offset, pattern: pat, period: period, count: (end - step) * width, into: d + offset)
                            step = end
                        }
                    }
                }
            case .f16:
                QuantizedPanels.expandF16(src.assumingMemoryBound(to: UInt16.self), count: kd * width, into: d)
            }
        }
    }

    /// Values per scale pattern of `width`-periodic scales: lcm(width, 8), whole 8-lane vectors.
    static func period(_ width: Int) -> Int {
        var g = width, b = 8
        while b != 0 { (g, b) = (b, g % b) }
        return width * 8 / g
    }

    /// `dst[i] = Float(src[i]) · scales[i % width]` (the scales of one panel).
    static func expandInt8(_ src: UnsafePointer<Int8>, scales: UnsafePointer<Float>, width: Int, count: Int, into dst: UnsafeMutablePointer<Float>) {
        // The scales repeat every `width` values: a pattern of lcm(width, 8) covers whole 8-lane vectors.
        let period = period(width)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: period) { pattern in
            var r = 0
            for i in 0..<period {
                pattern[i] = scales[r]
                r += 1
                if r == width { r = 0 }
            }
            expandInt8(src, pattern: pattern.baseAddress!, period: period, count: count, into: dst)
        }
    }

    /// `dst[i] = Float(src[i]) · pattern[i % period]`, `period` a multiple of 8.
    static func expandInt8(_ src: UnsafePointer<Int8>, pattern pat: UnsafePointer<Float>, period: Int, count: Int, into dst: UnsafeMutablePointer<Float>) {
        var i = 0
        #if arch(x86_64)
        // AVX2 sign extension and conversion (the standard library's SIMD conversions became
        // two runtime calls per 16 values here).
        while i + period <= count {
            var j = 0
            while j < period {
                let q = _mm_loadl_epi64(UnsafeRawPointer(src + i + j).assumingMemoryBound(to: __m128i.self))
                _mm256_storeu_ps(dst + i + j, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_loadu_ps(pat + j)))
                j += 8
            }
            i += period
        }
        #endif
        while i < count { dst[i] = Float(src[i]) * pat[i % period]; i += 1 }
    }

    /// binary16 → f32 of `count` values (exact).
    static func expandF16(_ src: UnsafePointer<UInt16>, count: Int, into dst: UnsafeMutablePointer<Float>) {
        var i = 0
        #if arch(x86_64)
        // F16C's `vcvtph2ps` (part of the AVX2 baseline this module is built for).
        while i + 8 <= count {
            let h = _mm_loadu_si128(UnsafeRawPointer(src + i).assumingMemoryBound(to: __m128i.self))
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h))
            i += 8
        }
        #endif
        if i < count {
            FloatConversion.f16ToF32(UnsafeBufferPointer(start: src + i, count: count - i),
                                     UnsafeMutableBufferPointer(start: dst + i, count: count - i))
        }
    }
}

extension PackedMatrix {
    /// `w`, a block-format (`format`: `int8-block32`, `int8-block16`) `[groups·rows, k]` matrix (row
    /// scales `scales [groups·rows]`, codes `[groups·rows, ceil(k/32)]` bytes) as int8 panels with
    /// their block codes (a byte each), laid out as `int8Rows`.
    public static func int8BlockRows(_ w: UnsafePointer<Int8>, scales: UnsafePointer<Float>, codes: UnsafePointer<UInt8>, format: WeightFormat,
                                     rows: Int, k: Int, groups: Int = 1, width: Int, threads: Int = 1) -> PackedMatrix {
        let coding = Quantization.BlockCoding(format)!
        let p = int8Rows(w, scales: scales, rows: rows, k: k, groups: groups, width: width, threads: threads, coding: coding)
        let blocks = p.blocks
        for g in 0..<groups {
            for panel in 0..<p.panels {
                for b in 0..<blocks {
                    let d = p.codes! + ((g * p.panels + panel) * blocks + b) * width
                    for r in 0..<width {
                        let row = panel * width + r
                        d[r] = row < rows ? coding.code(codes, row: g * rows + row, block: b, k: k) : 0
                    }
                }
            }
        }
        return p
    }

    /// `w`, an int8 `[groups·rows, k]` matrix with one scale per row (a convolution's or linear layer's
    /// output channel), as int8 A panels (rows, for convolutions) or B panels (the rows of `w` as
    /// columns of Wᵀ, for linear layers): the same layout as `rowsOf` / `columnsOf`, one byte a value.
    public static func int8Rows(_ w: UnsafePointer<Int8>, scales: UnsafePointer<Float>, rows: Int, k: Int, groups: Int = 1, width: Int,
                                threads: Int = 1, coding: Quantization.BlockCoding? = nil) -> PackedMatrix {
        let p = packRows(w, element: .int8, rows: rows, k: k, groups: groups, width: width, threads: threads, coding: coding)
        for g in 0..<groups {
            let s = p.scales! + g * p.panels * width
            for r in 0..<(p.panels * width) { s[r] = r < rows ? scales[g * rows + r] : 0 }
        }
        return p
    }

    /// `w`, a binary16 `[groups·rows, k]` matrix, as f16 panels (layout as `int8Rows`).
    public static func f16Rows(_ w: UnsafePointer<UInt16>, rows: Int, k: Int, groups: Int = 1, width: Int, threads: Int = 1) -> PackedMatrix {
        packRows(w, element: .f16, rows: rows, k: k, groups: groups, width: width, threads: threads)
    }

    /// Rows of `w` as panels of `width` rows, values copied as they are (zeros past the last row).
    static func packRows<T: FixedWidthInteger>(_ w: UnsafePointer<T>, element: PanelElement, rows: Int, k: Int, groups: Int, width: Int,
                                               threads: Int, coding: Quantization.BlockCoding? = nil) -> PackedMatrix {
        let p = PackedMatrix(extent: rows, k: k, width: width, groups: groups, element: element, coding: coding)
        let panels = p.panels
        let values = UnsafeMutableRawPointer(p.pointer).assumingMemoryBound(to: T.self)
        Parallel.forRanges(groups * panels, threads: threads) { range in
            for item in range {
                let (g, panel) = (item / panels, item % panels)
                let d = values + g * p.groupStride + panel * p.panelStride
                let r0 = panel * width, h = min(width, rows - r0)
                for r in 0..<width {
                    if r >= h { for s in 0..<k { d[s * width + r] = 0 }; continue }
                    let src = w + (g * rows + r0 + r) * k
                    for s in 0..<k { d[s * width + r] = src[s] }
                }
            }
        }
        return p
    }

    /// The GEMM operand of group `group` from row (or column) `first` (a multiple of `width`).
    public func operand(group: Int = 0, first: Int = 0) -> GemmOperand {
        switch element {
        case nil:
            return .panels(pointer + group * groupStride + (first / width) * panelStride, panelStride: panelStride)
        case let e?:
            let base = UnsafeRawPointer(pointer) + group * groupStride * e.byteSize
            let q = QuantizedPanels(values: base, element: e, panelStride: panelStride, scales: scales.map { UnsafePointer($0 + group * panels * width) },
                                    codes: codes.map { UnsafePointer($0 + group * panels * blocks * width) }, coding: coding, blocks: blocks)
            return .quantized(q.advanced(by: first, width: width))
        }
    }
}
