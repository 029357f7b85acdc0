import ArgumentParser
import Foundation
import Importers
import Pipeline

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "PSNR (RGB and Y) and SSIM between two images of the same size.",
        discussion: """
        Defined as scikit-image computes them, data range 255: PSNR over the RGB samples; PSNR of \
        the BT.601 luma of super-resolution papers (MATLAB's rgb2ycbcr Y); SSIM with a 7×7 uniform \
        window and sample covariances, averaged over the channels (structural_similarity(a, b, \
        channel_axis=2, data_range=255)). --crop N leaves N pixels out at each border first, as SR \
        benchmarks do with the scale. Identical images have an infinite PSNR (printed as inf, null \
        in JSON).
        """
    )

    @Argument(help: "The image to measure (PNG).")
    var image: String

    @Argument(help: "The reference (ground truth) image (PNG), the same size.")
    var reference: String

    @Option(help: "Pixels left out at each border before measuring.")
    var crop = 0

    @OptionGroup(title: "Output")
    var report: ReportOptions
    var json: Bool { report.json }

    func validate() throws {
        if crop < 0 { throw ValidationError("--crop must be at least 0") }
    }

    func run() throws {
        let a: (pixels: [UInt8], width: Int, height: Int, note: String?), b: (pixels: [UInt8], width: Int, height: Int, note: String?)
        do { a = try InputImage.loadRGB8(image); b = try InputImage.loadRGB8(reference) } catch { throw ToolError("\(error)") }
        guard a.width == b.width, a.height == b.height else {
            throw ToolError("\(image) is \(a.width)×\(a.height), \(reference) is \(b.width)×\(b.height): the images must have the same size")
        }
        func cropped(_ p: [UInt8]) -> [UInt8] {
            guard crop > 0 else { return p }
            var out: [UInt8] = []
            for y in crop..<(a.height - crop) { out += p[((y * a.width + crop) * 3)..<((y * a.width + a.width - crop) * 3)] }
            return out
        }
        let (h, w) = (a.height - 2 * crop, a.width - 2 * crop)
        guard h >= 7, w >= 7 else { throw ToolError("--crop \(crop) leaves \(w)×\(h) pixels; SSIM needs at least 7×7") }
        let r: ImageMetrics.Report
        do { r = try ImageMetrics.compare(cropped(a.pixels), cropped(b.pixels), height: h, width: w) } catch { throw ToolError("\(error)") }
        func number(_ v: Double) -> JSONValue { v.isFinite ? .number(v) : .null }
        if json {
            print(JSONValue.object([("image", .string(image)), ("reference", .string(reference)), ("width", .integer(Int64(w))), ("height", .integer(Int64(h))),
                                    ("psnr_rgb", number(r.psnrRGB)), ("psnr_y", number(r.psnrY)), ("ssim", number(r.ssim)), ("mse", .number(r.mse))]).serialized)
        } else {
            print(String(format: "%@ vs %@ (%d×%d): PSNR %.2f dB (RGB), %.2f dB (Y); SSIM %.4f", image, reference, w, h, r.psnrRGB, r.psnrY, r.ssim))
        }
    }
}
