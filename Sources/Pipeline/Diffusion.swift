import Foundation
import Plan

/// The training noise schedule of Stable Diffusion 2.1 (docs/diffbir.md §4.1): β linear in √ from 0.00085
/// to 0.012 over 1000 steps (float64), optionally rescaled to zero terminal SNR (v2.1).
public struct NoiseSchedule: Sendable {
    public let betas: [Double]
    public let alphasCumprod: [Double]

    public init(betas: [Double]) {
        self.betas = betas
        var a = 1.0
        alphasCumprod = betas.map { a *= 1 - $0; return a }
    }

    public static func stableDiffusion(zeroTerminalSNR: Bool) -> NoiseSchedule {
        let n = 1000
        let (s, e) = (0.00085.squareRoot(), 0.012.squareRoot())
        var betas = (0..<n).map { i -> Double in
            let v = s + (e - s) * Double(i) / Double(n - 1)
            return v * v
        }
        if zeroTerminalSNR {
            var a = 1.0
            var root = betas.map { b -> Double in a *= 1 - b; return a.squareRoot() }
            let (first, last) = (root[0], root[n - 1])
            for i in 0..<n { root[i] = (root[i] - last) * first / (first - last) }
            let bar = root.map { $0 * $0 }
            betas = (0..<n).map { i in 1 - (i == 0 ? bar[0] : bar[i] / bar[i - 1]) }
        }
        return NoiseSchedule(betas: betas)
    }

    public var count: Int { betas.count }
}

// (Parameterization and SamplerKind are the plan's vocabulary: Plan/DiffBIRPlanMetadata.swift.)

/// Standard normal samples, drawn in a fixed order (the initial latent, then each step's noise).
public protocol NoiseSource {
    mutating func normal(count: Int) throws -> [Float]
}

/// A seeded generator: xoshiro256** for uniform bits, Box–Muller in double precision. The same seed
/// gives the same numbers on any machine and thread count.
public struct SeededNoise: NoiseSource {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        // splitmix64 to fill the state.
        var z = seed
        func next() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        s = (next(), next(), next(), next())
    }

    private mutating func nextBits() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// Uniform in (0, 1].
    private mutating func uniform() -> Double { Double((nextBits() >> 11) + 1) / 9007199254740992.0 }

    public mutating func normal(count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        var i = 0
        while i < count {
            let (u1, u2) = (uniform(), uniform())
            let r = (-2 * Foundation.log(u1)).squareRoot(), a = 2 * Double.pi * u2
            out[i] = Float(r * cos(a))
            if i + 1 < count { out[i + 1] = Float(r * sin(a)) }
            i += 2
        }
        return out
    }
}

/// Noise read from a list of tensors, in order (parity tests replay PyTorch's draws).
public struct RecordedNoise: NoiseSource {
    public private(set) var draws: [[Float]]
    private var position = 0
    public init(_ draws: [[Float]]) { self.draws = draws }

    public struct Exhausted: Error, CustomStringConvertible {
        public let description: String
    }

    public mutating func normal(count: Int) throws -> [Float] {
        guard position < draws.count else { throw Exhausted(description: "recorded noise: draw \(position + 1) requested, \(draws.count) recorded") }
        let d = draws[position]
        guard d.count == count else { throw Exhausted(description: "recorded noise: draw \(position + 1) has \(d.count) values, \(count) requested") }
        position += 1
        return d
    }
}

/// One evaluation of the conditioned network (ControlNet + UNet): latent in, ε or v out. `positive`
/// selects the prompt (false: the negative prompt, for classifier-free guidance).
public typealias LatentModel = (_ x: [Float], _ t: Float, _ positive: Bool) throws -> [Float]

/// Restoration guidance in latent space (docs/diffbir.md §4.8, v2.0 semantics): pulls x̂₀ towards the
/// condition latent while the model time τ satisfies stop < τ + 1 < start.
public struct LatentGuidance: Sendable, Equatable {
    public var scale: Double
    public var start: Int
    public var stop: Int
    public var repeats: Int
    public init(scale: Double, start: Int = 1001, stop: Int = -1, repeats: Int = 1) {
        self.scale = scale
        self.start = start
        self.stop = stop
        self.repeats = repeats
    }
    func active(_ t: Int) -> Bool { stop < t + 1 && t + 1 < start }
}

public struct SamplerOptions: Sendable {
    public var kind: SamplerKind
    public var steps: Int
    public var cfgScale: Double
    public var rescaleCFG = false
    public var parameterization: Parameterization
    /// EDM SDE samplers.
    public var eta = 1.0
    public var sNoise = 1.0
    public init(kind: SamplerKind, steps: Int, cfgScale: Double, parameterization: Parameterization) {
        self.kind = kind
        self.steps = steps
        self.cfgScale = cfgScale
        self.parameterization = parameterization
    }
}

/// The samplers of docs/diffbir.md §4, each as DiffBIR's code computes it: schedules in float64 and rounded
/// to float32 where DiffBIR registers them as float32 buffers, latent arithmetic in float32.
public enum Sampler {
    /// Called after each model step with (step, total).
    public typealias Progress = (Int, Int) -> Void
    /// Restoration guidance on the spaced sampler: (x̂₀, model time, c1) → the guided x̂₀ (v2.0 moves
    /// x̂₀ by δ/c1 per repeat, so that the posterior mean moves by δ).
    /// `draw(n)` takes n standard normal values from the sampler's noise, in order.
    public typealias Guidance = (_ x0: [Float], _ t: Int, _ c1: Float, _ draw: (Int) throws -> [Float]) throws -> [Float]

    static func cfg(_ options: SamplerOptions, modelT: Double) -> Double {
        guard options.rescaleCFG, options.cfgScale > 1 else { return options.cfgScale }
        return 1 + options.cfgScale * (1 - cos(Double.pi * pow((1000 - modelT) / 1000, 5))) / 2
    }

    /// model(x) with classifier-free guidance: uncond + s·(cond − uncond); one pass when s == 1.
    static func guided(_ model: LatentModel, _ x: [Float], _ t: Float, scale: Double) throws -> [Float] {
        let c = try model(x, t, true)
        if scale == 1 { return c }
        let u = try model(x, t, false)
        let s = Float(scale)
        return zip(u, c).map { $0 + s * ($1 - $0) }
    }

    /// Samples from `xT` (standard normal) and returns the final latent.
    public static func sample<N: NoiseSource>(_ options: SamplerOptions, schedule: NoiseSchedule, xT: [Float], noise: inout N,
                                              model: LatentModel, guidance: Guidance? = nil,
                                              progress: Progress = { _, _ in }) throws -> [Float] {
        switch options.kind {
        case .spaced: return try spaced(options, schedule, xT, &noise, model, guidance, progress)
        case .ddim: return try ddim(options, schedule, xT, model, progress)
        case .dpmppM2: return try dpmSolverPP2M(options, schedule, xT, model, progress)
        case .edmDpmpp3mSDE: return try edm3mSDE(options, schedule, xT, &noise, model, progress)
        }
    }

    // MARK: spaced (§4.3)

    /// guided-diffusion's `space_timesteps(1000, "S")`: one section, round-half-even strides.
    public static func spacedTimesteps(_ total: Int, _ steps: Int) -> [Int] {
        let stride = steps <= 1 ? 1.0 : Double(total - 1) / Double(steps - 1)
        var taken: [Int] = []
        var cur = 0.0
        for _ in 0..<steps {
            taken.append(Int(cur.rounded(.toNearestOrEven)))
            cur += stride
        }
        return Array(Set(taken)).sorted()
    }

    static func spaced<N: NoiseSource>(_ o: SamplerOptions, _ sch: NoiseSchedule, _ xT: [Float], _ noise: inout N, _ model: LatentModel,
                                       _ guidance: Guidance?, _ progress: Progress) throws -> [Float] {
        let used = spacedTimesteps(sch.count, o.steps)
        var betas: [Double] = []
        var last = 1.0
        for (i, a) in sch.alphasCumprod.enumerated() where used.contains(i) {
            betas.append(1 - a / last)
            last = a
        }
        let n = betas.count
        var ac: [Double] = []
        var a = 1.0
        for b in betas { a *= 1 - b; ac.append(a) }
        let prev = [1.0] + ac.dropLast()
        func f32(_ v: Double) -> Float { Float(v) }
        let sqrtAc = ac.map { f32($0.squareRoot()) }, sqrtOneMinus = ac.map { f32((1 - $0).squareRoot()) }
        let recip = ac.map { f32((1 / $0).squareRoot()) }, recipm1 = ac.map { f32((1 / $0 - 1).squareRoot()) }
        let variance = (0..<n).map { f32(betas[$0] * (1 - prev[$0]) / (1 - ac[$0])) }
        let coef1 = (0..<n).map { f32(betas[$0] * prev[$0].squareRoot() / (1 - ac[$0])) }
        let coef2 = (0..<n).map { f32((1 - prev[$0]) * (1 - betas[$0]).squareRoot() / (1 - ac[$0])) }
        var x = xT
        for (step, k) in (0..<n).reversed().enumerated() {
            let modelT = used[k]
            let out = try guided(model, x, Float(modelT), scale: cfg(o, modelT: Double(modelT)))
            var x0: [Float]
            if o.parameterization == .eps {
                x0 = (0..<x.count).map { recip[k] * x[$0] - recipm1[k] * out[$0] }
            } else {
                x0 = (0..<x.count).map { sqrtAc[k] * x[$0] - sqrtOneMinus[k] * out[$0] }
            }
            if let guidance { x0 = try guidance(x0, modelT, coef1[k]) { try noise.normal(count: $0) } }
            let mean = (0..<x.count).map { coef1[k] * x0[$0] + coef2[k] * x[$0] }
            let z = try noise.normal(count: x.count)
            let sd = variance[k].squareRoot()
            let mask: Float = k != 0 ? 1 : 0
            x = (0..<x.count).map { mean[$0] + mask * sd * z[$0] }
            progress(step + 1, n)
        }
        return x
    }

    // MARK: DDIM (§4.4)

    static func ddim(_ o: SamplerOptions, _ sch: NoiseSchedule, _ xT: [Float], _ model: LatentModel, _ progress: Progress) throws -> [Float] {
        let c = sch.count / o.steps
        let ts = stride(from: 0, to: sch.count, by: c).map { $0 + 1 }
        let alphas = ts.map { sch.alphasCumprod[$0] }
        let prev = [sch.alphasCumprod[0]] + ts.dropLast().map { sch.alphasCumprod[$0] }
        let (a32, prev32) = (alphas.map { Float($0) }, prev.map { Float($0) })
        let sqrtA = alphas.map { Float($0.squareRoot()) }, sqrtOneMinus = alphas.map { Float((1 - $0).squareRoot()) }
        var x = xT
        let n = ts.count
        for (i, step) in ts.reversed().enumerated() {
            let k = n - i - 1
            let out = try guided(model, x, Float(step), scale: cfg(o, modelT: Double(step)))
            let e = o.parameterization == .eps ? out : (0..<x.count).map { sqrtA[k] * out[$0] + sqrtOneMinus[k] * x[$0] }
            let at = a32[k], ap = prev32[k]
            let sa = at.squareRoot(), sap = ap.squareRoot(), dir = (1 - ap).squareRoot()
            x = (0..<x.count).map { j in
                let x0 = (x[j] - sqrtOneMinus[k] * e[j]) / sa
                return sap * x0 + dir * e[j]
            }
            progress(i + 1, n)
        }
        return x
    }

    // MARK: DPM-Solver++ (2M) (§4.5)

    /// NoiseScheduleVP('discrete') of dpm_solver_pytorch, in float32 as DiffBIR runs it.
    struct VPSchedule {
        let logAlpha: [Float]
        let tArray: [Float]
        var total: Int { logAlpha.count }

        init(betas: [Double]) {
            // 0.5·cumsum(log(1 − β)) on float32 β (torch's CPU cumsum accumulates in double).
            var acc = 0.0
            var la = betas.map { b -> Float in acc += Double(logf(1 - Float(b))); return 0.5 * Float(acc) }
            // numerical_clip_alpha: drop the tail where λ = log α − log σ < −5.1.
            let lambdas = la.map { l -> Float in l - 0.5 * logf(1 - expf(2 * l)) }
            let flipped = Array(lambdas.reversed())
            // torch.searchsorted (left) on the flipped, ascending array.
            var idx = 0
            while idx < flipped.count && flipped[idx] < -5.1 { idx += 1 }
            if idx > 0 { la.removeLast(idx) }
            logAlpha = la
            let n = la.count
            // torch.linspace(0, 1, n + 1)[1:] in float32.
            tArray = (1...n).map { i in Self.linspace(0, 1, n + 1, i) }
        }

        /// torch.linspace's value at index i (float32, computed from both ends as torch does).
        static func linspace(_ a: Float, _ b: Float, _ count: Int, _ i: Int) -> Float {
            let step = (b - a) / Float(count - 1)
            let half = count / 2
            return i < half ? a + step * Float(i) : b - step * Float(count - 1 - i)
        }

        /// Piecewise-linear interpolation through (xp, yp), extrapolating with the end segments.
        static func interpolate(_ x: Float, _ xp: [Float], _ yp: [Float]) -> Float {
            let k = xp.count
            var j = 0
            while j < k && xp[j] < x { j += 1 }
            let start = j == 0 ? 0 : (j == k ? k - 2 : j - 1)
            let (x0, x1, y0, y1) = (xp[start], xp[start + 1], yp[start], yp[start + 1])
            return y0 + (x - x0) * (y1 - y0) / (x1 - x0)
        }

        func logMean(_ t: Float) -> Float { Self.interpolate(t, tArray, logAlpha) }
        func alpha(_ t: Float) -> Float { expf(logMean(t)) }
        func std(_ t: Float) -> Float { (1 - expf(2 * logMean(t))).squareRoot() }
        func lambda(_ t: Float) -> Float { let l = logMean(t); return l - 0.5 * logf(1 - expf(2 * l)) }
    }

    static func dpmSolverPP2M(_ o: SamplerOptions, _ sch: NoiseSchedule, _ xT: [Float], _ model: LatentModel, _ progress: Progress) throws -> [Float] {
        let ns = VPSchedule(betas: sch.betas)
        let n = ns.total
        let (tT, t0) = (Float(1), 1 / Float(n))
        let ts = (0...o.steps).map { VPSchedule.linspace(tT, t0, o.steps + 1, $0) }
        // The data prediction x̂₀ at continuous time t (noise prediction converted, CFG on the noise).
        func data(_ x: [Float], _ t: Float) throws -> [Float] {
            let tIn = (t - 1 / Float(n)) * 1000
            let (a, s) = (ns.alpha(t), ns.std(t))
            // Each branch converted to a noise prediction, then combined (model_wrapper's order).
            func noisePrediction(_ positive: Bool) throws -> [Float] {
                let out = try model(x, tIn, positive)
                return o.parameterization == .eps ? out : (0..<x.count).map { a * out[$0] + s * x[$0] }
            }
            var eps = try noisePrediction(true)
            if o.cfgScale != 1 {
                let u = try noisePrediction(false)
                let scale = Float(o.rescaleCFG && o.cfgScale > 1 ? 1 + o.cfgScale * (1 - cos(Double.pi * pow((1000 - Double(tIn)) / 1000, 5))) / 2 : o.cfgScale)
                eps = (0..<x.count).map { u[$0] + scale * (eps[$0] - u[$0]) }
            }
            return (0..<x.count).map { (x[$0] - s * eps[$0]) / a }
        }
        var x = xT
        var prevT = [ts[0]]
        var prevModel = [try data(x, ts[0])]
        progress(1, o.steps)
        for step in 1...o.steps {
            let t = ts[step]
            let order = step == 1 ? 1 : (o.steps < 10 ? min(2, o.steps + 1 - step) : 2)
            let s = prevT.last!
            let (lamS, lamT) = (ns.lambda(s), ns.lambda(t))
            let h = lamT - lamS
            let (sigmaS, sigmaT, alphaT) = (ns.std(s), ns.std(t), expf(ns.logMean(t)))
            let phi1 = expm1f(-h)
            let m0 = prevModel.last!
            if order == 1 {
                x = (0..<x.count).map { sigmaT / sigmaS * x[$0] - alphaT * phi1 * m0[$0] }
            } else {
                let m1 = prevModel[prevModel.count - 2], t1 = prevT[prevT.count - 2]
                let h0 = lamS - ns.lambda(t1)
                let r0 = h0 / h
                x = (0..<x.count).map { j in
                    let d = (1 / r0) * (m0[j] - m1[j])
                    return (sigmaT / sigmaS) * x[j] - (alphaT * phi1) * m0[j] - 0.5 * (alphaT * phi1) * d
                }
            }
            prevT.append(t)
            if prevT.count > 2 { prevT.removeFirst() }
            if step < o.steps {
                prevModel.append(try data(x, t))
                if prevModel.count > 2 { prevModel.removeFirst() }
                progress(step + 1, o.steps)
            }
        }
        return x
    }

    // MARK: EDM DPM-Solver++(3M) SDE (§4.6)

    public static func edmSigmas(_ sch: NoiseSchedule, steps: Int) -> (sigmas: [Float], timesteps: [Int]) {
        // np.linspace(999, 0, steps, endpoint=False).astype(int)
        let last = Double(sch.count - 1)
        let step = (0 - last) / Double(steps)
        var ts = (0..<steps).map { Int(last + Double($0) * step) }
        var ac = ts.map { sch.alphasCumprod[$0] }
        ac[0] = 1e-8
        var sigmas = ac.map { Float(((1 - $0) / $0).squareRoot()) }
        sigmas.append(0)
        ts.append(0)
        return (sigmas, ts)
    }

    static func edm3mSDE<N: NoiseSource>(_ o: SamplerOptions, _ sch: NoiseSchedule, _ xT: [Float], _ noise: inout N,
                                         _ model: LatentModel, _ progress: Progress) throws -> [Float] {
        let (sigmas, ts) = edmSigmas(sch, steps: o.steps)
        func denoise(_ x: [Float], _ sigma: Float) throws -> [Float] {
            let cIn = 1 / (sigma * sigma + 1).squareRoot()
            let (cSkip, cOut): (Float, Float) = o.parameterization == .eps ? (1, -sigma) : (1 / (sigma * sigma + 1), -sigma / (sigma * sigma + 1).squareRoot())
            // Model time: the schedule step whose σ is nearest.
            var best = 0
            for j in sigmas.indices where abs(sigma - sigmas[j]) < abs(sigma - sigmas[best]) { best = j }
            let t = ts[best]
            let xin = x.map { $0 * cIn }
            let s = cfg(o, modelT: Double(t))
            let c = try model(xin, Float(t), true).enumerated().map { $1 * cOut + x[$0] * cSkip }
            if o.cfgScale == 1 { return c }
            let u = try model(xin, Float(t), false).enumerated().map { $1 * cOut + x[$0] * cSkip }
            let sf = Float(s)
            return zip(u, c).map { $0 + sf * ($1 - $0) }
        }
        var x = xT.map { $0 * (1 + sigmas[0] * sigmas[0]).squareRoot() }
        var d1: [Float]? = nil, d2: [Float]? = nil
        var h1: Float? = nil, h2: Float? = nil
        let eta = Float(o.eta), sNoise = Float(o.sNoise)
        for i in 0..<(sigmas.count - 1) {
            let d = try denoise(x, sigmas[i])
            var h: Float? = nil
            if sigmas[i + 1] == 0 {
                x = d
            } else {
                let (t, s) = (-logf(sigmas[i]), -logf(sigmas[i + 1]))
                let hh = s - t
                h = hh
                let hEta = hh * (eta + 1)
                let e = expf(-hEta), em = -expm1f(-hEta)
                x = (0..<x.count).map { e * x[$0] + em * d[$0] }
                if let h1, let h2, let p1 = d1, let p2 = d2 {
                    let (r0, r1) = (h1 / hh, h2 / hh)
                    let phi2 = expm1f(-hEta) / hEta + 1
                    let phi3 = phi2 / hEta - 0.5
                    x = (0..<x.count).map { j in
                        let d10 = (d[j] - p1[j]) / r0, d11 = (p1[j] - p2[j]) / r1
                        let dd1 = d10 + (d10 - d11) * r0 / (r0 + r1)
                        let dd2 = (d10 - d11) / (r0 + r1)
                        return x[j] + phi2 * dd1 - phi3 * dd2
                    }
                } else if let h1, let p1 = d1 {
                    let r = h1 / hh
                    let phi2 = expm1f(-hEta) / hEta + 1
                    x = (0..<x.count).map { x[$0] + phi2 * (d[$0] - p1[$0]) / r }
                }
                if eta != 0 {
                    let z = try noise.normal(count: x.count)
                    let f = sigmas[i + 1] * (-expm1f(-2 * hh * eta)).squareRoot() * sNoise
                    x = (0..<x.count).map { x[$0] + z[$0] * f }
                }
            }
            (d2, d1) = (d1, d)
            (h2, h1) = (h1, h)
            progress(i + 1, sigmas.count - 1)
        }
        return x
    }
}
