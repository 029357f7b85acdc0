import ArgumentParser

@main
struct DiffBIR: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "diffbir",
        abstract: "Convert, compile and run DiffBIR (SwinIR + Stable Diffusion 2.1 + IRControlNet) on a CPU.",
        discussion: """
        Checkpoints are read without executing anything in them: .safetensors files and torch.save \
        zip files (.pt, .pth, .ckpt, including PyTorch Lightning checkpoints) are memory-mapped and \
        parsed, never unpickled by Python.
        """,
        version: "diffbir \(version)",
        subcommands: [Inspect.self, Convert.self, Compile.self, Run.self, Restore.self, Bench.self, BenchGemm.self, Synth.self]
    )
}
