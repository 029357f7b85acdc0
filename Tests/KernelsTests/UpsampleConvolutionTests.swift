import Kernels
import Plan
import ReferenceKernels
import Tensors
import Testing

/// A 3×3 convolution of a nearest-2×-enlarged image as four 2×2 phase convolutions of the small image
/// (`UpsampleConvolution`, phase kernels from `Reference.upsamplePhaseWeights`): against enlarging and
/// convolving with the 3×3 kernel (and the plan's reference twin, and the OpenBLAS path), with bias, a
/// leaky ReLU and a residual epilogue, odd channel counts, two images, more than one band and block
/// of output channels, f32 and bf16 panels, both instruction sets, any thread count.
@Suite struct UpsampleConvolutionTests {
    @Test(arguments: [(1, 5, 3, 32, 13), (2, 8, 7, 64, 50), (1, 1, 1, 32, 1), (2, 37, 5, 13, 9)])
    func matchesReference(n: Int, c: Int, h: Int, w: Int, oc: Int) throws {
        let x = GemmTests.values(n * c * h * w, seed: 61).map { $0 * 2 }
        let wt = GemmTests.values(oc * c * 9, seed: 67), bias = GemmTests.values(oc, seed: 71)
        let residual = GemmTests.values(n * oc * 4 * h * w, seed: 73)
        let perChannel = GemmTests.values(n * oc, seed: 79)
        let kernel = Conv2DKernel(strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, hasBias: true,
                                  epilogue: [.addChannels(operand: 4), .activation(.leakyRelu, alpha: 0.2), .addResidual(operand: 3)],
                                  upsample: true)
        var plain = kernel
        plain.upsample = nil
        let outShape = Shape([n, oc, 2 * h, 2 * w])
        let small = Tensor(x, shape: Shape([n, c, h, w])), w3 = Tensor(wt, shape: Shape([oc, c, 3, 3]))
        let phases = Reference.upsamplePhaseWeights(w3)
        let operands = [small, phases, Tensor(bias, shape: Shape([oc])), Tensor(residual, shape: outShape),
                        Tensor(perChannel, shape: Shape([n, oc, 1, 1]))]
        // The definition: enlarge, then the 3×3 convolution; the plan's twin (phase kernels) agrees.
        let expected = try Reference.execute(.conv2d(plain), [Reference.upsampleNearest2x(small), w3] + operands[2...], results: [(.f32, outShape)])[0].floats()
        let scale = expected.map(abs).max()!
        let twin = try Reference.execute(.conv2d(kernel), operands, results: [(.f32, outShape)])[0].floats()
        #expect(zip(twin, expected).map { abs($0 - $1) }.max()! / scale <= 1e-6)
        // OpenBLAS: the phases one by one.
        let separate = Tensor.zeros(.f32, outShape)
        UpsampleConvolution.runPhasesSeparately(kernel, x: OwnKernelTests.view(small), weight: OwnKernelTests.view(phases), operands: operands.map(OwnKernelTests.view),
                                                out: OwnKernelTests.view(separate), gemm: Gemm(.openblas), threads: 2)
        #expect(zip(separate.floats(), expected).map { abs($0 - $1) }.max()! / scale <= 1e-5)
        // int8 × int8 (`Int8Convolution.runUpsample`): the phase kernels quantised per output row, the
        // small image per pixel and block of channels, as one 2×2 convolution padded by 1 whose four
        // phases are interleaved; against the definition with the dequantised phase kernels (a wrong
        // phase or offset is off by the whole signal), the same numbers for any thread count.
        let q = Quantization.quantize(Tensor(phases.floats(), shape: Shape([4 * oc, c * 4])), as: .int8Channel)
        let deqPhases = Tensor(Quantization.dequantize(q).floats(), shape: phases.shape)
        let expected8 = try Reference.execute(.conv2d(plain), [Reference.upsampleNearest2x(small), w3] + operands[2...], results: [(.f32, outShape)])[0].floats()
        let deqTwin = try Reference.execute(.conv2d(kernel), [small, deqPhases] + operands[2...], results: [(.f32, outShape)])[0].floats()
        #expect(zip(deqTwin, expected8).map { abs($0 - $1) }.max()! / scale <= 2e-2)  // (the weights' rounding alone)
        let packed8 = q.values.bytes.withMemoryRebound(to: Int8.self) { v in
            q.scales!.withElements(as: Float.self) { Int8ConvWeights(v.baseAddress!, scales: $0.baseAddress!, oc: 4 * oc, ic: c, kh: 2, kw: 2, threads: 2) }
        }
        // (Within the phase planes' memory limit; a VAE decoder's 256 × 256 upsampling is not, and
        // runs in f32 instead.)
        #expect(Int8Convolution.upsampleFits(x: [n, c, h, w], oc: oc) && !Int8Convolution.upsampleFits(x: [1, 256, 256, 256], oc: 256))
        for int8 in Int8Gemm.Kernel.allCases where int8.isSupported {
            var results: [[Float]] = []
            for threads in [1, 3] {
                let result = Tensor.zeros(.f32, outShape)
                Int8Convolution.runUpsample(kernel, x: OwnKernelTests.view(small), weights: packed8, operands: operands.map(OwnKernelTests.view),
                                            out: OwnKernelTests.view(result), kernel: int8, threads: threads)
                let err = zip(result.floats(), deqTwin).map { abs($0 - $1) }.max()! / scale
                #expect(err <= 3e-2 && err > 0, "\(n)×\(c)×\(h)×\(w)→\(oc) \(int8) threads \(threads): \(err)")
                results.append(result.floats())
            }
            #expect(results[0] == results[1], "\(int8): the result depends on the thread count")
        }
        for isa in [ISA.avx512, .avx2] where isa.isSupported && w % Gemm(isa).nr == 0 {
            for (precision, bound) in [(GemmPrecision.f32, Float(1e-5)), (.bf16, 2e-2)] {
                let gemm = Gemm(isa, precision: precision)
                #expect(UpsampleConvolution.eligible(kernel, x: OwnKernelTests.view(operands[0]), weight: OwnKernelTests.view(operands[1]), gemm: gemm))
                let stored = precision == .bf16 ? phases.converted(to: .bf16) : phases  // (the plan's bf16 weights)
                let packed = withExtendedLifetime(stored) { UpsampleConvolution.packPhases(OwnKernelTests.view(stored), gemm: gemm, threads: 2) }
                for threads in [1, 3] {
                    let result = Tensor.zeros(.f32, outShape)
                    UpsampleConvolution.run(kernel, x: OwnKernelTests.view(operands[0]), packed: packed, operands: operands.map(OwnKernelTests.view),
                                            out: OwnKernelTests.view(result), gemm: gemm, threads: threads)
                    let err = zip(result.floats(), expected).map { abs($0 - $1) }.max()! / scale
                    #expect(err <= bound, "\(n)×\(c)×\(h)×\(w)→\(oc) \(isa) \(precision) threads \(threads): \(err)")
                }
            }
        }
    }
}
