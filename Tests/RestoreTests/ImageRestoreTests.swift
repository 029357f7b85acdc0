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
        let plan = try PipelineParityTests.plan(version: "v2.1", task: "sr", tile: 256, in: dir)
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
