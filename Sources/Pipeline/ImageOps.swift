import Foundation

/// A float image, channels first (`[c, h, w]`, batch 1), as DiffBIR's tensors are.
public struct Planar: Sendable, Equatable {
    public var channels: Int
    public var height: Int
    public var width: Int
    public var data: [Float]

    public init(channels: Int, height: Int, width: Int, data: [Float]) {
        precondition(data.count == channels * height * width)
        self.channels = channels
        self.height = height
        self.width = width
        self.data = data
    }

    public init(channels: Int, height: Int, width: Int, value: Float = 0) {
        self.init(channels: channels, height: height, width: width, data: [Float](repeating: value, count: channels * height * width))
    }

    public var shape: [Int] { [1, channels, height, width] }

    /// 8-bit RGB (interleaved) → [0, 1] (`uint8 / 255`, as float32).
    public init(rgb8 bytes: [UInt8], height: Int, width: Int) {
        var d = [Float](repeating: 0, count: 3 * height * width)
        let plane = height * width
        for i in 0..<plane {
            for c in 0..<3 { d[c * plane + i] = Float(bytes[i * 3 + c]) / 255 }
        }
        self.init(channels: 3, height: height, width: width, data: d)
    }

    /// [0, 1] → 8-bit RGB as DiffBIR writes it: `(x·255).clamp(0, 255).to(uint8)` (truncation).
    public func rgb8() -> [UInt8] {
        let plane = height * width
        var out = [UInt8](repeating: 0, count: plane * 3)
        for i in 0..<plane {
            for c in 0..<3 {
                let v = data[c * plane + i] * 255
                out[i * 3 + c] = v.isNaN ? 0 : UInt8(min(max(v, 0), 255))
            }
        }
        return out
    }

    /// Zero padding on the right and bottom to multiples of `m` (`pad_to_multiples_of`).
    public func padded(toMultipleOf m: Int) -> Planar { padded(height: (height + m - 1) / m * m, width: (width + m - 1) / m * m) }

    public func padded(height h: Int, width w: Int) -> Planar {
        if h == height && w == width { return self }
        var out = Planar(channels: channels, height: h, width: w)
        for c in 0..<channels {
            for y in 0..<min(height, h) {
                let src = (c * height + y) * width, dst = (c * h + y) * w
                for x in 0..<min(width, w) { out.data[dst + x] = data[src + x] }
            }
        }
        return out
    }

    /// The region [y0, y0+h) × [x0, x0+w).
    public func crop(y: Int, x: Int, height h: Int, width w: Int) -> Planar {
        var out = Planar(channels: channels, height: h, width: w)
        for c in 0..<channels {
            for r in 0..<h {
                let src = (c * height + y + r) * width + x, dst = (c * h + r) * w
                for k in 0..<w { out.data[dst + k] = data[src + k] }
            }
        }
        return out
    }

    public func map(_ f: (Float) -> Float) -> Planar {
        Planar(channels: channels, height: height, width: width, data: data.map(f))
    }
}

/// Resampling as PyTorch and PIL do it (docs/diffbir.md §1.3): `F.interpolate(mode="bicubic",
/// antialias=True)` on floats, and PIL's `Image.resize(BICUBIC)` on 8-bit images. Both use Keys'
/// cubic with a = −0.5, the support widened by the scale when shrinking, weights normalised per
/// output pixel, horizontal pass first.
public enum Resample {
    @inline(__always)
    static func cubic(_ x: Double) -> Double {
        let a = -0.5
        let x = abs(x)
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }

    /// For each output index: the first input index and the normalised weights.
    static func weights(input: Int, output: Int) -> [(start: Int, weights: [Double])] {
        let scale = Double(input) / Double(output)
        let support = scale >= 1 ? 2 * scale : 2
        let invscale = scale >= 1 ? 1 / scale : 1
        return (0..<output).map { i in
            let center = scale * (Double(i) + 0.5)
            let xmin = max(Int(center - support + 0.5), 0)
            let xsize = min(Int(center + support + 0.5), input) - xmin
            var w = (0..<max(xsize, 0)).map { j in cubic((Double(j + xmin) - center + 0.5) * invscale) }
            let total = w.reduce(0, +)
            if total != 0 { w = w.map { $0 / total } }
            return (xmin, w)
        }
    }

    /// `F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False)`.
    public static func bicubicAntialias(_ image: Planar, height: Int, width: Int) -> Planar {
        var current = image
        if width != image.width {
            let ws = weights(input: image.width, output: width).map { ($0.start, $0.weights.map { Float($0) }) }
            var out = Planar(channels: image.channels, height: image.height, width: width)
            for row in 0..<(image.channels * image.height) {
                let src = row * image.width, dst = row * width
                for (x, (start, w)) in ws.enumerated() {
                    var t: Float = 0
                    for j in 0..<w.count { t += image.data[src + start + j] * w[j] }
                    out.data[dst + x] = t
                }
            }
            current = out
        }
        if height != image.height {
            let ws = weights(input: current.height, output: height).map { ($0.start, $0.weights.map { Float($0) }) }
            var out = Planar(channels: current.channels, height: height, width: current.width)
            let w = current.width
            for c in 0..<current.channels {
                for (y, (start, k)) in ws.enumerated() {
                    let dst = (c * height + y) * w
                    for x in 0..<w {
                        var t: Float = 0
                        for j in 0..<k.count { t += current.data[(c * current.height + start + j) * w + x] * k[j] }
                        out.data[dst + x] = t
                    }
                }
            }
            current = out
        }
        return current
    }

    /// `resize_short_edge_to(x, size)`: square → size×size, else the short side to `size` and the
    /// long side `int(long·size/short)`.
    public static func shortEdge(_ image: Planar, to size: Int) -> Planar {
        let (h, w) = (image.height, image.width)
        let (oh, ow): (Int, Int)
        if h == w { (oh, ow) = (size, size) }
        else if h < w { (oh, ow) = (size, Int(Double(w) * (Double(size) / Double(h)))) }
        else { (oh, ow) = (Int(Double(h) * (Double(size) / Double(w))), size) }
        return bicubicAntialias(image, height: oh, width: ow)
    }

    /// PIL's `Image.resize((width, height), Image.BICUBIC)` on 8-bit interleaved pixels: 22-bit fixed
    /// point coefficients, rounding and clamping to 8 bits after each pass, horizontal pass first.
    public static func pilBicubic(_ pixels: [UInt8], height: Int, width: Int, channels: Int, toHeight oh: Int, toWidth ow: Int) -> [UInt8] {
        if oh == height && ow == width { return pixels }
        let precision = 22
        func fixed(_ ws: [(start: Int, weights: [Double])]) -> [(Int, [Int32])] {
            ws.map { ($0.start, $0.weights.map { k in Int32(k < 0 ? (k * Double(1 << precision) - 0.5) : (k * Double(1 << precision) + 0.5)) }) }
        }
        func clip8(_ v: Int) -> UInt8 { UInt8(min(max(v >> precision, 0), 255)) }
        let half = 1 << (precision - 1)
        var current = pixels
        var (ch, cw) = (height, width)
        if ow != width {
            let ws = fixed(weights(input: width, output: ow))
            var out = [UInt8](repeating: 0, count: ch * ow * channels)
            for y in 0..<ch {
                for (x, (start, k)) in ws.enumerated() {
                    for c in 0..<channels {
                        var ss = half
                        for j in 0..<k.count { ss += Int(current[(y * cw + start + j) * channels + c]) * Int(k[j]) }
                        out[(y * ow + x) * channels + c] = clip8(ss)
                    }
                }
            }
            current = out
            cw = ow
        }
        if oh != height {
            let ws = fixed(weights(input: height, output: oh))
            var out = [UInt8](repeating: 0, count: oh * cw * channels)
            for (y, (start, k)) in ws.enumerated() {
                for x in 0..<cw {
                    for c in 0..<channels {
                        var ss = half
                        for j in 0..<k.count { ss += Int(current[((start + j) * cw + x) * channels + c]) * Int(k[j]) }
                        out[(y * cw + x) * channels + c] = clip8(ss)
                    }
                }
            }
            current = out
            ch = oh
        }
        return current
    }
}

/// Colour correction of the decoded sample against the stage-1 output (docs/diffbir.md §1.8).
public enum ColorFix: String, Sendable, CaseIterable, Codable {
    case wavelet, adain, none

    /// `wavelet_blur`: replicate padding by r, then the 3×3 [1 2 1]ᵀ[1 2 1]/16 kernel with dilation r.
    static func blur(_ image: Planar, radius r: Int) -> Planar {
        var out = Planar(channels: image.channels, height: image.height, width: image.width)
        let (h, w) = (image.height, image.width)
        let k: [Float] = [0.0625, 0.125, 0.0625, 0.125, 0.25, 0.125, 0.0625, 0.125, 0.0625]
        for c in 0..<image.channels {
            let base = c * h * w
            for y in 0..<h {
                let rows = [min(max(y - r, 0), h - 1), y, min(max(y + r, 0), h - 1)]
                for x in 0..<w {
                    let cols = [min(max(x - r, 0), w - 1), x, min(max(x + r, 0), w - 1)]
                    var t: Float = 0
                    for i in 0..<3 { for j in 0..<3 { t += image.data[base + rows[i] * w + cols[j]] * k[i * 3 + j] } }
                    out.data[base + y * w + x] = t
                }
            }
        }
        return out
    }

    /// (high, low) frequencies over 5 levels (radii 1, 2, 4, 8, 16).
    static func decompose(_ image: Planar, levels: Int = 5) -> (high: Planar, low: Planar) {
        var high = Planar(channels: image.channels, height: image.height, width: image.width)
        var current = image
        for i in 0..<levels {
            let low = blur(current, radius: 1 << i)
            for k in high.data.indices { high.data[k] += current.data[k] - low.data[k] }
            current = low
        }
        return (high, current)
    }

    /// `wavelet_reconstruction(content, style)`: content's high frequencies + style's low frequencies.
    public static func wavelet(content: Planar, style: Planar) -> Planar {
        let (high, _) = decompose(content)
        let (_, low) = decompose(style)
        var out = high
        for k in out.data.indices { out.data[k] += low.data[k] }
        return out
    }

    /// AdaIN (v1): per channel `(c − μc)/σc·σs + μs`, σ from the unbiased variance + 1e−5.
    public static func adain(content: Planar, style: Planar) -> Planar {
        func stats(_ p: Planar, _ c: Int) -> (Double, Double) {
            let n = p.height * p.width
            let s = p.data[(c * n)..<((c + 1) * n)]
            let mean = s.reduce(0.0) { $0 + Double($1) } / Double(n)
            let variance = s.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(max(n - 1, 1))
            return (mean, (variance + 1e-5).squareRoot())
        }
        var out = content
        let n = content.height * content.width
        for c in 0..<content.channels {
            let (mc, sc) = stats(content, c), (ms, ss) = stats(style, c)
            for i in 0..<n { out.data[c * n + i] = Float((Double(content.data[c * n + i]) - mc) / sc * ss + ms) }
        }
        return out
    }

    public func apply(content: Planar, style: Planar) -> Planar {
        switch self {
        case .wavelet: return Self.wavelet(content: content, style: style)
        case .adain: return Self.adain(content: content, style: style)
        case .none: return content
        }
    }
}

/// Tiled evaluation with Gaussian blending (`make_tiled_fn`, docs/diffbir.md §1.7).
public enum Tiler {
    /// `sliding_windows(h, w, size, stride)`: (y, x) of each tile, row-major.
    public static func windows(height h: Int, width w: Int, size: Int, stride: Int) -> [(y: Int, x: Int)] {
        func starts(_ n: Int) -> [Int] {
            var s = Array(Swift.stride(from: 0, through: n - size, by: stride))
            if (n - size) % stride != 0 { s.append(n - size) }
            return s
        }
        return starts(h).flatMap { y in starts(w).map { (y, $0) } }
    }

    /// `gaussian_weights(w, h)`: outer(wy, wx) with var 0.01; the y centre is h/2 (sic), x's (w−1)/2.
    public static func gaussianWeights(width: Int, height: Int) -> [Float] {
        let v = 0.01
        let norm = (2 * Double.pi * v).squareRoot()
        let mx = Double(width - 1) / 2, my = Double(height) / 2
        let wx = (0..<width).map { x in exp(-(Double(x) - mx) * (Double(x) - mx) / Double(width * width) / (2 * v)) / norm }
        let wy = (0..<height).map { y in exp(-(Double(y) - my) * (Double(y) - my) / Double(height * height) / (2 * v)) / norm }
        return wy.flatMap { a in wx.map { Float(a * $0) } }
    }

    /// Runs `f` on each `size`-square tile of `input` (stride `stride`) and blends its output
    /// (`scale` times the tile's size, `outChannels` channels) with Gaussian weights.
    public static func run(_ input: Planar, size: Int, stride: Int, scale: Int = 1, divide: Int = 1, outChannels: Int,
                           progress: (Int, Int) -> Void = { _, _ in }, _ f: (Planar, _ y: Int, _ x: Int) throws -> Planar) rethrows -> Planar {
        let oh = input.height * scale / divide, ow = input.width * scale / divide
        let osize = size * scale / divide
        var out = Planar(channels: outChannels, height: oh, width: ow)
        var count = [Float](repeating: 0, count: oh * ow)
        let weights = gaussianWeights(width: osize, height: osize)
        let tiles = windows(height: input.height, width: input.width, size: size, stride: stride)
        progress(0, tiles.count)
        for (i, t) in tiles.enumerated() {
            let y = try f(input.crop(y: t.y, x: t.x, height: size, width: size), t.y, t.x)
            let (oy, ox) = (t.y * scale / divide, t.x * scale / divide)
            for c in 0..<outChannels {
                for r in 0..<osize {
                    for k in 0..<osize {
                        out.data[(c * oh + oy + r) * ow + ox + k] += y.data[(c * osize + r) * osize + k] * weights[r * osize + k]
                    }
                }
            }
            for r in 0..<osize { for k in 0..<osize { count[(oy + r) * ow + ox + k] += weights[r * osize + k] } }
            progress(i + 1, tiles.count)
        }
        for c in 0..<outChannels { for i in 0..<(oh * ow) { out.data[c * oh * ow + i] /= count[i] } }
        return out
    }
}
