import ArgumentParser
import Foundation
import Importers
import ModelGraphs
import Tensors

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint with a published layout and seeded random values.",
        discussion: """
        The names, shapes, dtypes and nesting of the published files (docs/diffbir.md §3.1), for tests \
        and benchmarks without the real weights. Values are seeded random numbers scaled so that \
        activations stay finite and non-trivial through the networks; buffers (SwinIR's masks and \
        index tables, the DDPM schedule) get their real values. Layouts:
          sd21             v2-1_512-ema-pruned.ckpt: UNet, VAE, 24-layer CLIP text tower, DDPM buffers
          sd21-zsnr        sd2.1-base-zsnr-laionaes5.ckpt: UNet, VAE, 23 CLIP layers
          diffbir-v1-full  general_full_v1.ckpt: sd21 + control_model + preprocess_model (SwinIR) + cond_encoder + logvar
          controlnet       v2.pth / DiffBIR_v2.1.pt: the IRControlNet, unprefixed
          swinir           general_swinir_v1.ckpt / realesrgan_s4_swinir_100k.pth (with attn_mask and relative_position_index)
          bsrnet           BSRNet.pth
          scunet           scunet_color_real_psnr.pth
        --format ckpt writes a torch.save zip that torch.load reads (Lightning's {"state_dict": ...} \
        for the SD layouts). --config FILE.json changes sizes: for the SD layouts, sections \
        {"unet": {...}, "vae": {...}, "clip-text": {...}, "swinir": {...}}; otherwise the network's keys.
        """
    )

    @Option(help: "The layout: sd21, sd21-zsnr, diffbir-v1-full, controlnet, swinir, bsrnet, scunet.")
    var layout: SynthLayout

    @Option(name: .shortAndLong, help: "Output file.")
    var output: String

    @Option(help: "Configuration JSON (see above); default: the published sizes.")
    var config: String?

    @Option(help: "Floating-point dtype: f32 (as published) or f16.")
    var dtype: SynthDType = .f32

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    @Option(help: "safetensors or ckpt (torch.save zip).")
    var format: SynthFormat = .safetensors

    @OptionGroup(title: "Output")
    var out: OutputOptions
    var overwrite: Bool { out.overwrite }
    var quiet: Bool { out.quiet }


    func run() throws {
        let start = Date()
        let kind = layout
        let json = try config.map { path -> Data in
            guard let d = FileManager.default.contents(atPath: path) else { throw ToolError("\(path): cannot read the configuration") }
            return d
        }
        let tensors: [SynthTensor]
        do { tensors = try kind.tensors(kind.config(json: json)) } catch { throw ToolError("\(config ?? layout.rawValue): \(error)") }
        let floatType: DType = dtype == .f16 ? .f16 : .f32
        func outType(_ t: SynthTensor) -> DType {
            if case .index(let i) = t.role { return i.dtype }
            return floatType
        }
        let total = tensors.reduce(0) { $0 + $1.shape.count * outType($1).byteSize }
        let showProgress = !quiet && isatty(2) != 0
        var done = 0, lastShown = Date.distantPast
        func progress(_ i: Int) {
            guard showProgress, Date().timeIntervalSince(lastShown) > 0.25 || i == tensors.count else { return }
            lastShown = Date()
            printError(String(format: "\rsynth: tensor %d/%d, %@ of %@   ", i, tensors.count, formatBytes(done), formatBytes(total)), terminator: "")
        }
        if format == .ckpt {
            let writer = try TorchCheckpointWriter(path: output, items: tensors.map { .init(name: $0.key, dtype: outType($0), shape: $0.shape) },
                                                   wrapper: kind.wrapper, overwrite: overwrite)
            for (i, t) in tensors.enumerated() {
                let v = t.make(seed: seed, dtype: floatType)
                try writer.write(v)
                done += v.byteCount
                progress(i + 1)
            }
            try writer.finish()
        } else {
            let writer = try SafetensorsWriter(path: output, tensors: tensors.map { .init(name: $0.key, dtype: outType($0), shape: $0.shape) },
                                               metadata: [("format", "pt"), ("diffbir.synth", "\(layout.rawValue), seed \(seed)")], overwrite: overwrite)
            for (i, t) in tensors.enumerated() {
                let v = t.make(seed: seed, dtype: floatType)
                try writer.write(v.bytes)
                done += v.byteCount
                progress(i + 1)
            }
            try writer.finish()
        }
        if showProgress { printError("") }
        let parameters = tensors.filter(\.isParameter).reduce(0) { $0 + $1.shape.count }
        let seconds = Date().timeIntervalSince(start)
        out.result("wrote \(output): \(layout.rawValue), \(tensors.count) tensors, \(formatCount(parameters)) parameters, \(formatBytes(total)) in \(String(format: "%.1f", seconds)) s",
                   json: .object([("output", .string(output)), ("layout", .string(layout.rawValue)), ("tensors", .int(tensors.count)),
                                  ("parameters", .int(parameters)), ("bytes", .int(total)), ("seconds", .seconds(seconds))]))
    }
}

extension SynthLayout: ExpressibleByArgument {}

/// `synth --dtype`: as published (f32) or f16.
enum SynthDType: String, ExpressibleByArgument, CaseIterable { case f32, f16 }

/// `synth --format`: safetensors, or a torch.save zip.
enum SynthFormat: String, ExpressibleByArgument, CaseIterable { case safetensors, ckpt }
