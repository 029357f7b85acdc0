import Plan
/// Typed attributes of the IR ops. Every field is static: shapes, axes and sizes are resolved by
/// the importers (which evaluate exporters' shape arithmetic), never carried as runtime tensors.

/// 2-D convolution (NCHW input, weight `[out, in / groups, kh, kw]`, optional bias `[out]`).
public struct Conv2D: Hashable, Sendable {
    public var strides: [Int]
    /// `[top, left, bottom, right]`
    public var pads: [Int]
    public var dilations: [Int]
    public var groups: Int

    public init(strides: [Int] = [1, 1], pads: [Int] = [0, 0, 0, 0], dilations: [Int] = [1, 1], groups: Int = 1) {
        self.strides = strides
        self.pads = pads
        self.dilations = dilations
        self.groups = groups
    }
}

/// 2-D transposed convolution (weight `[in, out / groups, kh, kw]`, as PyTorch and ONNX store it).
public struct ConvTranspose2D: Hashable, Sendable {
    public var strides: [Int]
    /// `[top, left, bottom, right]`, removed from the full output.
    public var pads: [Int]
    public var dilations: [Int]
    public var groups: Int
    /// Extra rows/columns added at the bottom/right of the output.
    public var outputPadding: [Int]

    public init(strides: [Int] = [1, 1], pads: [Int] = [0, 0, 0, 0], dilations: [Int] = [1, 1], groups: Int = 1,
                outputPadding: [Int] = [0, 0]) {
        self.strides = strides
        self.pads = pads
        self.dilations = dilations
        self.groups = groups
        self.outputPadding = outputPadding
    }
}

// The vocabularies shared with the plan (defined in `Plan`, used here under the same names).
public typealias UnaryOp = Plan.UnaryOp
public typealias BinaryOp = Plan.BinaryOp
public typealias ReduceOp = Plan.ReduceOp
public typealias PadMode = Plan.PadMode
public typealias ScatterReduction = Plan.ScatterReduction

public enum GeluApproximation: String, Hashable, Sendable {
    /// `x/2 (1 + erf(x/√2))`
    case none
    /// `x/2 (1 + tanh(√(2/π)(x + 0.044715 x³)))`
    case tanh
}

/// Channel order of depth-to-space / space-to-depth.
public enum BlockOrder: String, Hashable, Sendable {
    /// Depth-column-row: channel `(i·b + j)·C + c` (ONNX default).
    case dcr
    /// Column-row-depth: channel `c·b² + i·b + j` (PyTorch's pixel_shuffle / pixel_unshuffle).
    case crd
}

/// Resize (N-D, usually NCHW), with every ONNX option that changes the result.
public struct Resize: Hashable, Sendable {
    public typealias Mode = ResizeMode
    public typealias CoordinateTransform = Plan.CoordinateTransform
    public typealias NearestMode = Plan.NearestMode

    public var mode: Mode
    public var coordinateTransform: CoordinateTransform
    public var nearestMode: NearestMode
    public var cubicCoeffA: Float
    public var excludeOutside: Bool
    public var antialias: Bool
    /// Output size per axis.
    public var sizes: [Int]
    /// Scale per axis (output / input) used by the coordinate transform: as given, or derived from
    /// the output size (in double precision, as ONNX does).
    public var scales: [Double]
    /// `[start..., end...]` per axis, used by `tfCropAndResize` only.
    public var roi: [Double]
    public var extrapolationValue: Float

    public init(mode: Mode, coordinateTransform: CoordinateTransform = .halfPixel, nearestMode: NearestMode = .roundPreferFloor,
                cubicCoeffA: Float = -0.75, excludeOutside: Bool = false, antialias: Bool = false, sizes: [Int], scales: [Double],
                roi: [Double] = [], extrapolationValue: Float = 0) {
        self.sizes = sizes
        self.mode = mode
        self.coordinateTransform = coordinateTransform
        self.nearestMode = nearestMode
        self.cubicCoeffA = cubicCoeffA
        self.excludeOutside = excludeOutside
        self.antialias = antialias
        self.scales = scales
        self.roi = roi
        self.extrapolationValue = extrapolationValue
    }
}

/// A static slice: for every axis of the input, `start..<end` by `step` (already clamped, so the
/// output extent is exact; a negative step walks backwards from `start` down to `end` exclusive).
public struct SliceSpec: Hashable, Sendable {
    public var starts: [Int]
    public var ends: [Int]
    public var steps: [Int]

    public init(starts: [Int], ends: [Int], steps: [Int]) {
        self.starts = starts
        self.ends = ends
        self.steps = steps
    }
}

