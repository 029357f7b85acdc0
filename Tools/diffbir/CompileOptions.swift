import ArgumentParser
import Plan
import Tensors

/// `compile`'s weight formats and activation precision.
struct QuantizationOptions: ParsableArguments {
    @Option(help: ArgumentHelp("auto (the default), f32, or bf16 (= --weights-dtype bf16 --activations bf16: weights stored as bf16, bf16 operands into the GEMMs and attention, f32 accumulation; norms, softmax and the rest stay f32).", discussion: "auto chooses for the processor compile runs on: bf16 where it has AVX512-BF16 (about half the time of f32, relative error near 1e-2), f32 otherwise (AVX2-only processors would emulate bf16, slower than f32); with --weights-dtype, --activations, --quant-rule or calibration options given, those decide and auto means f32. The choice is printed and kept in the plan's report. Give --precision f32 for plans within 1e-5 of PyTorch."))
    var precision: PrecisionArgument?

    @Option(name: .customLong("weights-dtype"), help: ArgumentHelp("How convolution and linear weights are stored: f32, bf16, f16, int8 (symmetric, one scale per output channel), or int8-block32 (int8 with, besides the channel's scale, a one-byte code per 32 values that narrows the step to that block's largest value: 1/32 byte more a value, about two thirds of the error on the full-size denoise; runs with f32 activations), or int8-block16 (the same bytes: a 4-bit code per 16 values, one of 16 fixed fractions of the channel's scale).", discussion: "f16 and int8 weights stay in that form in the plan and in memory; the GEMMs expand them to f32 block by block as they pack them (f32 activations). The model's first and last convolutions and its time embedding stay f32 (an ONNX model's first and last convolution or linear layer; see --quant-rule); norms, biases and embeddings are never quantised. The report lists every weight's format and its error against f32."))
    var weightsDType: WeightFormat?

    @Option(help: ArgumentHelp("Activations into the GEMMs: f32, bf16 (with bf16 weights), or int8 (with int8 weights).", discussion: "int8: linear layers with int8 weights (48 rows or more) and convolutions quantise their input on the fly, symmetric, one scale per block of 32 values along k (per row and 32 features; per pixel and 32 channels, once per image), and multiply int8 × int8 exactly in int32 per block, each block's sum scaled into f32 (AVX512-VNNI; AVX2 kernels on 16-bit values without VNNI or with --isa avx2); attention's products run in bf16."))
    var activations: ActivationPrecision?

    @Option(name: .customLong("quant-rule"), help: ArgumentHelp("PATTERN=FORMAT (repeatable, in order; the first matching rule decides): store the convolution and linear weights whose name matches the glob PATTERN as FORMAT (f32, bf16, f16, int8, int8-block32, int8-block16), overriding --weights-dtype and the model's exclusions.", valueName: "pattern=format"))
    var quantRules: [String] = []
}

/// `compile`'s calibration and GPTQ settings (run by `Quantize.QuantizationLoop`).
struct CalibrationOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Calibrate: run N input sets through the f32 plan and the quantised one and print per-layer SNR, each entry point's end-to-end error, and the layers whose move to f16 would help most.", discussion: "Inputs are seeded random values of each entry's types (a scalar `t` in [0, 1000), other scalars 1), or the sets in --calibrate-inputs. The f32 plan is written beside the output for the duration and removed."))
    var calibrate: Int = 0

    @Option(name: .customLong("calibrate-inputs"), help: "A directory of .safetensors input sets (tensors named like an entry's inputs) for --calibrate.")
    var calibrateInputs: String?

    @Option(name: .customLong("auto-keep"), help: "After calibration, keep the K layers with the lowest SNR in f16 (recompiles, and reports the error again). Implies --calibrate 1 unless given.")
    var autoKeep: Int = 0

    @Flag(help: ArgumentHelp("Round int8 weights with error compensation (GPTQ) against the inputs each layer sees in the f32 plan on the calibration sets (implies --calibrate 8 unless given).", discussion: "Each int8 layer whose calibration sets give it at least --gptq-min-samples × k input vectors (k: its values per output channel) is rounded a column at a time, each column's rounding error spread over the columns not yet rounded as the inputs' correlations say; same scales, same format, so the plan runs as any int8 plan. The report gives the end-to-end error before and after. The compensation fits the calibration inputs: give sets like the real inputs with --calibrate-inputs (the seeded random sets are uniform in [-1, 1])."))
    var gptq = false

    @Option(name: .customLong("gptq-damping"), help: "Error compensation: added to the diagonal of the input statistics, as a fraction of its mean (larger trusts the calibration inputs less).")
    var gptqDamping: Float = 0.1

    @Flag(name: .customLong("gptq-act-order"), inversion: .prefixedNo, help: "Error compensation: round each layer's columns in the order of their inputs' energy, largest first (GPTQ's act-order), or in storage order.")
    var gptqActOrder = true

    @Option(name: .customLong("gptq-min-samples"), help: "Error compensation: a layer is compensated when the calibration sets give it at least this many input vectors per value of k (fewer: plain rounding).")
    var gptqMinSamples: Double = 0.25

    @Option(name: .customLong("gptq-memory"), help: "Error compensation: memory for the layers' k × k input statistics gathered in one pass over the calibration sets (e.g. 4G); more layers than fit take more passes.")
    var gptqMemory = ByteSize(argument: "4G")!
}
