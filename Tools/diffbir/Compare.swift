import ArgumentParser
import Foundation
import Importers
import Pipeline

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A before/after picture of a restore, and how close each side is to the ground truth.",
        discussion: """
        Writes one PNG with, side by side at the restored image's size: the input enlarged with \
        nearest-neighbour (its pixels as they are), the input enlarged bicubically (PIL's \
        bicubic, the baseline every super-resolution method is measured against), the restored \
        image, and the ground truth when given. With a ground truth it prints PSNR (RGB and Y) and \
        SSIM of the bicubic enlargement and of the restore against it (as `diffbir metrics`).
        """
    )

    @Argument(help: "The low-quality input (PNG).")
    var input: String

    @Argument(help: "The restored image (PNG).")
    var restored: String

    @Argument(help: "The ground truth (PNG), the restored image's size (optional).")
    var reference: String?

    @Option(name: .shortAndLong, help: "The picture to write (PNG).")
    var output: String

    @OptionGroup(title: "Output")
    var out: OutputOptions
    var overwrite: Bool { out.overwrite }
    var json: Bool { out.json }

    func run() throws {
        func load(_ p: String) throws -> (pixels: [UInt8], width: Int, height: Int) {
            do { let i = try InputImage.loadRGB8(p); return (i.pixels, i.width, i.height) } catch { throw ToolError("\(error)") }
        }
        let lq = try load(input), restoredImage = try load(restored)
        let gt = try reference.map(load)
        let (h, w) = (restoredImage.height, restoredImage.width)
        if let gt, gt.width != w || gt.height != h {
            throw ToolError("\(reference!) is \(gt.width)×\(gt.height), \(restored) is \(w)×\(h): the ground truth must have the restored image's size")
        }
        var nearest = [UInt8](repeating: 0, count: h * w * 3)
        for y in 0..<h {
            let sy = min(y * lq.height / h, lq.height - 1)
            for x in 0..<w {
                let sx = min(x * lq.width / w, lq.width - 1)
                for c in 0..<3 { nearest[(y * w + x) * 3 + c] = lq.pixels[(sy * lq.width + sx) * 3 + c] }
            }
        }
        let bicubic = Resample.pilBicubic(lq.pixels, height: lq.height, width: lq.width, channels: 3, toHeight: h, toWidth: w)
        let panels = [nearest, bicubic, restoredImage.pixels] + (gt.map { [$0.pixels] } ?? [])
        let gap = 8
        let total = panels.count * w + (panels.count - 1) * gap
        var samples = [UInt16](repeating: 255, count: h * total * 3)
        for (k, p) in panels.enumerated() {
            let x0 = k * (w + gap)
            for y in 0..<h {
                for x in 0..<w { for c in 0..<3 { samples[(y * total + x0 + x) * 3 + c] = UInt16(p[(y * w + x) * 3 + c]) } }
            }
        }
        do { try PNG.write(Pipeline.Image(width: total, height: h, channels: 3, bitDepth: 8, samples: samples), to: output, overwrite: overwrite) } catch {
            throw ToolError(error.description)
        }
        guard let gt else {
            out.result("wrote \(output): input (nearest), bicubic, restored, \(total)×\(h)",
                       json: .object([("output", .string(output)), ("width", .int(total)), ("height", .int(h))]))
            return
        }
        let b: ImageMetrics.Report, r: ImageMetrics.Report
        do {
            b = try ImageMetrics.compare(bicubic, gt.pixels, height: h, width: w)
            r = try ImageMetrics.compare(restoredImage.pixels, gt.pixels, height: h, width: w)
        } catch { throw ToolError("\(error)") }
        if json {
            func report(_ m: ImageMetrics.Report) -> JSONValue {
                .object([("psnr_rgb", m.psnrRGB.isFinite ? .number(m.psnrRGB) : .null), ("psnr_y", m.psnrY.isFinite ? .number(m.psnrY) : .null), ("ssim", .number(m.ssim))])
            }
            print(JSONValue.object([("output", .string(output)), ("width", .int(total)), ("height", .int(h)), ("bicubic", report(b)), ("restored", report(r))]).serialized)
            return
        }
        print("wrote \(output): input (nearest), bicubic, restored, ground truth, \(total)×\(h)")
        print(String(format: "  bicubic  vs ground truth: PSNR %.2f dB (RGB), %.2f dB (Y); SSIM %.4f", b.psnrRGB, b.psnrY, b.ssim))
        print(String(format: "  restored vs ground truth: PSNR %.2f dB (RGB), %.2f dB (Y); SSIM %.4f", r.psnrRGB, r.psnrY, r.ssim))
    }
}
