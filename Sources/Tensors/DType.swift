/// Element types of tensors, with their sizes and their names in the file formats we read.
public enum DType: String, CaseIterable, Sendable, Codable, CustomStringConvertible {
    case f32, f16, bf16, f64, i8, u8, i16, i32, i64, bool

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .f32, .f16, .bf16, .f64: return true
        default: return false
        }
    }

    public var description: String { rawValue }

    /// The dtype string of the safetensors header (`"F32"`, `"BF16"`, `"BOOL"`, ...).
    public var safetensorsName: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .f64: return "F64"
        case .i8: return "I8"
        case .u8: return "U8"
        case .i16: return "I16"
        case .i32: return "I32"
        case .i64: return "I64"
        case .bool: return "BOOL"
        }
    }

    public init?(safetensorsName: String) {
        guard let match = DType.allCases.first(where: { $0.safetensorsName == safetensorsName }) else { return nil }
        self = match
    }

    /// Accepts our names (`f16`) and the usual aliases (`float16`, `fp16`, `half`, `bfloat16`, ...).
    public init?(name: String) {
        switch name.lowercased() {
        case "f32", "float32", "fp32", "float": self = .f32
        case "f16", "float16", "fp16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        case "f64", "float64", "fp64", "double": self = .f64
        case "i8", "int8": self = .i8
        case "u8", "uint8": self = .u8
        case "i16", "int16": self = .i16
        case "i32", "int32": self = .i32
        case "i64", "int64", "long": self = .i64
        case "bool": self = .bool
        default: return nil
        }
    }
}
