import Executor
import Foundation
import Plan
import Tensors

/// A plan whose network maps an RGB image to an RGB image (a restoration network on its own:
/// SwinIR, BSRNet, SCUNet, Real-ESRGAN, or any ncnn/ONNX image-to-image model): one entry point
/// with one input `[1, 3, h, w]` and one output `[1, 3, s·h, s·w]`, `s` a whole scale.
public struct ImagePlanInfo: Sendable {
    public var entry: String
    public var input: String
    public var output: String
    /// The tile the entry was compiled for (input pixels).
    public var tileHeight: Int
    public var tileWidth: Int
    /// Output pixels per input pixel.
    public var scale: Int

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    public init(_ plan: PlanFile) throws {
        let entries = plan.program.entryPoints
        guard entries.count == 1, let e = entries.first else {
            throw Invalid(description: "\(plan.path) has \(entries.count) entry points; an image-to-image plan has one (or compile a DiffBIR plan with --model diffbir-…)")
        }
        guard e.inputs.count == 1, e.outputs.count == 1 else {
            throw Invalid(description: "\(plan.path): entry '\(e.name)' has \(e.inputs.count) inputs and \(e.outputs.count) outputs; an image-to-image plan has one of each")
        }
        let i = e.inputs[0].shape.dims, o = e.outputs[0].shape.dims
        guard i.count == 4, o.count == 4, i[0] == 1, o[0] == 1, i[1] == 3, o[1] == 3, i[2] > 0, i[3] > 0,
              o[2] % i[2] == 0, o[3] % i[3] == 0, o[2] / i[2] == o[3] / i[3], o[2] >= i[2] else {
            throw Invalid(description: "\(plan.path): entry '\(e.name)' maps \(Shape(i)) to \(Shape(o)); an image-to-image plan maps [1, 3, H, W] to [1, 3, s·H, s·W]")
        }
        entry = e.name
        input = e.inputs[0].name
        output = e.outputs[0].name
        (tileHeight, tileWidth) = (i[2], i[3])
        scale = o[2] / i[2]
    }
}

/// What a stage-1-only restore does with the network's output.
public struct ImageRestoreOptions: Sendable {
    /// Output size relative to the input (nil: the network's own scale).
    public var upscale: Double?
    /// Input pixels the tiles overlap by (at least 0, less than a tile).
    public var overlap: Int?
    /// Peak memory to stay under, in bytes (nil: no limit).
    public var memoryBudget: Int?

    public init() {}
}

/// Runs an image-to-image plan on images of any size: the image is cut into the plan's tiles,
/// overlapping, each tile run once, and the outputs blended with weights that fall off towards
/// the tile's edges (so no seam shows); borders are padded by replicating the edge pixels, which a
/// restoration network sees as image, not as a black frame. The output is rounded to 8 bits.
public final class ImageRestorer {
    public let plan: PlanFile
    public let info: ImagePlanInfo
    let executor: Executor
    /// Records every instruction the restores run (Chrome / Perfetto trace).
    public var trace: TraceRecorder? {
        get { executor.trace }
        set { executor.trace = newValue }
    }
    public private(set) var seconds: Double = 0
    /// Asked before each tile: true stops the restore with `RestoreCancelled` (a service's DELETE).
    public var isCancelled: @Sendable () -> Bool = { false }

    public init(plan: PlanFile, threads: Int) throws {
        self.plan = plan
        info = try ImagePlanInfo(plan)
        executor = Executor(plan: plan, threads: threads)
    }

    /// Bytes a restore of an `height`×`width` image needs: the arena, the mapped weights, and the
    /// full-size float images it holds (input, output sum, weights).
    public func memoryNeeds(height: Int, width: Int) -> Int {
        let s = info.scale
        let images = 4 * (3 * height * width + 4 * height * s * width * s) + 2 * 4 * 3 * info.tileHeight * info.tileWidth * (1 + s * s)
        return executor.arenaBytes + plan.program.weights.reduce(0) { $0 + $1.byteCount } + images + (32 << 20)
    }

    /// The tiles' origins along one axis: a tile every `size − overlap`, the last flush with the end.
    static func starts(_ n: Int, size: Int, overlap: Int) -> [Int] {
        if n <= size { return [0] }
        let stride = max(size - overlap, 1)
        var s = Array(Swift.stride(from: 0, to: n - size, by: stride))
        s.append(n - size)
        return s
    }

    /// Weight of output pixel `i` of a tile of `n` pixels: 1 inside, a linear ramp over the
    /// `ramp` pixels next to an edge that another tile overlaps.
    static func ramp(_ n: Int, ramp: Int, before: Bool, after: Bool) -> [Float] {
        (0..<n).map { i in
            var w: Float = 1
            if before && i < ramp { w = min(w, Float(i + 1) / Float(ramp + 1)) }
            if after && n - 1 - i < ramp { w = min(w, Float(n - i) / Float(ramp + 1)) }
            return w
        }
    }

    /// Restores an 8-bit RGB image (interleaved); returns the output pixels and size.
    public func restore(rgb8: [UInt8], height: Int, width: Int, options: ImageRestoreOptions = ImageRestoreOptions(),
                        progress: (Int, Int) -> Void = { _, _ in }) throws -> (pixels: [UInt8], height: Int, width: Int) {
        let result = try restore(Planar(rgb8: rgb8, height: height, width: width), options: options, progress: progress)
        return (result.rgb8Rounded(), result.height, result.width)
    }

    /// Restores an RGB image in [0, 1] (any precision: 16-bit files keep theirs); returns the
    /// network's output in [0, 1] (not clamped).
    public func restore(_ x: Planar, options: ImageRestoreOptions = ImageRestoreOptions(),
                        progress: (Int, Int) -> Void = { _, _ in }) throws -> Planar {
        let (height, width) = (x.height, x.width)
        let start = DispatchTime.now().uptimeNanoseconds
        defer { seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        if let budget = options.memoryBudget {
            let need = memoryNeeds(height: height, width: width)
            guard need <= budget else {
                throw RestoreError(String(format: "a memory budget of %.2f GB is too small for a %d×%d image with this plan: it needs %.2f GB (arena, weights, the full-size images)",
                                          Double(budget) / 1e9, width, height, Double(need) / 1e9))
            }
        }
        let (th, tw, s) = (info.tileHeight, info.tileWidth, info.scale)
        let overlap = options.overlap ?? min(th, tw) / 4
        guard overlap >= 0, overlap < min(th, tw) else { throw RestoreError("the tile overlap \(overlap) must be in 0..<\(min(th, tw)) (the plan's tile is \(tw)×\(th))") }
        // Pad (replicating edges) up to a tile where the image is smaller.
        let (ph, pw) = (max(height, th), max(width, tw))
        let source = x.edgePadded(height: ph, width: pw)
        let ys = Self.starts(ph, size: th, overlap: overlap), xs = Self.starts(pw, size: tw, overlap: overlap)
        let (oh, ow) = (ph * s, pw * s)
        var sum = [Float](repeating: 0, count: 3 * oh * ow)
        var total = [Float](repeating: 0, count: oh * ow)
        let ramp = overlap * s
        var done = 0
        progress(0, ys.count * xs.count)
        for (iy, ty) in ys.enumerated() {
            let wy = Self.ramp(th * s, ramp: ramp, before: iy > 0, after: iy < ys.count - 1)
            for (ix, tx) in xs.enumerated() {
                let wx = Self.ramp(tw * s, ramp: ramp, before: ix > 0, after: ix < xs.count - 1)
                if isCancelled() { throw RestoreCancelled() }
                let tile = source.crop(y: ty, x: tx, height: th, width: tw)
                let r = try executor.run(entry: info.entry, inputs: [info.input: Tensor(tile.data, shape: Shape(tile.shape))])
                guard let out = r.outputs.first?.tensor else { throw RestoreError("\(plan.path): the entry returned no output") }
                let y = out.floats()
                let (oth, otw) = (th * s, tw * s)
                for c in 0..<3 {
                    for r in 0..<oth {
                        let dst = (c * oh + ty * s + r) * ow + tx * s, src = (c * oth + r) * otw
                        for k in 0..<otw { sum[dst + k] += y[src + k] * wy[r] * wx[k] }
                    }
                }
                for r in 0..<oth {
                    let dst = (ty * s + r) * ow + tx * s
                    for k in 0..<otw { total[dst + k] += wy[r] * wx[k] }
                }
                done += 1
                progress(done, ys.count * xs.count)
            }
        }
        let plane = oh * ow
        for c in 0..<3 { for i in 0..<plane { sum[c * plane + i] /= total[i] } }
        var result = Planar(channels: 3, height: oh, width: ow, data: sum).crop(y: 0, x: 0, height: height * s, width: width * s)
        if let upscale = options.upscale, upscale != Double(s) {
            let (h2, w2) = (Int(Double(height) * upscale), Int(Double(width) * upscale))
            guard h2 > 0, w2 > 0 else { throw RestoreError("an upscale of \(upscale) makes the \(width)×\(height) image empty") }
            result = Resample.bicubicAntialias(result, height: h2, width: w2)
        }
        return result
    }
}

extension Planar {
    /// Padding on the right and bottom by replicating the last row and column.
    public func edgePadded(height h: Int, width w: Int) -> Planar {
        if h == height && w == width { return self }
        var out = Planar(channels: channels, height: h, width: w)
        for c in 0..<channels {
            for y in 0..<h {
                let src = (c * height + min(y, height - 1)) * width, dst = (c * h + y) * w
                for x in 0..<w { out.data[dst + x] = data[src + min(x, width - 1)] }
            }
        }
        return out
    }

    /// [0, 1] → `bits`-bit samples (8 or 16) of every channel, interleaved, rounded to nearest and
    /// clamped (as Real-ESRGAN writes 8- and 16-bit outputs).
    public func samples(bits: Int) -> [UInt16] {
        let plane = height * width, top = Float((1 << bits) - 1)
        var out = [UInt16](repeating: 0, count: plane * channels)
        for i in 0..<plane {
            for c in 0..<channels {
                let v = (data[c * plane + i] * top).rounded()
                out[i * channels + c] = v.isNaN ? 0 : UInt16(min(max(v, 0), top))
            }
        }
        return out
    }

    /// [0, 1] → 8-bit RGB, rounded to nearest (as Real-ESRGAN and most restoration tools write).
    public func rgb8Rounded() -> [UInt8] {
        let plane = height * width
        var out = [UInt8](repeating: 0, count: plane * 3)
        for i in 0..<plane {
            for c in 0..<3 {
                let v = (data[c * plane + i] * 255).rounded()
                out[i * 3 + c] = v.isNaN ? 0 : UInt8(min(max(v, 0), 255))
            }
        }
        return out
    }
}
