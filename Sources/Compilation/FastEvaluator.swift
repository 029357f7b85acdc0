import IR
import Kernels
import Passes
import Tensors

/// Runs convolutions and matrix products on OpenBLAS (f32) and every other op with the reference
/// kernels: `diffbir run --fast`, and the text encoder when a plan's prompts are baked.
public struct FastEvaluator: ConstantEvaluator {
    let reference = ReferenceEvaluator()

    public init() {}

    public func evaluate(_ op: Op, _ inputs: [Tensor], outputTypes: [TensorType]) throws -> [Tensor] {
        let allF32 = inputs.allSatisfy { $0.dtype == .f32 }
        switch op {
        case .conv(let c) where allF32:
            return [Convolution.conv2d(inputs[0], inputs[1], inputs.count > 2 ? inputs[2] : nil,
                                       .init(strides: c.strides, pads: c.pads, dilations: c.dilations, groups: c.groups))]
        case .linear where allF32:
            return [MatrixProduct.linear(inputs[0], inputs[1], inputs.count > 2 ? inputs[2] : nil)]
        case .matmul where allF32 && inputs[0].shape.rank >= 2 && inputs[1].shape.rank >= 2:
            return [MatrixProduct.matmul(inputs[0], inputs[1], outShape: outputTypes[0].shape)]
        default:
            return try reference.evaluate(op, inputs, outputTypes: outputTypes)
        }
    }
}
