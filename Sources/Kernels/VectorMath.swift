import CKernels
import KernelsAVX512
import Plan

/// Eight floats: the unit of the vectorised loops (two AVX2 registers' worth of work per FMA port;
/// LLVM maps it to one AVX2 register, or half an AVX-512 one).
public typealias Float8 = SIMD8<Float>

/// Vectorised transcendental functions for activations. Accuracy (checked against libm over
/// [-30, 30] in `VectorMathTests`): exp within 4e-7 relative, erf within 5e-7 absolute, so SiLU and GELU are
/// within 1e-6 relative of the reference kernels.
public enum VectorMath {
    @inline(__always)
    public static func exp(_ x: Float8) -> Float8 {
        var x = x.replacing(with: -87.33654, where: x .< -87.33654)
        x = x.replacing(with: 88, where: x .> 88)
        let n = (x * 1.44269504088896341).rounded(.toNearestOrEven)
        var r = x - n * 0.693359375
        r = r - n * -2.12194440e-4
        var p = Float8(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let y = p * r * r + r + 1
        // 2^n: n + 1.5·2^23 puts n in the low mantissa bits (|n| ≤ 127).
        let j = unsafeBitCast(n + 12582912.0, to: SIMD8<UInt32>.self) &- 0x4B40_0000
        let scale = unsafeBitCast((j &+ 127) &<< 23, to: Float8.self)
        return y * scale
    }

    /// erf as x·P(x²)/Q(x²) on [-4, 4] (erf rounds to ±1 beyond); max abs error 3.3e-7 in float.
    @inline(__always)
    public static func erf(_ x: Float8) -> Float8 {
        var x = x.replacing(with: -4, where: x .< -4)
        x = x.replacing(with: 4, where: x .> 4)
        let x2 = x * x
        var p = Float8(repeating: -2.72614225801306e-10)
        p = p * x2 + 2.77068142495902e-08
        p = p * x2 + -2.10102402082508e-06
        p = p * x2 + -5.69250639462346e-05
        p = p * x2 + -7.34990630326855e-04
        p = p * x2 + -2.95459980854025e-03
        p = p * x2 + -1.60960333262415e-02
        var q = Float8(repeating: -1.45660718464996e-05)
        q = q * x2 + -2.13374055278905e-04
        q = q * x2 + -1.68282697438203e-03
        q = q * x2 + -7.37332916720468e-03
        q = q * x2 + -1.42647390514189e-02
        return x * p / q
    }

    @inline(__always) public static func silu(_ x: Float8) -> Float8 { x / (1 + exp(-x)) }
    @inline(__always) public static func sigmoid(_ x: Float8) -> Float8 { 1 / (1 + exp(-x)) }
    @inline(__always) public static func gelu(_ x: Float8) -> Float8 { 0.5 * x * (1 + erf(x * 0.70710678118654752)) }

    /// `gelu` over `count` values in place: sixteen lanes where the processor has them (the same
    /// operations, so the same bits).
    public static func geluInPlace(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        if CPU.features & UInt32(CK_AVX512) != 0 { geluInPlaceAVX512(p, count) } else { map(p, p, count, gelu) }
    }
    /// GEGLU's combination of a row: `dst[j] = (a[j] + biasA[j]) · gelu(g[j] + biasG[j])` (no add
    /// where a bias is nil); one pass where the processor has sixteen lanes, the same bits as the
    /// bias add, `geluInPlace` and product done separately. `a` and `g` may be overwritten.
    public static func gegluCombine(_ a: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, biasA: UnsafePointer<Float>?,
                                    biasG: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
        if CPU.features & UInt32(CK_AVX512) != 0 {
            gegluCombineAVX512(a, g, biasA, biasG, dst, count)
            return
        }
        if let biasA { for j in 0..<count { a[j] += biasA[j] } }
        if let biasG { for j in 0..<count { g[j] += biasG[j] } }
        geluInPlace(g, count)
        for j in 0..<count { dst[j] = g[j] * a[j] }
    }
    @inline(__always) public static func geluTanh(_ x: Float8) -> Float8 {
        let y = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        // tanh(y) = 1 − 2/(e^{2y} + 1)
        return 0.5 * x * (2 - 2 / (exp(2 * y) + 1))
    }

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> Float8 {
        UnsafeRawPointer(p).loadUnaligned(as: Float8.self)
    }
    @inline(__always) static func store(_ v: Float8, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float8.self)
    }

    /// `f` over `count` floats from `src` to `dst` (which may be the same), eight at a time.
    @inline(__always)
    static func map(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ count: Int, _ f: (Float8) -> Float8) {
        var i = 0
        while i + 8 <= count {
            store(f(load(src + i)), dst + i)
            i += 8
        }
        if i < count {
            var t = Float8()
            for k in 0..<(count - i) { t[k] = src[i + k] }
            let r = f(t)
            for k in 0..<(count - i) { dst[i + k] = r[k] }
        }
    }
}

/// An epilogue with its operands resolved to pointers and its activations to cases: applied to a
/// contiguous run of outputs, eight at a time.
struct ResolvedEpilogue {
    enum Step {
        case silu, gelu, geluTanh, relu, sigmoid
        case leakyRelu(Float)
        case scale(Float)
        case residual(UnsafePointer<Float>)
        /// One value per (image, channel) plane of `plane` elements.
        case channels(UnsafePointer<Float>)
        /// PReLU: one slope per channel (of `count` channels) of the planes of `plane` elements.
        case prelu(UnsafePointer<Float>, count: Int)
    }
    let steps: [Step]
    /// Elements of a channel's plane (for `channels`).
    let plane: Int
    var isEmpty: Bool { steps.isEmpty }

    /// When the whole epilogue is `v < 0 ? v · s : v` with one slope per plane (leaky ReLU, PReLU),
    /// the slope of plane `index` (image · channels + channel), which a kernel can apply in
    /// registers; else nil.
    func negativeSlope(plane index: Int) -> Float? {
        guard steps.count == 1 else { return nil }
        switch steps[0] {
        case .leakyRelu(let a): return a
        case .prelu(let p, let channels): return p[index % channels]
        default: return nil
        }
    }

    /// `plane`: the output's H·W, for `addChannels` steps (convolutions).
    init(_ steps: [EpilogueStep], operands: [View], plane: Int = 0) {
        self.plane = plane
        self.steps = steps.map { s in
            switch s {
            case .activation(let kind, let alpha):
                switch kind {
                case .silu: return .silu
                case .gelu: return .gelu
                case .geluTanh: return .geluTanh
                case .relu: return .relu
                case .sigmoid: return .sigmoid
                case .leakyRelu: return .leakyRelu(alpha)
                }
            case .scale(let f): return .scale(f)
            case .scaleBy(let i): return .scale(operands[i].floats[0])
            case .addResidual(let i): return .residual(UnsafePointer(operands[i].floats))
            case .addChannels(let i):
                precondition(plane > 0, "addChannels needs the output's plane")
                return .channels(UnsafePointer(operands[i].floats))
            case .preluChannels(let i):
                precondition(plane > 0, "preluChannels needs the output's plane")
                return .prelu(UnsafePointer(operands[i].floats), count: operands[i].dims.count > 1 ? operands[i].dims[1] : 1)
            }
        }
    }

    /// `dst[i] = steps(dst[i] + bias)` for i in 0..<count, where dst[i] is output element `base + i`
    /// (residuals are read at that index); bias is `scalarBias` plus `vectorBias[i]` when given. One
    /// pass per step over the run (it stays in L1), each a tight vector loop.
    func apply(_ dst: UnsafeMutablePointer<Float>, count: Int, base: Int, scalarBias: Float = 0, vectorBias: UnsafePointer<Float>? = nil) {
        @inline(__always) func pass(_ f: (Float8, Int) -> Float8) {
            var i = 0
            while i + 8 <= count {
                VectorMath.store(f(VectorMath.load(dst + i), i), dst + i)
                i += 8
            }
            // Tail: one element at a time through the same vector code (lane 0).
            while i < count {
                dst[i] = f(Float8(repeating: dst[i]), i)[0]
                i += 1
            }
        }
        @inline(__always) func at(_ p: UnsafePointer<Float>, _ i: Int) -> Float8 {
            i + 8 <= count ? VectorMath.load(p + i) : Float8(repeating: p[i])
        }
        if let vb = vectorBias {
            pass { v, i in v + scalarBias + at(vb, i) }
        } else if scalarBias != 0 {
            pass { v, _ in v + scalarBias }
        }
        for s in steps {
            switch s {
            case .silu: pass { v, _ in VectorMath.silu(v) }
            case .gelu:
                VectorMath.geluInPlace(dst, count)
            case .geluTanh: pass { v, _ in VectorMath.geluTanh(v) }
            case .relu: pass { v, _ in v.replacing(with: 0, where: v .< 0) }
            case .sigmoid: pass { v, _ in VectorMath.sigmoid(v) }
            case .leakyRelu(let a): pass { v, _ in v.replacing(with: v * a, where: v .< 0) }
            case .scale(let f): pass { v, _ in v * f }
            case .residual(let p):
                let r = UnsafePointer(p + base)
                pass { v, i in v + at(r, i) }
            case .channels(let p):
                // The run may cross planes: one constant per plane it touches.
                var i = 0
                while i < count {
                    let ch = (base + i) / plane, end = min(count, (ch + 1) * plane - base)
                    let value = p[ch], splat = Float8(repeating: value)
                    while i + 8 <= end { VectorMath.store(VectorMath.load(dst + i) + splat, dst + i); i += 8 }
                    while i < end { dst[i] += value; i += 1 }
                }
            case .prelu(let p, let channels):
                var i = 0
                while i < count {
                    let plane = (base + i) / self.plane, end = min(count, (plane + 1) * self.plane - base)
                    let slope = p[plane % channels], splat = Float8(repeating: slope)
                    while i + 8 <= end {
                        let v = VectorMath.load(dst + i)
                        VectorMath.store(v.replacing(with: v * splat, where: v .< 0), dst + i)
                        i += 8
                    }
                    while i < end { if dst[i] < 0 { dst[i] *= slope }; i += 1 }
                }
            }
        }
    }
}
