/// The published checkpoints (docs/diffbir.md §3.1) and what they hold. Every published network uses the
/// configurations' defaults (DiffBIR's yaml values), so a preset is: the file's layout (for `synth`),
/// the networks it provides, and the prefix each is stored under.
public struct PublishedCheckpoint: Sendable {
    public let file: String
    public let layout: SynthLayout
    public let networks: [Network]
    public let note: String

    public static let all: [PublishedCheckpoint] = [
        .init(file: "v2-1_512-ema-pruned.ckpt", layout: .sd21, networks: [.unet, .vaeEncoder, .vaeDecoder, .clipText],
              note: "SD 2.1-base (ε), Lightning state_dict; used by DiffBIR v1 and v2"),
        .init(file: "sd2.1-base-zsnr-laionaes5.ckpt", layout: .sd21Zsnr, networks: [.unet, .vaeEncoder, .vaeDecoder, .clipText],
              note: "SD 2.1-base, zero terminal SNR, v-prediction; DiffBIR v2.1"),
        .init(file: "general_full_v1.ckpt", layout: .diffbirV1Full, networks: [.unet, .controlnet, .swinir, .vaeEncoder, .vaeDecoder, .clipText],
              note: "DiffBIR v1, complete (general)"),
        .init(file: "face_full_v1.ckpt", layout: .diffbirV1Full, networks: [.unet, .controlnet, .swinir, .vaeEncoder, .vaeDecoder, .clipText],
              note: "DiffBIR v1, complete (faces)"),
        .init(file: "DiffBIR_v2.1.pt", layout: .controlnet, networks: [.controlnet], note: "IRControlNet v2.1"),
        .init(file: "v2.pth", layout: .controlnet, networks: [.controlnet], note: "IRControlNet v2"),
        .init(file: "v1_general.pth", layout: .controlnet, networks: [.controlnet], note: "IRControlNet v1 (general), for the v2 code"),
        .init(file: "v1_face.pth", layout: .controlnet, networks: [.controlnet], note: "IRControlNet v1 (faces), for the v2 code"),
        .init(file: "general_swinir_v1.ckpt", layout: .swinir, networks: [.swinir], note: "SwinIR, Real-ESRGAN degradation"),
        .init(file: "face_swinir_v1.ckpt", layout: .swinir, networks: [.swinir], note: "SwinIR from DifFace"),
        .init(file: "codeformer_swinir.ckpt", layout: .swinir, networks: [.swinir], note: "SwinIR, CodeFormer degradation (training)"),
        .init(file: "realesrgan_s4_swinir_100k.pth", layout: .swinir, networks: [.swinir], note: "SwinIR for v2.1 BSR/BID"),
        .init(file: "BSRNet.pth", layout: .bsrnet, networks: [.bsrnet], note: "RRDBNet ×4 (KAIR)"),
        .init(file: "scunet_color_real_psnr.pth", layout: .scunet, networks: [.scunet], note: "SCUNet PSNR (KAIR)"),
    ]

    /// The preset of a published file name.
    public static func named(_ file: String) -> PublishedCheckpoint? { all.first { $0.file == file } }
}
