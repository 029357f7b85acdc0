#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Quantised weight formats as data, with their reference quantise and dequantise. The fast paths
/// (Kernels) must give exactly `dequantize` of what `quantize` stored.
///
/// - `int8-channel`: symmetric int8 per output channel (dimension 0 of a convolution's
///   `[oc, ic/g, kh, kw]` or a linear layer's `[out, in]` weight). Row `r` stores
///   `q = round(w / s_r)` clamped to [−127, 127] with `s_r = max |w_r| / 127` (0 for a row of zeros),
///   and its value is `Float(q) · s_r` (one f32 product, rounded once). The scales are an f32
///   tensor `[rows]` stored beside the values.
/// - `int8-block32`: int8 with a scale per row and per block of 32 consecutive values of the row
///   (the weight flattened to `[rows, k]`; the last block may be shorter). Row `r` has the scale
///   `s_r = max |w_r| / 127` of `int8-channel` and block `b` a u8 code `c_rb`, the smallest in 1...255
///   with `127 · blockScale(s_r, c_rb) ≥ max |w_rb|` (0 for a block of zeros), where
///   `blockScale(s, c) = s · (Float(c) / 255)` (f32; code 255 is the row's scale exactly). The block's values
///   are `q = round(w / blockScale)` clamped to [−127, 127] and stand for `Float(q) · blockScale`. The
///   codes are a u8 tensor `[rows, ceil(k / 32)]` stored beside the scales: one byte per 32 values, so
///   the format takes 1 + 1/32 bytes a value, and its step follows each block's largest value.
/// - `int8-block16`: the same with blocks of 16 values and 4-bit codes, two to a byte (block `2j` in
///   the low half of byte `j`, `2j + 1` in the high half; the codes tensor has the same shape
///   `[rows, ceil(k / 32)]`, so the same 1 + 1/32 bytes a value), `blockScale(s, c) =
///   s · level16(c)` with the 16 levels `0, 0.3, 0.35, …, 1` (`0.25 + 0.05 · c` for c ≥ 1:
///   finer where the largest value of 16 Gaussian values sits against its row's, about half of it).
/// - `f16`: IEEE binary16, nearest even (as `Tensor.converted(to: .f16)`).
/// - `bf16`: the upper half of an f32, nearest even.
public enum WeightFormat: String, Sendable, CaseIterable, Codable {
    case f32
    case bf16
    case f16
    case int8Channel = "int8-channel"
    case int8Block32 = "int8-block32"
    case int8Block16 = "int8-block16"

    /// Whether the values are int8 with per-row scales (`int8-channel`, `int8-block32`, `int8-block16`).
    public var isInt8: Bool { self == .int8Channel || hasBlockCodes }

    /// Whether the values have block codes beside their row scales (`int8-block32`, `int8-block16`).
    public var hasBlockCodes: Bool { self == .int8Block32 || self == .int8Block16 }

    /// The dtype the values are stored in.
    public var storageDType: DType {
        switch self {
        case .f32: return .f32
        case .bf16: return .bf16
        case .f16: return .f16
        case .int8Channel, .int8Block32, .int8Block16: return .i8
        }
    }

    /// The names a user may give on the command line (`int8` for `int8-channel`).
    public init?(userName: String) {
        switch userName.lowercased() {
        case "f32", "float32", "fp32": self = .f32
        case "bf16", "bfloat16": self = .bf16
        case "f16", "fp16", "float16", "half": self = .f16
        case "int8", "i8", "int8-channel": self = .int8Channel
        case "int8-block32", "int8-block", "int8b": self = .int8Block32
        case "int8-block16", "int8b16": self = .int8Block16
        default: return nil
        }
    }
}

/// A weight in a storage format: its values and, for the int8 formats, the per-row scales (and for
/// `int8-block32` and `int8-block16` the block codes, u8 `[rows, ceil(k / 32)]`).
public struct QuantizedWeight: Sendable {
    public var format: WeightFormat
    public var values: Tensor
    public var scales: Tensor?
    public var blockCodes: Tensor?
    public init(format: WeightFormat, values: Tensor, scales: Tensor?, blockCodes: Tensor? = nil) {
        self.format = format
        self.values = values
        self.scales = scales
        self.blockCodes = blockCodes
    }
}

public enum Quantization {
    /// `w` (any float dtype) in `format`.
    public static func quantize(_ w: Tensor, as format: WeightFormat) -> QuantizedWeight {
        switch format {
        case .f32, .bf16, .f16:
            return QuantizedWeight(format: format, values: w.converted(to: format.storageDType), scales: nil)
        case .int8Channel:
            let (q, s) = quantizeInt8PerRow(w)
            return QuantizedWeight(format: format, values: q, scales: s)
        case .int8Block32, .int8Block16:
            let (s, c) = blockScales(w, format: format)
            let q = quantizeInt8(w, scales: s, codes: c, format: format)
            return QuantizedWeight(format: format, values: q, scales: s, blockCodes: c)
        }
    }

    /// Bytes of block codes per row of k values (both block formats): one per 32 values.
    @inlinable
    public static func codeBytes(k: Int) -> Int { (k + 31) / 32 }

    /// Level `c` of `int8-block16`'s codes, a fraction of the row's scale: 0, then `0.25 + 0.05 · c`
    /// (in double, rounded to f32: 0.3, 0.35, …, 1; code 15 is exactly 1).
    @inlinable
    public static func level16(_ c: UInt8) -> Float { c == 0 ? 0 : Float(0.25 + 0.05 * Double(c)) }

    /// How the blocks of a block format are coded: the values per block, the largest code, and a
    /// block's code and scale (the one definition every kernel uses).
    public struct BlockCoding: Sendable, Equatable {
        public let format: WeightFormat
        /// Values per block.
        public let size: Int

        public init?(_ format: WeightFormat) {
            switch format {
            case .int8Block32: size = 32
            case .int8Block16: size = 16
            default: return nil
            }
            self.format = format
        }

        /// Blocks in a row of `k` values.
        public func blocks(k: Int) -> Int { (k + size - 1) / size }

        public var maxCode: UInt8 { format == .int8Block32 ? 255 : 15 }

        /// The scale of a block from its row's scale and its code.
        @inlinable @inline(__always)
        public func scale(_ rowScale: Float, _ code: UInt8) -> Float {
            format == .int8Block32 ? rowScale * (Float(code) / 255) : rowScale * Quantization.level16(code)
        }

        /// `scale(1, c)` for every code c: a block's scale is `rowScale * levels[c]`, the same f32
        /// product as `scale(rowScale, c)`.
        public var levels: [Float] { format == .int8Block32 ? BlockCoding.levels32 : BlockCoding.levels16 }
        static let levels32: [Float] = (0...255).map { BlockCoding(.int8Block32)!.scale(1, UInt8($0)) }
        static let levels16: [Float] = (0...15).map { BlockCoding(.int8Block16)!.scale(1, UInt8($0)) }

        /// The code of block `b` of row `r` in codes `[rows, codeBytes(k)]`.
        @inlinable @inline(__always)
        public func code(_ codes: UnsafePointer<UInt8>, row r: Int, block b: Int, k: Int) -> UInt8 {
            let byte = codes[r * Quantization.codeBytes(k: k) + (format == .int8Block32 ? b : b / 2)]
            return format == .int8Block32 ? byte : (byte >> (4 * UInt8(b & 1))) & 15
        }

        /// Stores code `c` of block `b` of row `r` (the other half of a shared byte kept).
        public func setCode(_ codes: UnsafeMutablePointer<UInt8>, row r: Int, block b: Int, k: Int, _ c: UInt8) {
            let at = r * Quantization.codeBytes(k: k) + (format == .int8Block32 ? b : b / 2)
            if format == .int8Block32 { codes[at] = c; return }
            let shift = 4 * UInt8(b & 1)
            codes[at] = (codes[at] & ~(15 << shift)) | (c & 15) << shift
        }

        /// The smallest code whose block scale covers `maximum` (`127 · scale ≥ maximum`; the largest
        /// code, the row's scale, for the row's largest value), 0 for 0.
        public func code(rowScale s: Float, maximum m: Float) -> UInt8 {
            guard m > 0, s > 0 else { return 0 }
            var c: UInt8 = 1
            if format == .int8Block32 { c = UInt8(min(255, max(1, Int((255 * m / (127 * s)).rounded(.up))))) }
            while c > 1 && 127 * scale(s, c - 1) >= m { c -= 1 }
            while c < maxCode && 127 * scale(s, c) < m { c += 1 }
            return c
        }
    }

    /// The row scales and block codes of a block format for `w` (flattened to `[dims[0], k]`).
    public static func blockScales(_ w: Tensor, format: WeightFormat) -> (scales: Tensor, codes: Tensor) {
        let coding = BlockCoding(format)!
        let f = w.converted(to: .f32)
        let rows = max(1, w.shape.dims.first ?? 1)
        let k = w.count / rows
        let blocks = coding.blocks(k: k)
        let scales = Tensor.zeros(.f32, Shape([rows]))
        let codes = Tensor.zeros(.u8, Shape([rows, codeBytes(k: k)]))
        f.withElements(as: Float.self) { src in
            let s = scales.storage.mutableBytes!.bindMemory(to: Float.self)
            let c = codes.storage.mutableBytes!.bindMemory(to: UInt8.self).baseAddress!
            for r in 0..<rows {
                var m: Float = 0
                for i in (r * k)..<((r + 1) * k) where src[i].isFinite { m = max(m, abs(src[i])) }
                s[r] = m / 127
                for b in 0..<blocks {
                    var mb: Float = 0
                    for i in (r * k + b * coding.size)..<(r * k + min(k, (b + 1) * coding.size)) where src[i].isFinite { mb = max(mb, abs(src[i])) }
                    coding.setCode(c, row: r, block: b, k: k, coding.code(rowScale: s[r], maximum: mb))
                }
            }
        }
        return (scales, codes)
    }

    /// The scale each value of `[rows, k]` is rounded with: the row's (`codes` nil) or its block's.
    public static func valueScales(rows: Int, k: Int, scales: UnsafeBufferPointer<Float>, codes: UnsafeBufferPointer<UInt8>?, format: WeightFormat,
                                   into d: UnsafeMutableBufferPointer<Float>) {
        let coding = BlockCoding(format)
        for r in 0..<rows {
            for i in 0..<k {
                if let codes, let coding {
                    d[r * k + i] = coding.scale(scales[r], coding.code(codes.baseAddress!, row: r, block: i / coding.size, k: k))
                } else {
                    d[r * k + i] = scales[r]
                }
            }
        }
    }

    /// `w` rounded to int8 with its row scales and, if given, block codes of `format`.
    public static func quantizeInt8(_ w: Tensor, scales: Tensor, codes: Tensor?, format: WeightFormat = .int8Block32) -> Tensor {
        let f = w.converted(to: .f32)
        let rows = scales.count, k = rows > 0 ? w.count / rows : 0
        let values = Tensor.zeros(.i8, w.shape)
        let per = Tensor.zeros(.f32, Shape([rows * k]))
        scales.withElements(as: Float.self) { s in
            let pd = per.storage.mutableBytes!.bindMemory(to: Float.self)
            if let codes { codes.withElements(as: UInt8.self) { c in valueScales(rows: rows, k: k, scales: s, codes: c, format: format, into: pd) } }
            else { valueScales(rows: rows, k: k, scales: s, codes: nil, format: format, into: pd) }
        }
        f.withElements(as: Float.self) { src in
            per.withElements(as: Float.self) { sc in
                let q = values.storage.mutableBytes!.bindMemory(to: Int8.self)
                for i in 0..<(rows * k) where sc[i] > 0 {
                    let v = (src[i] / sc[i]).rounded()
                    q[i] = Int8(v.isNaN ? 0 : min(127, max(-127, v)))
                }
            }
        }
        return values
    }

    /// Symmetric int8 per row of dimension 0: values `i8` of `w`'s shape and scales `f32 [rows]`.
    public static func quantizeInt8PerRow(_ w: Tensor) -> (values: Tensor, scales: Tensor) {
        let f = w.converted(to: .f32)
        let rows = max(1, w.shape.dims.first ?? 1)
        let per = rows > 0 ? w.count / rows : 0
        let values = Tensor.zeros(.i8, w.shape)
        let scales = Tensor.zeros(.f32, Shape([rows]))
        f.withElements(as: Float.self) { src in
            let q = values.storage.mutableBytes!.bindMemory(to: Int8.self)
            let s = scales.storage.mutableBytes!.bindMemory(to: Float.self)
            for r in 0..<rows {
                var m: Float = 0
                for i in (r * per)..<((r + 1) * per) where src[i].isFinite { m = max(m, abs(src[i])) }
                let scale = m / 127
                s[r] = scale
                guard scale > 0 else { continue }
                for i in (r * per)..<((r + 1) * per) {
                    let v = (src[i] / scale).rounded()
                    q[i] = Int8(v.isNaN ? 0 : min(127, max(-127, v)))
                }
            }
        }
        return (values, scales)
    }

    /// The f32 values a quantised weight stands for.
    public static func dequantize(_ w: QuantizedWeight) -> Tensor {
        guard w.format.isInt8, let scales = w.scales else { return w.values.converted(to: .f32) }
        if let codes = w.blockCodes { return dequantizeInt8Blocks(w.values, scales: scales, codes: codes, format: w.format) }
        return dequantizeInt8PerRow(w.values, scales: scales)
    }

    /// Block-format values as f32: `Float(q) · blockScale(s_r, c_rb)`.
    public static func dequantizeInt8Blocks(_ values: Tensor, scales: Tensor, codes: Tensor, format: WeightFormat) -> Tensor {
        let rows = scales.count
        let k = rows > 0 ? values.count / rows : 0
        let per = Tensor.zeros(.f32, Shape([rows * k]))
        scales.withElements(as: Float.self) { s in
            codes.withElements(as: UInt8.self) { c in
                valueScales(rows: rows, k: k, scales: s, codes: c, format: format, into: per.storage.mutableBytes!.bindMemory(to: Float.self))
            }
        }
        let out = Tensor.zeros(.f32, values.shape)
        values.withElements(as: Int8.self) { q in
            per.withElements(as: Float.self) { sc in
                let d = out.storage.mutableBytes!.bindMemory(to: Float.self)
                for i in 0..<(rows * k) { d[i] = Float(q[i]) * sc[i] }
            }
        }
        return out
    }

    public static func dequantizeInt8PerRow(_ values: Tensor, scales: Tensor) -> Tensor {
        let rows = scales.count
        let per = rows > 0 ? values.count / rows : 0
        let out = Tensor.zeros(.f32, values.shape)
        values.withElements(as: Int8.self) { q in
            scales.withElements(as: Float.self) { s in
                let d = out.storage.mutableBytes!.bindMemory(to: Float.self)
                for r in 0..<rows {
                    for i in (r * per)..<((r + 1) * per) { d[i] = Float(q[i]) * s[r] }
                }
            }
        }
        return out
    }

    /// How far `approx` is from `exact`: ‖a − e‖₂ / ‖e‖₂, max |a − e| and the signal-to-noise ratio
    /// in dB (∞ when equal).
    public static func error(_ approx: Tensor, _ exact: Tensor) -> (relativeL2: Double, maxAbs: Double, snrDB: Double) {
        let a = approx.converted(to: .f32), e = exact.converted(to: .f32)
        return a.withElements(as: Float.self) { x in
            e.withElements(as: Float.self) { y in
                var num = 0.0, den = 0.0, mx = 0.0
                for i in 0..<min(x.count, y.count) {
                    let d = Double(x[i]) - Double(y[i])
                    num += d * d
                    den += Double(y[i]) * Double(y[i])
                    mx = max(mx, abs(d))
                }
                let rel = num == 0 ? 0 : (num / max(den, 1e-300)).squareRoot()
                return (rel, mx, num == 0 ? .infinity : 10 * (log10(den / num)))
            }
        }
    }
}
