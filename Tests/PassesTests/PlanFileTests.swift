import Compilation
import Executor
import Foundation
import Kernels
import Passes
import Plan
import Tensors
import Testing
import TestSupport

/// A damaged plan is refused when it is opened, before anything runs, with a message naming the part.
@Suite struct PlanFileTests {
    static func makePlan(_ dir: TemporaryDirectory) throws -> String {
        let f = try FixtureNetwork.load(1)
        let compiled = try Compiler.compile([("bsrnet", f.graph)], options: CompileOptions())
        let path = dir.file("good.plan")
        try PlanWriter.write(path: path, program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: false)
        return path
    }

    static func u64(_ b: [UInt8], _ o: Int) -> Int { (0..<8).reduce(0) { $0 | Int(b[o + $1]) << (8 * $1) } }
    static func u32(_ b: [UInt8], _ o: Int) -> Int { (0..<4).reduce(0) { $0 | Int(b[o + $1]) << (8 * $1) } }

    static func refusal(_ path: String) -> String? {
        do {
            _ = try PlanFile(path: path)
            return nil
        } catch {
            return error.message
        }
    }

    /// An int8-channel weight without its scales, a block-format weight without its codes, or a
    /// format that does not match the dtype, is refused (a consistent file otherwise: checksums right).
    @Test func quantisedWeightsWithoutScalesAreRefused() throws {
        let f = try FixtureNetwork.load(1)
        var o = CompileOptions()
        o.quantization = QuantizationPolicy(defaultFormat: .int8Channel)
        let compiled = try Compiler.compile([("bsrnet", f.graph)], options: o)
        let dir = TemporaryDirectory()
        let good = dir.file("int8.plan")
        try PlanWriter.write(path: good, program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: false)
        #expect(Self.refusal(good) == nil)
        let i = compiled.program.weights.firstIndex { $0.format == .int8Channel }!
        var noScale = compiled.program
        noScale.weights[i].scale = nil
        var wrongDType = compiled.program
        wrongDType.weights[i].format = .f16
        var cases: [(String, Program, CompiledPlan, String)] = [("noscale", noScale, compiled, "without f32 scales"),
                                                                ("dtype", wrongDType, compiled, "does not match its dtype")]
        // The block formats: their codes are named, u8, [rows, ceil(k/32)] bytes.
        for format in [WeightFormat.int8Block32, .int8Block16] {
            o.quantization = QuantizationPolicy(defaultFormat: format)
            let blocked = try Compiler.compile([("bsrnet", f.graph)], options: o)
            let goodBlocked = dir.file("\(format.rawValue).plan")
            try PlanWriter.write(path: goodBlocked, program: blocked.program, summary: blocked.report, weights: blocked.weights, overwrite: false)
            #expect(Self.refusal(goodBlocked) == nil)
            let j = blocked.program.weights.firstIndex { $0.format == format }!
            var noCodes = blocked.program
            noCodes.weights[j].blockCodes = nil
            var wrongCodes = blocked.program
            wrongCodes.weights[j].blockCodes = wrongCodes.weights[j].scale
            cases += [("nocodes-\(format.rawValue)", noCodes, blocked, "without u8 block codes"), ("wrongcodes-\(format.rawValue)", wrongCodes, blocked, "without u8 block codes")]
        }
        for (name, program, source, expected) in cases {
            let path = dir.file(name + ".plan")
            try PlanWriter.write(path: path, program: program, summary: source.report, weights: source.weights, overwrite: false)
            let message = Self.refusal(path)
            #expect(message?.contains(expected) == true, "\(name): \(message ?? "opened")")
        }
    }

    @Test func goodPlanOpens() throws {
        let dir = TemporaryDirectory()
        let path = try Self.makePlan(dir)
        let plan = try PlanFile(path: path)
        #expect(plan.program.entryPoints.map(\.name) == ["bsrnet"])
        #expect(plan.weightSection.lowerBound % 4096 == 0)
        for (i, w) in plan.program.weights.enumerated().dropFirst() {
            #expect(w.offset % 64 == 0)
            // In place: the tensor is a view of the mapping.
            #expect(plan.weight(i).storage.isMapped)
        }
        #expect(plan.summary.contains("arena"))
    }

    /// The plans' checksum (folded with PCLMULQDQ where the processor has it) is zlib's crc32: every
    /// length around the folds' 16- and 64-byte steps, unaligned starts, and continued from a value.
    @Test func planChecksumIsZlibCRC32() {
        var state: UInt64 = 0x9E3779B97F4A7C15
        let bytes = (0..<(1 << 20) + 77).map { _ -> UInt8 in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        bytes.withUnsafeBytes { all in
            for length in Array(0..<300) + [1023, 4096, 65_537, (1 << 20) + 76] {
                for offset in [0, 1, 7] where offset + length <= all.count {
                    let part = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + length)])
                    #expect(planCRC32(part) == crc32(part), "length \(length) at \(offset)")
                }
            }
            // Continued: the checksum of a whole is the checksum of its second part from the first's.
            let cut = 100_003
            let first = planCRC32(UnsafeRawBufferPointer(rebasing: all[0..<cut]))
            #expect(planCRC32(UnsafeRawBufferPointer(rebasing: all[cut...]), first) == crc32(all))
        }
    }

    @Test func flippedByteInEachSectionNamesTheSection() throws {
        let dir = TemporaryDirectory()
        let path = try Self.makePlan(dir)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let table = Self.u64(bytes, 24), count = Self.u32(bytes, 32)
        var names: [String] = []
        for i in 0..<count {
            let e = table + 32 * i
            let kind = PlanFormat.SectionKind(rawValue: UInt32(Self.u32(bytes, e)))!
            let (offset, size) = (Self.u64(bytes, e + 8), Self.u64(bytes, e + 16))
            for position in [offset, offset + size / 2, offset + size - 1] {
                let damaged = dir.file("flip-\(kind.name)-\(position).plan")
                try copyFile(path, damaged) { $0[position] ^= 0x10 }
                let message = Self.refusal(damaged)
                #expect(message?.contains("\(kind.name) section checksum mismatch") == true, "\(kind.name) at \(position): \(message ?? "opened")")
            }
            names.append(kind.name)
        }
        #expect(names.sorted() == ["program", "summary", "weights"])
        // The table, the header and the padding are checked too.
        for (position, expected) in [(table + 5, "section table checksum"), (table + 12, "section table checksum"), (12, "header checksum"),
                                     (44, "header checksum"), (Self.u64(bytes, table + 72) - 1, "padding")] {
            let damaged = dir.file("flip-\(position).plan")
            try copyFile(path, damaged) { $0[position] ^= 0x01 }
            let message = Self.refusal(damaged)
            #expect(message?.contains(expected) == true, "byte \(position): \(message ?? "opened")")
        }
    }

    @Test func truncatedPlansAreRefused() throws {
        let dir = TemporaryDirectory()
        let path = try Self.makePlan(dir)
        let size = try Data(contentsOf: URL(fileURLWithPath: path)).count
        for length in [0, 7, 63, 64, 4096, size / 2, size - 1] {
            let cut = dir.file("cut-\(length).plan")
            try copyFile(path, cut, truncatedTo: length)
            let message = Self.refusal(cut)
            #expect(message != nil, "\(length) bytes opened")
            #expect(message?.contains("truncated") == true || message?.contains("not a diffbir plan") == true, "\(length): \(message ?? "")")
        }
    }

    /// `path` with `old` replaced by `new` (as long) in its program section, every checksum recomputed:
    /// what a tool's bug or a hand edit makes.
    static func editProgram(_ path: String, _ old: String, _ new: String) throws -> String {
        var b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        func put(_ v: UInt32, _ o: Int) { for k in 0..<4 { b[o + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
        let table = u64(b, 24), count = u32(b, 32)
        for i in 0..<count where u32(b, table + 32 * i) == Int(PlanFormat.SectionKind.program.rawValue) {
            let start = u64(b, table + 32 * i + 8), size = u64(b, table + 32 * i + 16)
            var text = String(decoding: b[start..<(start + size)], as: UTF8.self)
            guard let r = text.range(of: old) else { throw PlanError(path, "'\(old)' is not in the program") }
            text.replaceSubrange(r, with: new)
            b.replaceSubrange(start..<(start + size), with: Array(text.utf8))
            put(b[start..<(start + size)].withUnsafeBytes { planCRC32($0) }, table + 32 * i + 24)
        }
        put(b[table..<(table + 32 * count)].withUnsafeBytes { planCRC32($0) }, 36)
        put(b[0..<60].withUnsafeBytes { planCRC32($0) }, 60)
        let edited = path + ".edited"
        try Data(b).write(to: URL(fileURLWithPath: edited))
        return edited
    }

    /// The plan stores its vocabularies typed: an activation, an elementwise op, a weight format or an
    /// activation precision this build does not know refuses the plan when it is opened.
    @Test(arguments: [
        ("\"leaky_relu\"", "\"leaky_reLX\""),
        ("\"format\":\"f32\"", "\"format\":\"f31\""),
        ("\"activations\":\"f32\"", "\"activations\":\"f99\""),
        ("\"unary\":{\"_0\":\"", "\"unary\":{\"_0\":\"X"),
    ])
    func unknownVocabularyIsRefusedAtOpen(old: String, new: String) throws {
        let dir = TemporaryDirectory()
        let good = try Self.makePlan(dir)
        #expect(Self.refusal(good) == nil)
        guard let edited = try? Self.editProgram(good, old, new) else {
            // (A plan of this fixture without that field: nothing to edit.)
            #expect(!old.contains("leaky") && !old.contains("format") && !old.contains("activations"), "\(old) not in the plan")
            return
        }
        let message = try #require(Self.refusal(edited), "\(new) was accepted")
        #expect(message.contains("program"), "\(message)")
    }

    /// DiffBIR's plan metadata is typed: it reads back equal, and a value this build does not know
    /// (a sampler, a stage-1 network) or a tile that is not a number refuses the plan at open.
    @Test func diffbirMetadataIsTypedAndChecked() throws {
        let meta = DiffBIRPlanMetadata(version: "v2.1", task: .sr, cleaner: .swinir, parameterization: .v, zeroTerminalSNR: true, tile: 512,
                                       latentFactor: 8, positivePrompt: "a photo", negativePrompt: nil,
                                       defaults: .init(sampler: .edmDpmpp3mSDE, steps: 10, cfg: 6, upscale: 4))
        #expect(try DiffBIRPlanMetadata(table: meta.table) == meta)
        let f = try FixtureNetwork.load(1)
        let dir = TemporaryDirectory()
        for (key, value, phrase) in [(nil, nil, nil), ("diffbir.default.sampler", "euler", "not one this build knows"),
                                     ("diffbir.cleaner", "hat", "not one this build knows"), ("diffbir.tile", "x", "not a positive integer"),
                                     ("diffbir.default.cfg", "nan", "finite")] as [(String?, String?, String?)] {
            var table = meta.table
            if let key { table[key] = value }
            let compiled = try Compiler.compile([("bsrnet", f.graph)], options: CompileOptions(), metadata: table)
            let path = dir.file("\(key ?? "good").plan")
            try PlanWriter.write(path: path, program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: false)
            if let phrase {
                let message = try #require(Self.refusal(path), "\(key!)=\(value!) was accepted")
                #expect(message.contains(key!) && message.contains(phrase), "\(message)")
            } else {
                #expect(try PlanFile(path: path).program.diffbir() == meta)
            }
        }
    }

    @Test func otherFormatVersionNamesTheReadableOnes() throws {
        let dir = TemporaryDirectory()
        let path = try Self.makePlan(dir)
        let other = dir.file("v2.plan")
        try copyFile(path, other) { b in
            b[8] = 2
            // A consistent header of version 2: recompute its checksum.
            let crc = b[0..<60].withUnsafeBytes { planCRC32($0) }
            for k in 0..<4 { b[60 + k] = UInt8((crc >> (8 * UInt32(k))) & 0xff) }
        }
        let message = Self.refusal(other)
        #expect(message?.contains("plan format version 2; this build reads version 1") == true, "\(message ?? "opened")")
        let notPlan = dir.file("x.plan")
        try Data("PK\u{3}\u{4} not a plan at all, just some bytes ......................................".utf8).write(to: URL(fileURLWithPath: notPlan))
        #expect(Self.refusal(notPlan)?.contains("not a diffbir plan") == true)
    }
}

/// Plans whose checksums are right but whose program contradicts itself (an editing tool's bug or a
/// hostile file): refused when opened, naming the instruction, before any kernel could read out of
/// bounds.
@Suite struct PlanVerifierTests {
    /// The bsrnet fixture compiled, with `edit` applied to its program, written with fresh checksums.
    static func edited(_ edit: (inout Program) -> Void) throws -> String? {
        let f = try FixtureNetwork.load(1)
        let compiled = try Compiler.compile([("bsrnet", f.graph)], options: CompileOptions())
        var program = compiled.program
        edit(&program)
        let dir = TemporaryDirectory()
        let path = dir.file("edited.plan")
        try PlanWriter.write(path: path, program: program, summary: compiled.report, weights: compiled.weights, overwrite: false)
        return PlanFileTests.refusal(path)
    }

    /// The first convolution of the first entry point, edited.
    static func editConvolution(_ change: @escaping (inout Conv2DKernel, inout Instruction) -> Void) -> (inout Program) -> Void {
        { program in
            let e = 0
            guard let k = program.entryPoints[e].instructions.firstIndex(where: { if case .conv2d = $0.kernel { return true } else { return false } }),
                  case .conv2d(var c) = program.entryPoints[e].instructions[k].kernel else { return }
            var ins = program.entryPoints[e].instructions[k]
            change(&c, &ins)
            ins.kernel = .conv2d(c)
            program.entryPoints[e].instructions[k] = ins
        }
    }

    /// `compile --prepack`: the bsrnet fixture's weights also stored packed for this processor's
    /// kernels are used in place (no weight packed at the run) with the same results to the bit as
    /// the plan without them, and inconsistent packed forms are refused before anything runs.
    @Test func packedFormsAreUsedInPlaceAndChecked() throws {
        let f = try FixtureNetwork.load(1)
        let dir = TemporaryDirectory()
        func run(_ path: String) throws -> (Executor, [Tensor]) {
            let executor = Executor(plan: try PlanFile(path: path), threads: 2)
            return (executor, try executor.run(entry: "bsrnet", inputs: f.inputs).outputs.map(\.tensor))
        }
        func write(_ edit: (inout Program) -> Void) throws -> String {
            var compiled = try Compiler.compile([("bsrnet", f.graph)], options: CompileOptions())
            let summary = Prepacking.add(to: &compiled, gemm: Gemm(), threads: 2)
            #expect(summary.forms > 0 && summary.bytes > 0)
            edit(&compiled.program)
            let path = dir.file("packed-\(Int.random(in: 0..<1_000_000)).plan")
            try PlanWriter.write(path: path, program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: false)
            return path
        }
        let plainPath = dir.file("plain.plan")
        let plain = try Compiler.compile([("bsrnet", f.graph)], options: CompileOptions())
        try PlanWriter.write(path: plainPath, program: plain.program, summary: plain.report, weights: plain.weights, overwrite: false)
        let (plainRun, expected) = try run(plainPath)
        let packedPath = try write { _ in }
        let (packedRun, outputs) = try run(packedPath)
        #expect(plainRun.packedFromPlan == 0 && plainRun.packedHere > 0)
        #expect(packedRun.packedFromPlan == plainRun.packedHere && packedRun.packedHere == 0)
        #expect(packedRun.packedBytes == 0, "borrowed panels are not resident copies")
        #expect(outputs.map { Array($0.bytes) } == expected.map { Array($0.bytes) })
        // Streaming the weights (a memory budget): the panels are still read in place, then released.
        var streaming = RunOptions()
        streaming.streamWeights = true
        let fresh = Executor(plan: try PlanFile(path: packedPath), threads: 2)
        let streamed = try fresh.run(entry: "bsrnet", inputs: f.inputs, options: streaming).outputs.map(\.tensor)
        #expect(streamed.map { Array($0.bytes) } == expected.map { Array($0.bytes) })
        #expect(fresh.packedFromPlan == plainRun.packedHere && fresh.packedHere == 0)

        for (edit, phrase) in [("width", "do not fit"), ("extent", "do not fit"), ("wider", "holds"), ("storage", "holds"), ("weight", "names no weight"), ("twice", "packed twice")] {
            let path = try write { p in
                guard var form = p.packedWeights.first else { return }
                switch edit {
                case "width": form.width = 0
                case "extent": form.extent += 1
                case "wider": form.width += 1
                case "storage": form.storage = p.weights.indices.dropFirst().filter { $0 != form.weight }.min { p.weights[$0].byteCount < p.weights[$1].byteCount } ?? 0
                case "weight": form.weight = 100_000
                case "twice": p.packedWeights.append(form)
                default: break
                }
                if edit != "twice" { p.packedWeights[0] = form }
            }
            let message = try #require(PlanFileTests.refusal(path), "\(edit): accepted")
            #expect(message.contains(phrase), "\(edit): \(message)")
        }
    }

    /// The same for an int8 × int8 plan (`--activations int8`): its int8 weights stored as the int8
    /// kernels' panels (`int8-taps`, `int8-columns`) and read in place, the results the same to the bit.
    @Test func int8PanelsAreUsedInPlace() throws {
        let f = try FixtureNetwork.load(1)
        let dir = TemporaryDirectory()
        var options = CompileOptions()
        options.quantization = QuantizationPolicy(defaultFormat: .int8Channel)
        options.int8Activations = true
        func write(_ name: String, prepack: Bool) throws -> String {
            var compiled = try Compiler.compile([("bsrnet", f.graph)], options: options)
            if prepack {
                _ = Prepacking.add(to: &compiled, gemm: Gemm(), threads: 2)
                #expect(compiled.program.packedWeights.contains { $0.layout == .int8Taps })
            }
            let path = dir.file(name)
            try PlanWriter.write(path: path, program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: false)
            return path
        }
        let plain = Executor(plan: try PlanFile(path: try write("plain.plan", prepack: false)), threads: 2)
        let packed = Executor(plan: try PlanFile(path: try write("packed.plan", prepack: true)), threads: 2)
        let expected = try plain.run(entry: "bsrnet", inputs: f.inputs).outputs.map { Array($0.tensor.bytes) }
        let got = try packed.run(entry: "bsrnet", inputs: f.inputs).outputs.map { Array($0.tensor.bytes) }
        #expect(got == expected)
        #expect(plain.packedHere > 0 && packed.packedFromPlan == plain.packedHere && packed.packedHere == 0,
                "\(plain.packedHere) \(packed.packedFromPlan) \(packed.packedHere)")
        #expect(packed.packedBytes == 0)
    }

    @Test func theCompiledPlanVerifies() throws {
        #expect(try Self.edited { _ in } == nil)
    }

    @Test(arguments: [
        ("groups", "groups 2 do not divide"),
        ("groups0", "groups 0"),
        ("stride0", "strides [0, 1]"),
        ("dilation", "dilations [-1, 1]"),
        ("missing", "names operand"),
        ("output", "the convolution gives"),
        ("hugeDims", "lies outside the arena"),
        ("arena", "lies outside the arena"),
        ("weight", "names no weight"),
        ("overlap", "partly overlaps"),
    ])
    func inconsistentConvolutionsAreRefused(edit: String, phrase: String) throws {
        let message = try Self.edited(Self.editConvolution { c, ins in
            switch edit {
            case "groups": c.groups = 2
            case "groups0": c.groups = 0
            case "stride0": c.strides = [0, 1]
            case "dilation": c.dilations = [-1, 1]
            case "missing": c.epilogue.append(.addResidual(operand: 40))
            case "output":
                if case .arena(let o, let d, var s) = ins.results[0] { s.dims[3] += 1; ins.results[0] = .arena(offset: o, dtype: d, shape: s) }
            case "hugeDims":
                if case .arena(let o, let d, _) = ins.operands[0] { ins.operands[0] = .arena(offset: o, dtype: d, shape: Shape([1 << 40, 1 << 40, 1 << 40, 2])) }
            case "arena":
                if case .arena(_, let d, let s) = ins.operands[0] { ins.operands[0] = .arena(offset: Int.max - 8, dtype: d, shape: s) }
            case "weight": ins.operands[1] = .weight(100_000)
            case "overlap":
                // The input 64 bytes beside the output, so that they share all but 64 bytes.
                if case .arena(let o, let d, let s) = ins.results[0] { ins.operands[0] = .arena(offset: o >= 64 ? o - 64 : o + 64, dtype: d, shape: s) }
            default: break
            }
        })
        let text = try #require(message, "\(edit): the edited plan was accepted")
        #expect(text.contains(phrase), "\(edit): \(text)")
        #expect(text.contains("instruction"), "\(edit): \(text)")
    }
}
