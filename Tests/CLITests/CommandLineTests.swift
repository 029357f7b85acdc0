import Foundation
import Testing
import TestSupport

/// The command line itself, run as a user runs it: one grammar of shared options, JSON results that
/// parse, outputs kept unless --overwrite, and output names at their edges.
@Suite struct CommandLineTests {
    static let networks = Fixtures.path("networks")

    /// A small image plan (the bsrnet fixture, 16×16 tiles, ×4) in `dir`.
    static func plan(in dir: TemporaryDirectory) throws -> String {
        let path = dir.file("bsrnet.plan")
        let r = Tool.run(["compile", "--model", "bsrnet", "--weights", networks + "/bsrnet.weights.safetensors",
                          "--config", networks + "/bsrnet.config.json", "--size", "16x16", "-o", path, "-q", "--json"])
        try #require(r.status == 0, "\(r)")
        let json = try #require(r.json(), "\(r)")
        #expect(json["output"] as? String == path)
        let entries = try #require(json["entryPoints"] as? [[String: Any]])
        #expect(entries.first?["name"] as? String == "bsrnet")
        #expect((entries.first?["instructions"] as? Int ?? 0) > 0)
        return path
    }

    @Test func everySubcommandThatWorksSharesTheOptions() {
        let writers = ["convert", "compile", "run", "restore", "synth", "compare", "fetch", "inspect"]
        let readers = ["bench", "bench-gemm", "metrics"]
        for command in writers + readers {
            let r = Tool.run([command, "--help"])
            #expect(r.status == 0, "\(command): \(r)")
            for option in ["--quiet", "--json"] + (writers.contains(command) ? ["--overwrite"] : []) {
                #expect(r.stdout.contains(option), "\(command) --help lacks \(option)")
            }
        }
        for command in ["compile", "run", "restore", "bench", "bench-gemm"] {
            let r = Tool.run([command, "--help"])
            #expect(r.stdout.contains("--threads") && r.stdout.contains("(default: the physical cores"), "\(command): \(r.stdout)")
        }
        let r = Tool.run(["run", "--plan", "x.plan", "--inputs", "i.safetensors", "-o", "o.safetensors", "--threads", "0"])
        #expect(r.status != 0 && r.stderr.contains("--threads must be at least 1"), "\(r)")
    }

    @Test func convertReportsJSONAndKeepsWhatExists() throws {
        let dir = TemporaryDirectory()
        let out = dir.file("c.safetensors")
        let args = ["convert", Fixtures.path("checkpoints/swift_written.safetensors"), "-o", out, "--json"]
        let first = Tool.run(args)
        #expect(first.status == 0, "\(first)")
        let json = try #require(first.json(), "\(first)")
        #expect(json["output"] as? String == out)
        #expect((json["tensors"] as? Int ?? 0) > 0)
        let size = try FileManager.default.attributesOfItem(atPath: out)[.size] as? Int
        let again = Tool.run(args)
        #expect(again.status != 0 && again.stderr.contains(out) && again.stderr.contains("--overwrite"), "\(again)")
        #expect(again.stdout.isEmpty)
        let replaced = Tool.run(args + ["--overwrite"])
        #expect(replaced.status == 0, "\(replaced)")
        #expect(try FileManager.default.attributesOfItem(atPath: out)[.size] as? Int == size)
        #expect(dir.contents == ["c.safetensors"])
    }

    /// `--precision auto`, the default, chooses bf16 where the processor has AVX512-BF16 and f32
    /// elsewhere, says why, and keeps it in the plan; f32 when asked, and the explicit formats of
    /// --weights-dtype decide without it.
    @Test func precisionAutoFollowsTheProcessor() throws {
        let dir = TemporaryDirectory()
        // What the tool reads of the processor (CPUID, as `bench-gemm` reports it).
        let cpu = Tool.run(["bench-gemm", "--shapes", "12x16x8", "--runs", "1", "--json", "-q"]).json()?["cpu"] as? String ?? ""
        let native = cpu.contains("AVX-512") && cpu.contains("BF16")
        func compile(_ extra: [String]) throws -> (precision: String?, reason: String?, path: String) {
            let path = dir.file("p\(extra.count).plan")
            let r = Tool.run(["compile", "--model", "bsrnet", "--weights", Self.networks + "/bsrnet.weights.safetensors",
                              "--config", Self.networks + "/bsrnet.config.json", "--size", "16x16", "-o", path, "-q", "--json", "--overwrite"] + extra)
            let json = try #require(r.json(), "\(r)")
            return (json["precision"] as? String, json["precisionReason"] as? String, path)
        }
        let auto = try compile([])
        #expect(auto.precision == (native ? "bf16" : "f32"), "\(auto)")
        #expect(auto.reason?.hasPrefix("auto: this processor") == true)
        let report = Tool.run(["inspect", auto.path])
        #expect(report.stdout.contains("precision: \(native ? "bf16" : "f32") (auto"), "\(report)")
        // f32 Winograd from 16×16 outputs where there is no AVX-512, said in the report.
        let f32 = Tool.run(["inspect", try compile(["--precision", "f32"]).path])
        #expect(f32.stdout.contains("from 16×16 outputs") == !cpu.contains("AVX-512"), "\(cpu): \(f32)")
        #expect(try compile(["--precision", "f32"]).precision == "f32")
        let int8 = try compile(["--weights-dtype", "int8"])
        #expect(int8.precision == "f32" && int8.reason?.contains("--weights-dtype") == true, "\(int8)")
        let both = Tool.run(["compile", "--model", "bsrnet", "--weights", Self.networks + "/bsrnet.weights.safetensors", "--config", Self.networks + "/bsrnet.config.json",
                             "--size", "16x16", "-o", dir.file("x.plan"), "--precision", "bf16", "--weights-dtype", "int8"])
        #expect(both.status != 0 && both.stderr.contains("exclude each other"), "\(both)")
    }

    /// `compile --prepack`: the plan says what it stores packed (`inspect --json`), a run on this
    /// processor's kernels takes every packed weight from it with the same result to the bit, a run
    /// on other kernels (`--isa avx2` where the plan was packed for AVX-512) packs as before; refused
    /// beside the options that recompile.
    @Test func prepackedPlansRunWithoutPacking() throws {
        let dir = TemporaryDirectory()
        let weights = Self.networks + "/bsrnet.weights.safetensors", config = Self.networks + "/bsrnet.config.json"
        func compile(_ name: String, _ extra: [String]) throws -> (path: String, report: String) {
            let path = dir.file(name)
            let r = Tool.run(["compile", "--model", "bsrnet", "--weights", weights, "--config", config, "--size", "16x16", "-o", path, "-q", "--json"] + extra)
            try #require(r.status == 0, "\(r)")
            return (path, r.json()?["report"] as? String ?? "")
        }
        let plain = try compile("plain.plan", []), packed = try compile("packed.plan", ["--prepack"])
        let line = try #require(packed.report.split(separator: "\n").first { $0.hasPrefix("prepack: ") }, "\(packed.report)")
        let forms = try #require(Tool.run(["inspect", packed.path, "--json"]).json()?["packed_weights"] as? [[String: Any]])
        #expect(!forms.isEmpty && line.contains("\(forms.count) weights"), "\(String(line))")
        #expect(Tool.run(["inspect", "--verify", packed.path, "-q"]).status == 0)
        func run(_ plan: String, _ extra: [String]) throws -> (bytes: Data, fromPlan: Int, here: Int) {
            let out = dir.file("out-\(Int.random(in: 0..<1_000_000)).safetensors")
            let r = Tool.run(["run", "--plan", plan, "--inputs", Self.networks + "/bsrnet.io.safetensors", "-o", out, "--json", "--threads", "2"] + extra)
            let json = try #require(r.json(), "\(r)")
            return (try Data(contentsOf: URL(fileURLWithPath: out)), json["packedFromPlan"] as? Int ?? -1, json["packedAtFirstUse"] as? Int ?? -1)
        }
        let a = try run(plain.path, []), b = try run(packed.path, [])
        #expect(a.fromPlan == 0 && a.here > 0 && b.fromPlan == a.here && b.here == 0, "\(a.fromPlan) \(a.here) \(b.fromPlan) \(b.here)")
        #expect(a.bytes == b.bytes)
        // The AVX2 kernels, which every machine here has: from the plan only where it was packed for them.
        let c = try run(plain.path, ["--isa", "avx2"]), d = try run(packed.path, ["--isa", "avx2"])
        #expect(c.bytes == d.bytes)
        #expect(line.contains("for the avx2 kernels") ? d.fromPlan == c.here && d.here == 0 : d.fromPlan == 0 && d.here == c.here, "\(line)")
        let refused = Tool.run(["compile", "--model", "bsrnet", "--weights", weights, "--config", config, "--size", "16x16", "-o", dir.file("x.plan"),
                                "--prepack", "--weights-dtype", "int8", "--gptq"])
        #expect(refused.status != 0 && refused.stderr.contains("--prepack"), "\(refused)")
    }

    @Test func compileRunAndInspectSpeakJSON() throws {
        let dir = TemporaryDirectory()
        let plan = try Self.plan(in: dir)
        let verify = Tool.run(["inspect", "--verify", plan, "--json"])
        #expect(verify.json()?["verified"] as? Bool == true, "\(verify)")
        let out = dir.file("out.safetensors")
        let run = Tool.run(["run", "--plan", plan, "--inputs", Self.networks + "/bsrnet.io.safetensors", "-o", out, "--json", "--threads", "1"])
        let json = try #require(run.json(), "\(run)")
        #expect(json["entry"] as? String == "bsrnet")
        // bench takes every input from --inputs, or refuses the file naming the one it lacks.
        let timed = Tool.run(["bench", "--plan", plan, "--inputs", Self.networks + "/bsrnet.io.safetensors", "--runs", "1", "--warmup", "0", "-q", "--threads", "1"])
        #expect(timed.status == 0, "\(timed)")
        let lacking = Tool.run(["bench", "--plan", plan, "--inputs", Self.networks + "/bsrnet.weights.safetensors", "--runs", "1", "--warmup", "0"])
        #expect(lacking.status != 0 && lacking.stderr.contains("has no tensor"), "\(lacking)")
        #expect(json["threads"] as? Int == 1)
        let outputs = try #require(json["outputs"] as? [[String: Any]])
        #expect(outputs.first?["shape"] as? [Int] == [1, 3, 64, 64])
        let svg = dir.file("memory.svg")
        #expect(Tool.run(["inspect", plan, "--memory-svg", svg, "-q"]).status == 0)
        let kept = Tool.run(["inspect", plan, "--memory-svg", svg])
        #expect(kept.status != 0 && kept.stderr.contains("exists"), "\(kept)")
        #expect(Tool.run(["inspect", plan, "--memory-svg", svg, "--overwrite", "--json"]).json()?["output"] as? String == svg)
    }

    /// Output names at their edges, run in the output's folder: one character with no extension
    /// (refused, or written with --format), no directory part, a trailing slash (a folder, created),
    /// and `-` (standard output).
    @Test func outputNamesAtTheirEdges() throws {
        let dir = TemporaryDirectory()
        let plan = try Self.plan(in: dir)
        let input = Fixtures.path("pipeline/lq64.png")
        func restore(_ args: [String]) -> Tool.Result { Tool.run(["restore", "--plan", plan, input, "-q"] + args, in: dir.path) }
        func restore(_ args: String...) -> Tool.Result { restore(args) }

        let bare = restore("-o", "a")
        #expect(bare.status == 1 && bare.stderr.contains("a: output format '(none)'"), "\(bare)")
        #expect(!dir.contents.contains("a"))
        #expect(restore("-o", "a", "--format", "png").status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.file("a"))).prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))

        #expect(restore("-o", "b.jpg").status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.file("b.jpg"))).prefix(2) == Data([0xFF, 0xD8]))

        let folder = restore("-o", "new/", "--json")
        #expect(folder.json()?["output"] as? String == "new/lq64.png", "\(folder)")
        #expect(FileManager.default.fileExists(atPath: dir.file("new/lq64.png")))

        let piped = restore("-o", "-")
        #expect(piped.status == 0, "\(piped)")
        #expect(piped.output.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]) && piped.output.count > 1000)
        #expect(!dir.contents.contains("-"))
        let pipedJSON = restore("-o", "-", "--json")
        #expect(pipedJSON.status != 0 && pipedJSON.stderr.contains("standard output"), "\(pipedJSON)")
        #expect(dir.contents.allSatisfy { !$0.contains(".tmp-") })

        // The diffusion's settings on an image-to-image plan are refused by name, nothing written.
        for option in [["--strength", "2"], ["--steps", "3"], ["--rescale-cfg"], ["--stage1-only"]] {
            let refused = restore(["-o", "refused.png"] + option)
            #expect(refused.status != 0 && refused.stderr.contains("\(option[0]) is for DiffBIR plans"), "\(refused)")
        }
        #expect(!dir.contents.contains("refused.png"))
    }
}
