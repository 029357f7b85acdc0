import Executor
import Foundation
import IR
import Importers
import Passes
import Pipeline
import Plan
import Tensors
import Testing
import TestSupport

/// Stage-1-only restores: a plan of one image-to-image network on images of any size, and the
/// metrics that measure them.
@Suite struct ImageRestoreTests {
    /// `[1, 3, tile, tile]` → nearest ×2 → 1×1 convolution (3 → 3) → `[1, 3, 2·tile, 2·tile]`:
    /// every output pixel depends on one input pixel, so a tiled run must equal the direct one.
    static func pointwisePlan(tile: Int, in dir: TemporaryDirectory) throws -> (PlanFile, weight: [Float], bias: [Float]) {
        var g = Graph()
        let x = g.addInput("image", TensorType(.f32, [1, 3, tile, tile]))
        let up = try g.add1(.resize(Resize(mode: .nearest, coordinateTransform: .asymmetric, nearestMode: .floor, sizes: [1, 3, 2 * tile, 2 * tile],
                                           scales: [1, 1, 2, 2])), [x], name: "up")
        let weight: [Float] = [0.5, 0.25, 0.1, -0.2, 0.9, 0.1, 0.05, 0.05, 0.8], bias: [Float] = [0.02, -0.01, 0.1]
        let w = g.addConstant(Tensor(weight, shape: [3, 3, 1, 1]), name: "w"), b = g.addConstant(Tensor(bias, shape: [3]), name: "b")
        g.setOutput("out", try g.add1(.conv(Conv2D()), [up, w, b], name: "conv"))
        let compiled = try Compiler.compile([("net", g)], options: CompileOptions())
        let path = dir.file("net.plan")
        try PlanWriter.write(path: path, program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: true)
        return (try PlanFile(path: path), weight, bias)
    }

    @Test(arguments: [(37, 23, 0), (37, 23, 5), (9, 11, 3), (16, 16, 4), (40, 17, 15)])
    func tiledEqualsDirect(width: Int, height: Int, overlap: Int) throws {
        let dir = TemporaryDirectory()
        let (plan, weight, bias) = try Self.pointwisePlan(tile: 16, in: dir)
        let restorer = try ImageRestorer(plan: plan, threads: 2)
        #expect(restorer.info.scale == 2 && restorer.info.tileHeight == 16)
        var state: UInt32 = 12345
        let pixels = (0..<(width * height * 3)).map { _ -> UInt8 in state = state &* 1_103_515_245 &+ 12345; return UInt8(truncatingIfNeeded: state >> 16) }
        var options = ImageRestoreOptions()
        options.overlap = overlap
        var calls = 0
        let r = try restorer.restore(rgb8: pixels, height: height, width: width, options: options) { done, total in calls = total; _ = done }
        #expect(r.width == 2 * width && r.height == 2 * height)
        #expect(calls >= 1)
        var worst = 0
        for y in 0..<r.height {
            for x in 0..<r.width {
                let p = ((y / 2) * width + x / 2) * 3
                for c in 0..<3 {
                    var v = bias[c]
                    for k in 0..<3 { v += weight[c * 3 + k] * Float(pixels[p + k]) / 255 }
                    let expected = Int(min(max((v * 255).rounded(), 0), 255))
                    worst = max(worst, abs(expected - Int(r.pixels[(y * r.width + x) * 3 + c])))
                }
            }
        }
        #expect(worst <= 1, "largest difference \(worst) levels")
    }

    /// A 16-bit RGBA PNG: restored at 16-bit precision, alpha enlarged beside it, written as a 16-bit
    /// RGBA PNG with its comment; as JPEG, 8-bit RGB with notes saying what was dropped.
    @Test func sixteenBitsAndAlphaAreKept() throws {
        let dir = TemporaryDirectory()
        let (plan, weight, bias) = try Self.pointwisePlan(tile: 16, in: dir)
        let restorer = try ImageRestorer(plan: plan, threads: 2)
        let (w, h) = (20, 12)
        var samples = [UInt16](repeating: 0, count: w * h * 4)
        for p in 0..<(w * h) {
            samples[p * 4] = UInt16(p * 211 % 65536); samples[p * 4 + 1] = UInt16(p * 97 % 65536); samples[p * 4 + 2] = UInt16(40000)
            samples[p * 4 + 3] = UInt16((p % w) * 3000)  // alpha: a ramp along x
        }
        let input = dir.file("in16.png")
        try PNG.write(Image(width: w, height: h, channels: 4, bitDepth: 16, samples: samples), to: input)
        let loaded = try InputImage.load(input)
        #expect(loaded.bitDepth == 16 && loaded.alpha != nil && loaded.rgb16 != nil)
        let restored = try restorer.restore(loaded.rgb16!)
        let (image, notes) = OutputImage.compose(rgb8: [], precise: restored, width: restored.width, height: restored.height, input: loaded, format: .png)
        #expect(notes.isEmpty)
        #expect(image.width == 2 * w && image.height == 2 * h && image.channels == 4 && image.bitDepth == 16)
        // RGB at 16-bit precision: the 1×1 convolution of the nearest-enlarged 16-bit input.
        var worst = 0
        for y in 0..<image.height {
            for x in 0..<image.width {
                let p = (y / 2) * w + x / 2
                for c in 0..<3 {
                    var v = bias[c]
                    for k in 0..<3 { v += weight[c * 3 + k] * Float(samples[p * 4 + k]) / 65535 }
                    let expected = Int(min(max((v * 65535).rounded(), 0), 65535))
                    worst = max(worst, abs(expected - Int(image.samples[(y * image.width + x) * 4 + c])))
                }
            }
        }
        #expect(worst <= 2, "largest difference \(worst) of 65535")
        // Alpha: enlarged, still a ramp along x.
        let alphaRow = (0..<image.width).map { Int(image.samples[(5 * image.width + $0) * 4 + 3]) }
        #expect(alphaRow.first! < 3000 && alphaRow.last! > 50000)
        #expect(zip(alphaRow, alphaRow.dropFirst()).allSatisfy { $0.0 <= $0.1 + 16 })
        // Written with its comment, read back as 16-bit RGBA.
        try ImageFile.write(image, to: dir.file("out.png"), comment: "diffbir test")
        let back = try PNG.read(dir.file("out.png"))
        #expect(back.bitDepth == 16 && back.channels == 4 && back.samples == image.samples)
        #expect(String(decoding: try Data(contentsOf: URL(fileURLWithPath: dir.file("out.png"))), as: UTF8.self).contains("Comment\u{0}diffbir test"))
        // As JPEG: 8-bit RGB, and notes for the bits and the alpha.
        let jpeg = OutputImage.compose(rgb8: [], precise: restored, width: restored.width, height: restored.height, input: loaded, format: .jpeg)
        #expect(jpeg.image.channels == 3 && jpeg.image.bitDepth == 8 && jpeg.notes.count == 2)
    }

    /// A trace records every instruction of every tile's run, in Chrome's JSON format.
    @Test func traceRecordsEveryInstruction() throws {
        let dir = TemporaryDirectory()
        let (plan, _, _) = try Self.pointwisePlan(tile: 16, in: dir)
        let restorer = try ImageRestorer(plan: plan, threads: 2)
        restorer.trace = TraceRecorder()
        let pixels = [UInt8](repeating: 100, count: 30 * 20 * 3)
        _ = try restorer.restore(rgb8: pixels, height: 20, width: 30)
        let perRun = plan.program.entryPoints[0].instructions.count
        let events = try #require(restorer.trace).events
        #expect(events.count % perRun == 0 && events.count >= 2 * perRun, "\(events.count) events, \(perRun) instructions a run")
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.0.ts <= $0.1.ts } && events.allSatisfy { $0.dur >= 0 })
        let json = try JSONSerialization.jsonObject(with: try #require(restorer.trace).chromeJSON()) as? [String: Any]
        #expect((json?["traceEvents"] as? [[String: Any]])?.count == events.count)
    }

    @Test func upscaleAndBudget() throws {
        let dir = TemporaryDirectory()
        let (plan, _, _) = try Self.pointwisePlan(tile: 16, in: dir)
        let restorer = try ImageRestorer(plan: plan, threads: 1)
        let pixels = [UInt8](repeating: 128, count: 20 * 10 * 3)
        var options = ImageRestoreOptions()
        options.upscale = 3
        let r = try restorer.restore(rgb8: pixels, height: 10, width: 20, options: options)
        #expect(r.width == 60 && r.height == 30)
        options.memoryBudget = 1000
        #expect(throws: RestoreError.self) { try restorer.restore(rgb8: pixels, height: 10, width: 20, options: options) }
        options.memoryBudget = nil
        options.overlap = 16
        #expect(throws: RestoreError.self) { try restorer.restore(rgb8: pixels, height: 10, width: 20, options: options) }
    }

    @Test func notAnImagePlan() throws {
        var g = Graph()
        let x = g.addInput("x", TensorType(.f32, [1, 4, 8, 8]))
        g.setOutput("y", try g.add1(.unary(.relu), [x], name: "relu"))
        let compiled = try Compiler.compile([("net", g)], options: CompileOptions())
        let dir = TemporaryDirectory()
        try PlanWriter.write(path: dir.file("p.plan"), program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: true)
        #expect(throws: ImagePlanInfo.Invalid.self) { try ImagePlanInfo(try PlanFile(path: dir.file("p.plan"))) }
    }

    /// `restore --stage1-only` on a DiffBIR plan: the stage-1 network's output at the output size,
    /// without running the diffusion stage (so the same with any seed), and not the full restore.
    @Test func stage1OnlyOnADiffBIRPlan() throws {
        let dir = TemporaryDirectory()
        let plan = try PipelineParityTests.plan(version: "v2.1", task: .sr, tile: 256, in: dir)
        let restorer = try Restorer(plan: plan, threads: 2)
        let input = try PipelineParityTests.rgb("pipeline/lq64.png")
        var o = RestoreOptions(defaultsOf: restorer.info)
        o.upscale = 2
        o.steps = 1
        o.stage1Only = true
        var noise = SeededNoise(seed: 1)
        let a = try restorer.restore(rgb8: input.pixels, height: input.height, width: input.width, options: o, noise: &noise)
        #expect(a.height == 2 * input.height && a.width == 2 * input.width)
        #expect(restorer.seconds[.sampling] == nil && restorer.seconds[.stage1] != nil)
        var other = SeededNoise(seed: 99)
        let b = try restorer.restore(rgb8: input.pixels, height: input.height, width: input.width, options: o, noise: &other)
        #expect(a.pixels == b.pixels)
        o.stage1Only = false
        var full = SeededNoise(seed: 1)
        let c = try restorer.restore(rgb8: input.pixels, height: input.height, width: input.width, options: o, noise: &full)
        #expect(c.height == a.height && c.pixels != a.pixels)
    }

    /// The metrics agree with scikit-image's on the photo fixtures (Tools/fixtures/make_photo_fixtures.py).
    @Test func metricsMatchScikitImage() throws {
        let a = try InputImage.loadRGB8(Fixtures.path("photos/astronaut-lq.png"))
        let b = try InputImage.loadRGB8(Fixtures.path("photos/astronaut-lq-noisy.png"))
        let r = try ImageMetrics.compare(b.pixels, a.pixels, height: a.height, width: a.width)
        let want = try Fixtures.json("photos/metrics.json")
        #expect(abs(r.psnrRGB - (want["psnr_rgb"] as! Double)) < 1e-9)
        #expect(abs(r.psnrY - (want["psnr_y"] as! Double)) < 1e-9)
        #expect(abs(r.ssim - (want["ssim"] as! Double)) < 1e-9)
        let same = try ImageMetrics.compare(a.pixels, a.pixels, height: a.height, width: a.width)
        #expect(same.psnrRGB == .infinity && abs(same.ssim - 1) < 1e-12)
        #expect(throws: ImageMetrics.Mismatch.self) { try ImageMetrics.compare(a.pixels, Array(a.pixels.dropLast(3)), height: a.height, width: a.width) }
    }
}
