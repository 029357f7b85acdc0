import Kernels
import Executor
import Plan
import ReferenceKernels
import Tensors

extension Executor {
    /// The vectors a convolution or linear instruction multiplies its weight with, f32 `[vectors, k]`
    /// with k the weight's values per output channel in its order: a linear layer's input rows (after
    /// its gathered layout and LayerNorm prologue), a convolution's im2col patches `[ic, kh, kw]`
    /// (after its GroupNorm/SiLU prologue; zero where the patch reads padding). So `x · Wᵀ` is the
    /// layer's output before bias and epilogue. An upsampling convolution's weight holds four phase
    /// kernels, each multiplied with its own 2 × 2 patches of the small image: four groups of rows,
    /// each with its vectors. nil for other kernels and grouped convolutions. `operands` are the
    /// instruction's operands as tensors (`referenceOperand`; the weight's, operand 1, is not read:
    /// `weightShape` is its shape).
    public static func gemmInputs(_ kernel: Kernel, _ operands: [Tensor], weightShape: Shape) -> [(rows: Range<Int>, vectors: Tensor)]? {
        switch kernel {
        case .conv2d(let c):
            guard c.groups == 1, operands.count > 1, operands[0].shape.rank == 4, weightShape.rank == 4 else { return nil }
            var input = operands[0].converted(to: .f32)
            if let p = c.prologue {
                input = Reference.groupNorm(input, operands[p.scaleOperand], operands[p.biasOperand], groups: p.groups, epsilon: Double(p.epsilon))
                if p.silu { input = Reference.unary(.silu, input) }
            }
            let (kh, kw) = (weightShape.dims[2], weightShape.dims[3])
            if c.upsample == true {
                // Phase 2a + b (output pixels (2i + a, 2j + b)): a 2 × 2 convolution of the small image
                // padded [1 − a, 1 − b, a, b] (as `Reference.upsampleConv2d`).
                guard kh == 2, kw == 2, weightShape.dims[0] % 4 == 0 else { return nil }
                let oc = weightShape.dims[0] / 4
                return (0..<4).map { p in
                    let (a, b) = (p / 2, p % 2)
                    return (p * oc..<(p + 1) * oc, im2col(input, kernel: (2, 2), strides: [1, 1], pads: [1 - a, 1 - b, a, b], dilations: [1, 1]))
                }
            }
            return [(0..<weightShape.dims[0], im2col(input, kernel: (kh, kw), strides: c.strides, pads: c.pads, dilations: c.dilations))]
        case .linear(let l):
            guard operands.count > 1, weightShape.rank == 2 else { return nil }
            var input = operands[0].converted(to: .f32)
            if let i = l.inputOffsets { input = Reference.gatherLayout(input, rows: operands[i], columns: operands[i + 1]) }
            if let p = l.prologue {
                input = Reference.layerNorm(input, operands[p.scaleOperand], p.biasOperand.map { operands[$0] }, axis: -1, epsilon: Double(p.epsilon))
            }
            let k = weightShape.dims[1]
            guard k > 0, input.count % k == 0 else { return nil }
            let f = input.converted(to: .f32)
            return [(0..<weightShape.dims[0], Tensor(dtype: .f32, shape: Shape([f.count / k, k]), storage: f.storage))]
        default:
            return nil
        }
    }

    /// `x [n, c, h, w]` as patches `[n·oh·ow, c·kh·kw]` (pads `[top, left, bottom, right]`).
    static func im2col(_ x: Tensor, kernel: (Int, Int), strides: [Int], pads: [Int], dilations: [Int]) -> Tensor {
        let d = x.shape.dims
        let (n, c, h, w) = (d[0], d[1], d[2], d[3])
        let (kh, kw) = kernel
        let oh = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) / strides[0] + 1
        let ow = (w + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) / strides[1] + 1
        let k = c * kh * kw
        let out = Tensor.zeros(.f32, Shape([n * max(oh, 0) * max(ow, 0), k]))
        guard oh > 0, ow > 0 else { return out }
        let dst = out.storage.mutableBytes!.bindMemory(to: Float.self)
        x.withElements(as: Float.self) { src in
            for b in 0..<n {
                for y in 0..<oh {
                    for xo in 0..<ow {
                        let row = ((b * oh + y) * ow + xo) * k
                        for ci in 0..<c {
                            for p in 0..<kh {
                                let iy = y * strides[0] - pads[0] + p * dilations[0]
                                guard iy >= 0 && iy < h else { continue }
                                let base = ((b * c + ci) * h + iy) * w
                                for q in 0..<kw {
                                    let ix = xo * strides[1] - pads[1] + q * dilations[1]
                                    if ix >= 0 && ix < w { dst[row + (ci * kh + p) * kw + q] = src[base + ix] }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
