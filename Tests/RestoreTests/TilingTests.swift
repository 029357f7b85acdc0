import Foundation
import Pipeline
import Plan
import Testing
import TestSupport

/// A restore on tiles (a plan of 256-pixel tiles on a 512×512 condition image: 3×3 tiles for stage 1
/// and the VAE, 3×3 latent tiles for every model call) against the same restore untiled (a plan of
/// 512-pixel tiles): no seams where tiles meet.
@Suite struct TilingTests {
    /// Mean absolute difference between neighbouring pixels across each row and column boundary.
    static func gradients(_ p: [UInt8], width: Int, height: Int) -> (columns: [Double], rows: [Double]) {
        var cols = [Double](repeating: 0, count: width - 1), rows = [Double](repeating: 0, count: height - 1)
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<3 {
                    let v = Double(p[(y * width + x) * 3 + c])
                    if x + 1 < width { cols[x] += abs(Double(p[(y * width + x + 1) * 3 + c]) - v) }
                    if y + 1 < height { rows[y] += abs(Double(p[((y + 1) * width + x) * 3 + c]) - v) }
                }
            }
        }
        return (cols.map { $0 / Double(3 * height) }, rows.map { $0 / Double(3 * width) })
    }

    @Test func tiledRestoreHasNoSeams() throws {
        let dir = TemporaryDirectory()
        let tiled = try PipelineParityTests.plan(version: "v2.1", task: .sr, tile: 256, in: dir)
        let whole = try PipelineParityTests.plan(version: "v2.1", task: .sr, tile: 512, in: dir)
        let input = try PipelineParityTests.rgb("pipeline/lq64.png")
        func restore(_ plan: PlanFile) throws -> [UInt8] {
            let r = try Restorer(plan: plan, threads: 2)
            var o = RestoreOptions(defaultsOf: r.info)
            (o.steps, o.upscale, o.colorFix) = (3, 8, .none)
            var noise = SeededNoise(seed: 9)
            return try r.restore(rgb8: input.pixels, height: input.height, width: input.width, options: o, noise: &noise).pixels
        }
        let a = try restore(tiled), b = try restore(whole)
        #expect(a.count == 512 * 512 * 3 && b.count == a.count)
        // Tile edges (stride 128 px in the 512-pixel image): rows/columns 127|128, 255|256, 383|384.
        let edges = [127, 255, 383]
        for (name, image) in [("tiled", a), ("untiled", b)] {
            let g = Self.gradients(image, width: 512, height: 512)
            let at = edges.flatMap { [g.columns[$0], g.rows[$0]] }.reduce(0, +) / Double(2 * edges.count)
            let all = (g.columns + g.rows).sorted()
            let median = all[all.count / 2]
            print("\(name): mean gradient across tile edges \(String(format: "%.2f", at)), median elsewhere \(String(format: "%.2f", median))")
            #expect(at < 1.25 * median, "\(name): a seam (gradient \(at) across tile edges, median \(median))")
        }
    }
}
