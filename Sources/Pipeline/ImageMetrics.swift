import Foundation

/// Full-reference image quality, defined as scikit-image computes it (so that figures compare with
/// the papers' and tools' that use it), on 8-bit RGB images of the same size, data range 255.
///
/// - PSNR (RGB): `10·log10(255² / MSE)` over every sample.
/// - PSNR (Y): the same on the BT.601 luma of the super-resolution papers (MATLAB's `rgb2ycbcr`,
///   scikit-image's `rgb2ycbcr(...)[..., 0]`: `16 + (65.481 R + 128.553 G + 24.966 B) / 255`), in
///   floating point, data range 255.
/// - SSIM: `structural_similarity(a, b, channel_axis=2, data_range=255)`: a 7×7 uniform window,
///   K1 = 0.01, K2 = 0.03, sample covariances (÷ 48), the mean over the pixels whose window lies
///   inside the image (3 pixels cropped at each border), averaged over the three channels.
public enum ImageMetrics {
    public struct Report: Sendable, Equatable {
        public var psnrRGB: Double
        public var psnrY: Double
        public var ssim: Double
        /// Mean squared error over the RGB samples.
        public var mse: Double
    }

    public struct Mismatch: Error, CustomStringConvertible {
        public let description: String
    }

    /// `a`, `b`: interleaved RGB, `height × width × 3`.
    public static func compare(_ a: [UInt8], _ b: [UInt8], height: Int, width: Int) throws -> Report {
        guard a.count == height * width * 3, b.count == a.count else { throw Mismatch(description: "the images must have the same size") }
        guard height >= 7, width >= 7 else { throw Mismatch(description: "SSIM needs images of at least 7×7 pixels") }
        var se = 0.0
        for i in 0..<a.count { let d = Double(a[i]) - Double(b[i]); se += d * d }
        let mse = se / Double(a.count)
        var seY = 0.0
        for p in 0..<(height * width) {
            func y(_ x: [UInt8]) -> Double { 16 + (65.481 * Double(x[3 * p]) + 128.553 * Double(x[3 * p + 1]) + 24.966 * Double(x[3 * p + 2])) / 255 }
            let d = y(a) - y(b)
            seY += d * d
        }
        let mseY = seY / Double(height * width)
        func psnr(_ m: Double) -> Double { m == 0 ? .infinity : 10 * log10(255 * 255 / m) }
        var ssim = 0.0
        for c in 0..<3 { ssim += channelSSIM(a, b, channel: c, height: height, width: width) }
        return Report(psnrRGB: psnr(mse), psnrY: psnr(mseY), ssim: ssim / 3, mse: mse)
    }

    /// scikit-image's SSIM of one channel (uniform 7×7 filter, its 'reflect' borders cropped away).
    static func channelSSIM(_ a: [UInt8], _ b: [UInt8], channel c: Int, height h: Int, width w: Int) -> Double {
        let win = 7
        let n = Double(win * win)
        let cov = n / (n - 1)
        let (c1, c2) = ((0.01 * 255) * (0.01 * 255), (0.03 * 255) * (0.03 * 255))
        // Window sums by summed-area tables of x, y, x², y², xy.
        let stride = w + 1
        var tables = [[Double]](repeating: [Double](repeating: 0, count: (h + 1) * stride), count: 5)
        for yy in 0..<h {
            var rows = [Double](repeating: 0, count: 5)
            for xx in 0..<w {
                let x = Double(a[(yy * w + xx) * 3 + c]), y = Double(b[(yy * w + xx) * 3 + c])
                rows[0] += x; rows[1] += y; rows[2] += x * x; rows[3] += y * y; rows[4] += x * y
                for k in 0..<5 { tables[k][(yy + 1) * stride + xx + 1] = tables[k][yy * stride + xx + 1] + rows[k] }
            }
        }
        func box(_ k: Int, _ y0: Int, _ x0: Int) -> Double {
            let t = tables[k]
            let (y1, x1) = (y0 + win, x0 + win)
            return t[y1 * stride + x1] - t[y0 * stride + x1] - t[y1 * stride + x0] + t[y0 * stride + x0]
        }
        var total = 0.0
        for y0 in 0...(h - win) {
            for x0 in 0...(w - win) {
                let ux = box(0, y0, x0) / n, uy = box(1, y0, x0) / n
                let vx = cov * (box(2, y0, x0) / n - ux * ux), vy = cov * (box(3, y0, x0) / n - uy * uy)
                let vxy = cov * (box(4, y0, x0) / n - ux * uy)
                total += ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
            }
        }
        return total / Double((h - win + 1) * (w - win + 1))
    }
}
