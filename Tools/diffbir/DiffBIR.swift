import ArgumentParser
import CKernels
import Foundation

@main
struct DiffBIR: ParsableCommand {
    /// The kernels are built for x86-64 with AVX2 and FMA (AVX-512, VNNI and BF16 are used when
    /// present): refuse clearly on an older processor instead of dying on an illegal instruction.
    static func main() {
        #if arch(x86_64)
        if ck_cpu_features() & UInt32(CK_AVX2_FMA) == 0 {
            FileHandle.standardError.write(Data("diffbir: this processor has no AVX2/FMA; diffbir needs an x86-64 CPU with AVX2 and FMA (Haswell, Zen or newer)\n".utf8))
            Foundation.exit(2)
        }
        #endif
        main(nil)
    }

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
        subcommands: [Inspect.self, Convert.self, Compile.self, Run.self, Restore.self, Serve.self, Worker.self, Fetch.self, Metrics.self, Compare.self, Bench.self, BenchGemm.self, Synth.self]
    )
}
