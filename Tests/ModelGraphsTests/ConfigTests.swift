import Foundation
import ModelGraphs
import Testing
import TestSupport

/// `--config` with DiffBIR's yaml files as published (Tests/Fixtures/configs, copied unchanged).
@Suite struct ConfigTests {
    static func text(_ name: String) throws -> String {
        try String(contentsOfFile: Fixtures.path("configs/" + name), encoding: .utf8)
    }

    /// Every network's section of the published files gives exactly this build's defaults (which
    /// are DiffBIR's): the same graphs as without --config. The training-only keys are named.
    @Test(arguments: [("cldm.yaml", Network.unet), ("cldm.yaml", .controlnet), ("cldm.yaml", .denoise), ("cldm.yaml", .vaeDecoder),
                      ("cldm.yaml", .vaeEncoder), ("cldm.yaml", .clipText), ("swinir.yaml", .swinir), ("bsrnet.yaml", .bsrnet),
                      ("scunet.yaml", .scunet)])
    func publishedFilesGiveTheDefaults(file: String, network: Network) throws {
        var notes: [String] = []
        let config = try NetworkConfig.load(network, yaml: try Self.text(file), notes: &notes)
        #expect(config == NetworkConfig(), "\(file) \(network.rawValue)")
        if network == .unet || network == .controlnet {
            #expect(notes.count == 1 && notes[0].contains("use_checkpoint") && notes[0].contains("image_size"), "\(notes)")
        }
    }

    @Test func changedValuesApplyAndForeignOnesAreRefused() throws {
        var notes: [String] = []
        let cldm = try Self.text("cldm.yaml")
        let smaller = cldm.replacingOccurrences(of: "model_channels: 320", with: "model_channels: 192")
        #expect(try NetworkConfig.load(.unet, yaml: smaller, notes: &notes).unet.model_channels == 192)
        // A depth this build does not make is refused, naming the key.
        let deeper = cldm.replacingOccurrences(of: "transformer_depth: 1", with: "transformer_depth: 2")
        let error = #expect(throws: ModelError.self) { try NetworkConfig.load(.unet, yaml: deeper, notes: &notes) }
        #expect(error?.message.contains("transformer_depth") == true, "\(error?.message ?? "")")
        // The wrong file for the network.
        let wrong = #expect(throws: ModelError.self) { try NetworkConfig.load(.swinir, yaml: try Self.text("bsrnet.yaml"), notes: &notes) }
        #expect(wrong?.message.contains("RRDBNet") == true, "\(wrong?.message ?? "")")
        let none = #expect(throws: ModelError.self) { try NetworkConfig.load(.unet, yaml: try Self.text("swinir.yaml"), notes: &notes) }
        #expect(none?.message.contains("unet_cfg") == true, "\(none?.message ?? "")")
    }
}
