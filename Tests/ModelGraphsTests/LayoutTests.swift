import Foundation
import Importers
import IR
import ModelGraphs
import Tensors
import Testing
import TestSupport

/// The published key sets and parameter counts (docs/diffbir.md §3.1, §6), built from the definitions.
@Suite struct LayoutTests {
    static func keys(_ layout: SynthLayout, _ config: NetworkConfig = NetworkConfig()) throws -> [SynthTensor] { try layout.tensors(config) }

    static func parameters(_ ts: [SynthTensor], prefix: String) -> Int {
        ts.filter { $0.key.hasPrefix(prefix) && $0.isParameter }.reduce(0) { $0 + $1.shape.count }
    }

    @Test func publishedKeyCountsAndParameters() throws {
        let sd = try Self.keys(.sd21)
        #expect(sd.filter { $0.key.hasPrefix("model.diffusion_model.") }.count == 686)
        #expect(sd.filter { $0.key.hasPrefix("first_stage_model.") }.count == 248)
        #expect(sd.filter { $0.key.hasPrefix("cond_stage_model.") }.count == 294)
        #expect(sd.count == 686 + 248 + 294 + 12)
        #expect(Self.parameters(sd, prefix: "model.diffusion_model.") == 865_910_724)
        #expect(Self.parameters(sd, prefix: "first_stage_model.") == 83_653_863)
        #expect(Self.parameters(sd, prefix: "cond_stage_model.") == 354_032_641)
        let cn = try Self.keys(.controlnet)
        #expect(cn.count == 324 && Self.parameters(cn, prefix: "") == 363_153_280)
        let swin = try Self.keys(.swinir)
        #expect(swin.count == 732 && Self.parameters(swin, prefix: "") == 15_792_587)
        #expect(swin.filter { $0.key.hasSuffix(".attn_mask") }.map(\.shape) == [Shape](repeating: [64, 64, 64], count: 24))
        let bsr = try Self.keys(.bsrnet)
        #expect(bsr.count == 702 && Self.parameters(bsr, prefix: "") == 16_697_987)
        let scu = try Self.keys(.scunet)
        #expect(scu.count == 540 && Self.parameters(scu, prefix: "") == 17_946_072)
        let zsnr = try Self.keys(.sd21Zsnr)
        #expect(zsnr.count == 686 + 248 + 294 - 12 - 2)
        #expect(!zsnr.contains { $0.key.contains("resblocks.23.") || $0.key.hasSuffix("text_projection") || $0.key == "betas" })
        let v1 = try Self.keys(.diffbirV1Full)
        #expect(v1.filter { $0.key.hasPrefix("control_model.") }.count == 324)
        #expect(v1.filter { $0.key.hasPrefix("preprocess_model.") }.count == 732)
        #expect(v1.filter { $0.key.hasPrefix("cond_encoder.") }.count == 108)
        #expect(v1.contains { $0.key == "logvar" })
        #expect(Set(v1.map(\.key)).count == v1.count)
    }

    /// The networks' own weights are the layouts' keys minus what the reference ignores.
    @Test func graphsDeclareThePublishedWeights() throws {
        let c = NetworkConfig()
        func weights(_ n: Network) throws -> Set<String> {
            Set(try n.graph(c, inputs: SynthTestInputs.small(n, c)).weights.map(\.key))
        }
        let sd = try Self.keys(.sd21)
        #expect(try weights(.unet) == Set(sd.filter { $0.key.hasPrefix("model.diffusion_model.") }.map { String($0.key.dropFirst(22)) }))
        let clip = try weights(.clipText)
        #expect(clip.count == 294 - 2 - 12)
        #expect(!clip.contains { $0.contains("resblocks.23.") })
        let swin = try weights(.swinir)
        #expect(swin.count == 732 - 24 - 48)
    }

    /// A checkpoint with one tensor removed, one renamed and one reshaped: three errors in one message.
    @Test func strictLoadingNamesEveryProblem() throws {
        let dir = TemporaryDirectory()
        let source = try Checkpoint.open(Fixtures.path("networks/bsrnet.weights.safetensors"))
        var list: [(String, Tensor)] = []
        for e in source.tensors {
            switch e.name {
            case "conv_last.bias": continue                                     // removed
            case "HRconv.bias": list.append(("HRconv.biasx", e.load()))         // renamed
            case "upconv1.bias": list.append((e.name, Tensor.zeros(.f32, [7]))) // reshaped
            default: list.append((e.name, e.load()))
            }
        }
        try SafetensorsWriter.write(path: dir.file("bad.safetensors"), tensors: list)
        let config = try NetworkConfig.load(.bsrnet, json: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("networks/bsrnet.config.json"))))
        var graph = try Network.bsrnet.graph(config, inputs: ["image": TensorType(.f32, [1, 3, 8, 8])])
        do {
            _ = try Network.bsrnet.bind(&graph, config: config, files: [weightFile(dir.file("bad.safetensors"))])
            Issue.record("accepted a bad checkpoint")
        } catch let e as WeightBindingError {
            let text = e.description
            #expect(e.problems.count == 4, "\(text)")  // conv_last.bias and HRconv.bias missing, HRconv.biasx unused, upconv1.bias reshaped
            #expect(!text.contains("\n"), "one line: \(text)")
            #expect(text.contains("missing: conv_last.bias [3]"), "\(text)")
            #expect(text.contains("unused: HRconv.biasx [8]"), "\(text)")
            #expect(text.contains("shape mismatch: upconv1.bias is [7] in \(dir.file("bad.safetensors")), the bsrnet needs [8]"), "\(text)")
        }
    }

    /// A network whose weights are in none of the files: the error names the published file that
    /// holds them and the fetch command that gets it.
    @Test func missingNetworksNameThePublishedFile() throws {
        let config = try NetworkConfig.load(.scunet, json: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("networks/scunet.config.json"))))
        var graph = try Network.scunet.graph(config, inputs: ["image": TensorType(.f32, [1, 3, 64, 64])])
        let error = #expect(throws: WeightBindingError.self) {
            try Network.scunet.bind(&graph, config: config, files: [weightFile(Fixtures.path("networks/bsrnet.weights.safetensors"))])
        }
        #expect(error?.description.contains("scunet_color_real_psnr.pth (diffbir fetch scunet_psnr)") == true, "\(error?.description ?? "")")
    }

    /// Published wrappings: Lightning's `state_dict`, the `module.` prefix, SD-style prefixes, f16 weights.
    @Test func loadsPrefixedWrappedAndHalfCheckpoints() throws {
        let dir = TemporaryDirectory()
        let config = try NetworkConfig.load(.unet, json: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("networks/unet.config.json"))))
        let unet = try Checkpoint.open(Fixtures.path("networks/unet.weights.safetensors"))
        let cn = try Checkpoint.open(Fixtures.path("networks/controlnet.weights.safetensors"))
        // An SD-style Lightning checkpoint holding the UNet under model.diffusion_model., in f16, plus DDPM buffers.
        var items: [TorchCheckpointWriter.Item] = [], values: [Tensor] = []
        for e in unet.tensors {
            items.append(.init(name: "model.diffusion_model." + e.name, dtype: .f16, shape: e.shape))
            values.append(e.load().converted(to: .f16))
        }
        items.append(.init(name: "betas", dtype: .f32, shape: [4]))
        values.append(Tensor([1, 2, 3, 4], shape: [4]))
        let writer = try TorchCheckpointWriter(path: dir.file("sd.ckpt"), items: items, wrapper: "state_dict")
        for v in values { try writer.write(v) }
        try writer.finish()
        // A DataParallel ControlNet: every key under module.
        try SafetensorsWriter.write(path: dir.file("cn.safetensors"), tensors: cn.tensors.map { ("module." + $0.name, $0.load()) })
        let io = try tensors(Fixtures.path("networks/denoise.io.safetensors"))
        var types: [String: TensorType] = [:]
        for (k, t) in io where k != "out" { types[k] = TensorType(t.dtype, t.shape) }
        var graph = try Network.denoise.graph(config, inputs: types)
        let report = try Network.denoise.bind(&graph, config: config, files: [weightFile(dir.file("sd.ckpt")), weightFile(dir.file("cn.safetensors"))])
        #expect(report.sources.map(\.prefix) == ["", "model.diffusion_model."])
        #expect(report.converted == unet.tensors.count)
    }

    /// `synth` writes the same values in both formats; the ckpt reads back through the zip reader.
    @Test func synthFormatsAgree() throws {
        let dir = TemporaryDirectory()
        var config = NetworkConfig()
        config.bsrnet.nf = 8
        config.bsrnet.nb = 1
        config.bsrnet.gc = 4
        let ts = try SynthLayout.bsrnet.tensors(config)
        let items = ts.map { TorchCheckpointWriter.Item(name: $0.key, dtype: .f32, shape: $0.shape) }
        let ckpt = try TorchCheckpointWriter(path: dir.file("s.ckpt"), items: items)
        for t in ts { try ckpt.write(t.make(seed: 3, dtype: .f32)) }
        try ckpt.finish()
        try SafetensorsWriter.write(path: dir.file("s.safetensors"), tensors: ts.map { ($0.key, $0.make(seed: 3, dtype: .f32)) })
        let a = try Checkpoint.open(dir.file("s.ckpt")), b = try Checkpoint.open(dir.file("s.safetensors"))
        #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
        for (x, y) in zip(a.tensors, b.tensors) { #expect(Array(x.load().bytes) == Array(y.load().bytes), "\(x.name)") }
        // Different seeds differ; the same seed repeats.
        #expect(ts[0].make(seed: 3, dtype: .f32).floats() == ts[0].make(seed: 3, dtype: .f32).floats())
        #expect(ts[0].make(seed: 3, dtype: .f32).floats() != ts[0].make(seed: 4, dtype: .f32).floats())
    }

    @Test func configErrorsAreClear() throws {
        #expect(throws: ModelError.self) { try NetworkConfig.load(.unet, json: Data(#"{"model_chanels": 32}"#.utf8)) }
        #expect(throws: ModelError.self) { try NetworkConfig.load(.unet, json: Data(#"{"model_channels": "wide"}"#.utf8)) }
        let c = try NetworkConfig.load(.unet, json: Data(#"{"model_channels": 64}"#.utf8))
        #expect(c.unet.model_channels == 64 && c.unet.context_dim == 1024)
        // A latent whose sides do not divide by 8 is refused before anything is built.
        #expect(throws: ModelError.self) {
            try Network.unet.graph(NetworkConfig(), inputs: ["x": TensorType(.f32, [1, 4, 60, 60]), "t": TensorType(.f32, [1]), "context": TensorType(.f32, [1, 77, 1024])])
        }
    }
}

/// Small inputs for building graphs whose weights only are needed.
enum SynthTestInputs {
    static func small(_ n: Network, _ c: NetworkConfig) -> [String: TensorType] {
        switch n {
        case .swinir: return ["image": TensorType(.f32, [1, 3, 64, 64])]
        case .clipText: return ["tokens": TensorType(.i64, [1, 77])]
        default: return n.defaultInputs(c).filter { !$0.key.hasPrefix("control_") }.mapValues { t in
            t.rank == 4 ? TensorType(t.dtype, [t.dims[0], t.dims[1], 8, 8]) : t
        }
        }
    }
}

/// torch.load read what `synth --format ckpt` wrote (make_checkpoint_fixtures.py check-swift records
/// it); the writer must still produce exactly those bytes.
@Suite struct TorchWriterRecordTests {
    @Test func writerOutputIsWhatTorchRead() throws {
        let check = try #require(try Fixtures.json("checkpoints/swift_written.check.json")["swift_synth.ckpt"] as? [String: Any])
        #expect(check["ok"] as? Bool == true)
        let config = try NetworkConfig.load(.bsrnet, json: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("checkpoints/tiny-bsrnet.config.json"))))
        let ts = try SynthLayout.bsrnet.tensors(config)
        let dir = TemporaryDirectory()
        let writer = try TorchCheckpointWriter(path: dir.file("s.ckpt"), items: ts.map { .init(name: $0.key, dtype: .f32, shape: $0.shape) })
        for t in ts { try writer.write(t.make(seed: 5, dtype: .f32)) }
        try writer.finish()
        let written = try Data(contentsOf: URL(fileURLWithPath: dir.file("s.ckpt")))
        #expect(written == (try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("checkpoints/swift_synth.ckpt")))))
        #expect(written.withUnsafeBytes { crc32($0) } == UInt32(check["crc32_file"] as! Int))
    }
}

@Suite struct PresetTests {
    /// Every published file's layout provides every network it is said to hold: the binder finds each
    /// network's part in the layout's keys (by its signature key under one of its prefixes).
    @Test(arguments: PublishedCheckpoint.all.map(\.file))
    func presetProvidesItsNetworks(file: String) throws {
        let preset = try #require(PublishedCheckpoint.named(file))
        let keys = Set(try preset.layout.tensors(NetworkConfig()).map(\.key))
        for network in preset.networks {
            for part in network.parts(NetworkConfig()) {
                #expect(part.prefixes.contains { keys.contains($0 + part.signature) }, "\(file) should hold the \(part.name)")
            }
        }
    }
}
