import Synchronization
import Foundation
import Dispatch
import CKernels
import KernelsAVX2
import KernelsAVX512
import Plan
import Tensors

/// The instruction sets our GEMM micro-kernels are written for, best first. `openblas` is the
/// portable fallback (and the reference for speed): every kernel then calls `cblas_sgemm`.
public enum ISA: String, Sendable, CaseIterable, CustomStringConvertible {
    case avx512
    case avx2
    case openblas

    public var description: String { rawValue }

    /// Whether this processor (and its OS) can run the kernels of this set.
    public var isSupported: Bool {
        switch self {
        case .avx512: return CPU.features & UInt32(CK_AVX512) != 0
        case .avx2: return CPU.features & UInt32(CK_AVX2_FMA) != 0
        case .openblas: return true
        }
    }

    /// The best set this processor runs.
    public static var best: ISA { allCases.first { $0.isSupported }! }
}

/// What the processor has, read once with CPUID.
public enum CPU {
    public static let features: UInt32 = ck_cpu_features()

    public static var summary: String {
        var s: [String] = []
        if features & UInt32(CK_AVX2_FMA) != 0 { s.append("AVX2+FMA") }
        if features & UInt32(CK_AVX512) != 0 { s.append("AVX-512") }
        if features & UInt32(CK_AVX512_VNNI) != 0 { s.append("VNNI") }
        if features & UInt32(CK_AVX512_BF16) != 0 { s.append("BF16") }
        return s.isEmpty ? "baseline x86-64" : s.joined(separator: ", ")
    }
}

extension CPU {
    /// A note when a plan's activation precision has no instructions on this processor with these
    /// kernels: bf16 products without AVX512-BF16, int8 × int8 products without AVX512-VNNI run on
    /// emulations (the same results, usually slower than an f32 plan); nil when it has them.
    public static func precisionNote(_ activations: ActivationPrecision, isa: ISA) -> String? {
        let vnni = features & UInt32(CK_AVX512_VNNI) != 0 && isa == .avx512
        switch activations {
        case .f32: return nil
        case .bf16 where !hasBF16(isa):
            return "this plan multiplies in bf16, which this processor (\(summary)) emulates with \(isa) kernels (attention runs in f32): usually slower than an f32 plan of the same model"
        case .int8 where !vnni:
            return "this plan multiplies int8 × int8, which this processor (\(summary)) runs without VNNI (\(isa) kernels on 16-bit products; attention in f32, 3×3 convolutions of 32×32 outputs or more as Winograd on the int8 weights with f32 activations): often not faster than an f32 plan here"
        default: return nil
        }
    }

    /// Whether bf16 products run on bf16 instructions (AVX512-BF16 with the AVX-512 kernels) rather
    /// than an emulation: without them, the executor takes attention in f32 (an emulated bf16
    /// attention took 1.6–1.8× the f32 one in the denoise step, `--isa avx2`).
    public static func hasBF16(_ isa: ISA) -> Bool { features & UInt32(CK_AVX512_BF16) != 0 && isa == .avx512 }
}
