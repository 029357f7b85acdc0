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
/// - `f16`: IEEE binary16, nearest even (as `Tensor.converted(to: .f16)`).
/// - `bf16`: the upper half of an f32, nearest even.
public enum WeightFormat: String, Sendable, CaseIterable, Codable {
    case f32
    case bf16
    case f16
    case int8Channel = "int8-channel"

    /// The dtype the values are stored in.
    public var storageDType: DType {
        switch self {
        case .f32: return .f32
        case .bf16: return .bf16
        case .f16: return .f16
        case .int8Channel: return .i8
        }
    }

    /// The names a user may give on the command line (`int8` for `int8-channel`).
    public init?(userName: String) {
        switch userName.lowercased() {
        case "f32", "float32", "fp32": self = .f32
        case "bf16", "bfloat16": self = .bf16
        case "f16", "fp16", "float16", "half": self = .f16
        case "int8", "i8", "int8-channel": self = .int8Channel
        default: return nil
        }
    }
}

/// A weight in a storage format: its values and, for `int8-channel`, the per-row scales.
public struct QuantizedWeight: Sendable {
    public var format: WeightFormat
    public var values: Tensor
    public var scales: Tensor?
    public init(format: WeightFormat, values: Tensor, scales: Tensor?) {
        self.format = format
        self.values = values
        self.scales = scales
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
        }
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
        guard w.format == .int8Channel, let scales = w.scales else { return w.values.converted(to: .f32) }
        return dequantizeInt8PerRow(w.values, scales: scales)
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
