import Foundation
import Plan
import Tensors

extension Reference {
    /// Resize options; the meaning of each field is ONNX Resize's (opset 19 and later).
    public struct ResizeOptions: Sendable {
        public typealias Mode = ResizeMode
        public var mode: Mode
        public var coordinateTransform: CoordinateTransform
        public var nearestMode: NearestMode
        public var cubicCoeffA: Double
        public var excludeOutside: Bool
        public var antialias: Bool
        public var sizes: [Int]
        public var scales: [Double]
        public var roi: [Double]
        public var extrapolationValue: Double

        public init(mode: Mode, coordinateTransform: CoordinateTransform, nearestMode: NearestMode, cubicCoeffA: Double, excludeOutside: Bool,
                    antialias: Bool, sizes: [Int], scales: [Double], roi: [Double], extrapolationValue: Double) {
            self.mode = mode
            self.coordinateTransform = coordinateTransform
            self.nearestMode = nearestMode
            self.cubicCoeffA = cubicCoeffA
            self.excludeOutside = excludeOutside
            self.antialias = antialias
            self.sizes = sizes
            self.scales = scales
            self.roi = roi
            self.extrapolationValue = extrapolationValue
        }
    }

    /// Separable resize: one 1-D pass per axis, from the last axis to the first (which is what the
    /// ONNX reference's recursive N-D interpolation computes).
    public static func resize(_ x: Tensor, _ o: ResizeOptions) -> Tensor {
        var dims = x.shape.dims
        var v = doubles(x)
        let rank = dims.count
        for axis in stride(from: rank - 1, through: 0, by: -1) {
            let outLength = o.sizes[axis]
            if outLength == dims[axis], o.scales[axis] == 1, o.coordinateTransform != .tfCropAndResize { continue }
            let roi = o.roi.count == 2 * rank ? (o.roi[axis], o.roi[axis + rank]) : (0.0, 1.0)
            let taps = (0..<outLength).map { i in
                weights(output: i, inLength: dims[axis], outLength: outLength, scale: o.scales[axis], roi: roi, o)
            }
            let inner = dims[(axis + 1)...].reduce(1, *), outer = dims[..<axis].reduce(1, *), n = dims[axis]
            var out = [Double](repeating: 0, count: outer * outLength * inner)
            for a in 0..<outer {
                for (i, tap) in taps.enumerated() {
                    for b in 0..<inner {
                        var s = 0.0
                        if let tap {
                            for (j, w) in tap where w != 0 { s += w * v[(a * n + j) * inner + b] }
                        } else {
                            s = o.extrapolationValue
                        }
                        out[(a * outLength + i) * inner + b] = s
                    }
                }
            }
            v = out
            dims[axis] = outLength
        }
        return tensor(v, x.dtype, Shape(dims))
    }

    /// The input indices and weights that make output element `i` along one axis, or nil for an
    /// extrapolated element (`tf_crop_and_resize` outside the input).
    static func weights(output i: Int, inLength: Int, outLength: Int, scale: Double, roi: (Double, Double),
                        _ o: ResizeOptions) -> [(Int, Double)]? {
        let fi = Double(i)
        // As the ONNX reference computes it: the fractional output width `scale · input`, not the
        // integer size, in the align_corners, tf_crop_and_resize and pytorch_half_pixel formulas.
        let width = scale * Double(inLength)
        let x: Double
        switch o.coordinateTransform {
        case .asymmetric: x = fi / scale
        case .alignCorners: x = width == 1 ? 0 : fi * Double(inLength - 1) / (width - 1)
        case .pytorchHalfPixel: x = width == 1 ? -0.5 : (fi + 0.5) / scale - 0.5
        case .halfPixelSymmetric:
            let adjustment = Double(outLength) / width
            let center = Double(inLength) / 2
            x = center * (1 - adjustment) + (fi + 0.5) / scale - 0.5
        case .tfCropAndResize:
            let span = Double(inLength - 1)
            x = width == 1 ? (roi.1 - roi.0) * span / 2 + roi.0 * span : fi * (roi.1 - roi.0) * span / (width - 1) + roi.0 * span
            if x < 0 || x > span { return nil }
        case .halfPixel: x = (fi + 0.5) / scale - 0.5
        }
        // The ONNX reference takes `ratio` in (0, 1]: an integral coordinate counts as ratio 1 on
        // the pixel to its left.
        let isIntegral = x == x.rounded(.down)
        let base = isIntegral ? Int(x) - 1 : Int(x.rounded(.down))
        let ratio = isIntegral ? 1.0 : x - x.rounded(.down)
        var coeffs: [Double]
        var first: Int
        switch o.mode {
        case .nearest:
            first = 0
            if isIntegral {
                coeffs = [0, 1]
            } else {
                switch o.nearestMode {
                case .roundPreferCeil: coeffs = ratio < 0.5 ? [1, 0] : [0, 1]
                case .floor: coeffs = [1, 0]
                case .ceil: coeffs = [0, 1]
                case .roundPreferFloor: coeffs = ratio <= 0.5 ? [1, 0] : [0, 1]
                }
            }
        case .linear:
            if o.antialias, scale < 1 {
                first = Int((-1 / scale).rounded(.down)) + 1
                let footprint = 2 - 2 * first
                coeffs = (first..<(first + footprint)).map { max(0, min(1, 1 - abs((Double($0) - ratio) * scale))) }
            } else {
                first = 0
                coeffs = [1 - ratio, ratio]
            }
        case .cubic:
            let a = o.cubicCoeffA
            if o.antialias, scale < 1 {
                first = Int((-2 / scale).rounded(.down)) + 1
                let end = 2 - first
                coeffs = (first..<end).map { k in
                    let t = abs(scale * (Double(k) - ratio))
                    if t <= 1 { return (a + 2) * t * t * t - (a + 3) * t * t + 1 }
                    if t < 2 { return a * t * t * t - 5 * a * t * t + 8 * a * t - 4 * a }
                    return 0
                }
            } else {
                first = -1
                let r = ratio
                coeffs = [((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                          ((a + 2) * r - (a + 3)) * r * r + 1,
                          ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1,
                          ((a * ((1 - r) + 1) - 5 * a) * ((1 - r) + 1) + 8 * a) * ((1 - r) + 1) - 4 * a]
            }
        }
        if o.mode != .nearest, o.antialias, scale < 1 {
            let total = coeffs.reduce(0, +)
            coeffs = coeffs.map { $0 / total }
        }
        // Tap k reads input index base + first + k (the n indices nearest to x, as the ONNX
        // reference picks them), clamped to the edge, or dropped when `excludeOutside`.
        var taps: [(Int, Double)] = []
        var kept = 0.0
        for (k, c) in coeffs.enumerated() {
            let index = base + first + k
            if o.excludeOutside, index < 0 || index >= inLength { continue }
            taps.append((min(max(index, 0), inLength - 1), c))
            kept += c
        }
        if o.excludeOutside, kept != 0 { taps = taps.map { ($0.0, $0.1 / kept) } }
        return taps
    }
}
