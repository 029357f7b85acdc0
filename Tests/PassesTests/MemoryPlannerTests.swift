import Foundation
import Executor
import IR
import Passes
import Plan
import Tensors
import Testing

@Suite struct MemoryPlannerTests {
    /// Random lifetimes: the plan passes the checker, never exceeds the naive sum, and reuses memory.
    @Test func randomSchedulesArePlannedWithoutOverlap() throws {
        var s: UInt64 = 12345
        func next(_ n: Int) -> Int {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Int((s >> 33) % UInt64(n))
        }
        for _ in 0..<50 {
            let steps = 5 + next(60)
            let buffers = (0..<(3 + next(80))).map { _ -> MemoryPlanner.Buffer in
                let start = next(steps) - 1
                return MemoryPlanner.Buffer(size: 1 + next(100_000), start: start, end: start + 1 + next(8))
            }
            let (offsets, arena) = MemoryPlanner.plan(buffers)
            try MemoryPlanner.check(buffers, offsets: offsets, arenaBytes: arena)
            let naive = buffers.reduce(0) { $0 + ($1.size + 63) / 64 * 64 }
            #expect(arena <= naive)
            // At least the peak of simultaneously live bytes.
            let peak = (-1...steps + 8).map { t in buffers.filter { $0.start <= t && t <= $0.end }.reduce(0) { $0 + $1.size } }.max()!
            #expect(arena >= peak)
        }
    }

    /// The checker is not a rubber stamp: it finds overlaps and buffers outside the arena.
    @Test func checkerFindsOverlaps() throws {
        let buffers = [MemoryPlanner.Buffer(size: 100, start: 0, end: 3), MemoryPlanner.Buffer(size: 100, start: 2, end: 5),
                       MemoryPlanner.Buffer(size: 100, start: 6, end: 7)]
        // 0 and 2 are never live together: sharing is fine.
        try MemoryPlanner.check(buffers, offsets: [0, 128, 0], arenaBytes: 256)
        #expect(throws: MemoryPlanner.Overlap.self) { try MemoryPlanner.check(buffers, offsets: [0, 64, 0], arenaBytes: 256) }
        #expect(throws: MemoryPlanner.Overlap.self) { try MemoryPlanner.check(buffers, offsets: [64, 0, 0], arenaBytes: 256) }
        #expect(throws: MemoryPlanner.Misplaced.self) { try MemoryPlanner.check(buffers, offsets: [0, 128, 200], arenaBytes: 256) }
        #expect(throws: MemoryPlanner.Misplaced.self) { try MemoryPlanner.check(buffers, offsets: [0, 130, 0], arenaBytes: 512) }
    }

    /// In place only where legal: an elementwise op writes over its operand when that operand dies
    /// there, never over a graph input or an output, and never when the operand is read later.
    @Test func inPlaceOnlyWhereLegal() throws {
        var g = Graph()
        let x = g.addInput("x", TensorType(.f32, [64]))
        let a = try g.add1(.unary(.exp), [x], name: "a")        // x is an input: not over x
        let b = try g.add1(.unary(.neg), [a], name: "b")        // a dies here: b over a
        let c = try g.add1(.unary(.abs), [b], name: "c")        // b read again below: not over b
        let d = try g.add1(.binary(.add), [b, c], name: "d")    // b and c die here: over one of them
        g.setOutput("y", d)
        g.setOutput("a_too", try g.add1(.unary(.sqrt), [d], name: "e")) // d is an output: not over d
        var lowering = Lowering()
        try lowering.add(entry: "main", graph: g)
        let e = lowering.entries[0]
        func offset(_ name: String) -> Int { e.instructions.first { $0.name == name }!.results[0].arenaOffset! }
        #expect(offset("a") != e.inputs[0].offset)
        #expect(offset("b") == offset("a"))
        #expect(offset("c") != offset("b"))
        #expect([offset("b"), offset("c")].contains(offset("d")))
        #expect(offset("e") != offset("d"))
        #expect(lowering.reports[0].inPlace == 2)

    }

    /// A split along an axis with nothing outside it is no instruction: its parts are views of its
    /// input's buffer at their byte offsets (64-byte aligned), the buffer lives as long as any part,
    /// and the interpreted plan gives the graph's numbers. A split that is not contiguous, or whose
    /// parts would start unaligned, stays an instruction.
    /// The winograd pass marks 3×3 stride-1 convolutions from 32×32 outputs, or 16×16 with bf16
    /// weights; not smaller, strided or narrower ones.
    @Test func winogradThresholds() throws {
        var g = Graph()
        func conv(_ name: String, _ size: Int, channels: Int = 128, stride: Int = 1) throws {
            let x = g.addInput(name + ".x", TensorType(.f32, Shape([1, channels, size, size])))
            let w = g.addConstant(Tensor([Float](repeating: 0.01, count: channels * channels * 9), shape: Shape([channels, channels, 3, 3])), name: name + ".w")
            g.setOutput(name, try g.add1(.conv(Conv2D(strides: [stride, stride], pads: [1, 1, 1, 1])), [x, w], name: name))
        }
        try conv("c32", 32)
        try conv("c16", 16)
        try conv("c8", 8)
        try conv("narrow", 32, channels: 64)
        try conv("strided", 64, stride: 2)
        func marked(_ format: WeightFormat, int8Activations: Bool = false) throws -> Set<String> {
            var lowering = Lowering()
            try lowering.add(entry: "main", graph: g)
            if format != .f32 { _ = lowering.quantizeGemmWeights(QuantizationPolicy(defaultFormat: format)) }
            lowering.markWinograd(minimumChannels: 128, minimumPlane: 32 * 32, minimumPlaneBF16: 16 * 16, minimumPlaneQuantized: 16 * 16,
                                  int8Activations: int8Activations)
            return Set(lowering.entries[0].instructions.compactMap { i in
                if case .conv2d(let c) = i.kernel, c.winograd == true { return i.name }
                return nil
            })
        }
        #expect(try marked(.f32) == ["c32"])
        #expect(try marked(.bf16) == ["c32", "c16"])
        // Quantised weights (transformed as they are used: no memory for transformed kernels) from
        // 16×16; not when their products are int8 × int8.
        #expect(try marked(.int8Block16) == ["c32", "c16"])
        #expect(try marked(.f16) == ["c32", "c16"])
        #expect(try marked(.int8Channel, int8Activations: true) == [])
    }

    /// f32 weights run F(4,3) from 64×64 outputs, and from 32×32 when their 36 transformed kernels
    /// fit 16 MB; F(2,3) otherwise (640 channels at 32×32: 59 MB of transformed kernels).
    @Test func winogradTileForF32Weights() throws {
        var g = Graph()
        func conv(_ name: String, _ size: Int, channels: Int) throws {
            let x = g.addInput(name + ".x", TensorType(.f32, Shape([1, channels, size, size])))
            let w = g.addConstant(Tensor([Float](repeating: 0.01, count: channels * channels * 9), shape: Shape([channels, channels, 3, 3])), name: name + ".w")
            g.setOutput(name, try g.add1(.conv(Conv2D(pads: [1, 1, 1, 1])), [x, w], name: name))
        }
        try conv("wide64", 64, channels: 640)
        try conv("wide32", 32, channels: 640)
        try conv("small32", 32, channels: 64)
        try conv("small16", 16, channels: 64)
        var lowering = Lowering()
        try lowering.add(entry: "main", graph: g)
        lowering.markWinograd(minimumChannels: 32, minimumPlane: 32 * 32, f32Tile4Plane: 64 * 64, f32Tile4SmallPlane: 32 * 32)
        var tiles: [String: Int] = [:]
        for i in lowering.entries[0].instructions {
            if case .conv2d(let c) = i.kernel, c.winograd == true { tiles[i.name] = c.winogradTile ?? 2 }
        }
        #expect(tiles == ["wide64": 4, "wide32": 2, "small32": 4])
        // Quantised weights: F(4,3) from 64×64 outputs (transformed once a call), F(2,3) below, from 16×16.
        var quantised = Lowering()
        try quantised.add(entry: "main", graph: g)
        _ = quantised.quantizeGemmWeights(QuantizationPolicy(defaultFormat: .int8Channel))
        quantised.markWinograd(minimumChannels: 32, minimumPlane: 32 * 32, minimumPlaneQuantized: 16 * 16, f32Tile4Plane: 64 * 64, f32Tile4SmallPlane: 32 * 32)
        tiles = [:]
        for i in quantised.entries[0].instructions {
            if case .conv2d(let c) = i.kernel, c.winograd == true { tiles[i.name] = c.winogradTile ?? 2 }
        }
        #expect(tiles == ["wide64": 4, "wide32": 2, "small32": 2, "small16": 2])
    }

    /// `CompileOptions.f32WinogradMinimumPlane` (16×16 where `compile` runs without AVX-512) brings
    /// f32 convolutions of 16×16 outputs to F(2,3); the pass `winograd-16` switched off keeps 32×32.
    @Test func f32WinogradFromSixteenBySixteen() throws {
        var g = Graph()
        for (name, size) in [("c32", 32), ("c16", 16), ("c8", 8)] {
            let x = g.addInput(name + ".x", TensorType(.f32, Shape([1, 32, size, size])))
            let w = g.addConstant(Tensor((0..<(32 * 32 * 9)).map { Float(($0 * 7) % 13) / 60 - 0.1 }, shape: Shape([32, 32, 3, 3])), name: name + ".w")
            g.setOutput(name, try g.add1(.conv(Conv2D(pads: [1, 1, 1, 1])), [x, w], name: name))
        }
        func marked(_ options: CompileOptions) throws -> Set<String> {
            let program = try Compiler.compile([("main", g)], options: options).program
            var names = Set<String>()
            for e in program.entryPoints {
                for i in e.instructions { if case .conv2d(let c) = i.kernel, c.winograd == true { names.insert(i.name) } }
            }
            return names
        }
        #expect(try marked(CompileOptions()) == ["c32"])
        var small = CompileOptions()
        small.f32WinogradMinimumPlane = 16 * 16
        #expect(try marked(small) == ["c32", "c16"])
        small.disabled = ["winograd-16"]
        #expect(try marked(small) == ["c32"])
    }

    @Test func contiguousSplitIsAView() throws {
        var g = Graph()
        let x = g.addInput("x", TensorType(.f32, [3, 4, 16]))
        let y = try g.add1(.unary(.neg), [x], name: "y")
        let parts = try g.add(.split(axis: 0, sizes: [1, 2]), [y], name: "parts")
        let a = try g.add1(.unary(.exp), [parts[0]], name: "a")
        let b = try g.add1(.unary(.abs), [parts[1]], name: "b")
        g.setOutput("a", a)
        g.setOutput("b", b)
        let odd = try g.add(.split(axis: 0, sizes: [1, 2]), [try g.add1(.unary(.neg), [g.addInput("z", TensorType(.f32, [3, 5]))], name: "w")], name: "odd")
        g.setOutput("c", odd[1])
        var lowering = Lowering()
        try lowering.add(entry: "main", graph: g)
        let e = lowering.entries[0]
        func instruction(_ name: String) -> Instruction? { e.instructions.first { $0.name == name } }
        #expect(instruction("parts") == nil)
        #expect(instruction("odd") != nil)  // 5 floats a row: the second part would start at byte 20
        let base = instruction("y")!.results[0].arenaOffset!
        #expect(instruction("a")!.operands[0].arenaOffset == base)
        #expect(instruction("b")!.operands[0].arenaOffset == base + 4 * 16 * 4)
        // y's buffer lives until the last part is read: neither result is placed inside it (b would
        // not be written over its own part either, which starts inside the buffer).
        let buffer = base..<(base + 3 * 64 * 4)
        for name in ["a", "b"] {
            let o = instruction(name)!.results[0].arenaOffset!
            #expect(!buffer.overlaps(o..<(o + (name == "a" ? 64 : 128) * 4)), "\(name) at \(o) inside y's buffer \(buffer)")
        }
        // The plan's memory check passed inside `add` (it throws on overlap); the parts' numbers are
        // checked on SwinIR's plan, whose q, k, v are such parts (PlanExecutionTests).
    }

    /// A dense block (RRDBNet's): `cat(x, x1)`, `cat(x, x1, x2)`, ... with each part written by its
    /// producer at its place in one buffer: no concatenation is executed, each concatenation reads
    /// the prefix of that buffer, and the numbers are the interpreter's. Concatenations that cannot
    /// share a buffer (two different parts at the same place; a part given twice; a graph input)
    /// stay copies.
    @Test func denseConcatenationsAreViews() throws {
        var g = Graph()
        let input = g.addInput("x", TensorType(.f32, [1, 4, 8, 8]))
        func conv(_ x: ValueID, _ out: Int, _ name: String) throws -> ValueID {
            let c = g.type(x).dims[1]
            let w = g.addConstant(Tensor((0..<(out * c * 9)).map { Float(($0 * 37) % 19) / 50 - 0.18 }, shape: [out, c, 3, 3]), name: name + ".w")
            return try g.add1(.conv(Conv2D(pads: [1, 1, 1, 1])), [x, w], name: name)
        }
        let x = try g.add1(.unary(.neg), [input], name: "x0")
        let x1 = try conv(x, 4, "c1")
        let cat1 = try g.add1(.concat(axis: 1), [x, x1], name: "cat1")
        let x2 = try conv(cat1, 4, "c2")
        let cat2 = try g.add1(.concat(axis: 1), [x, x1, x2], name: "cat2")
        let y = try conv(cat2, 4, "c3")
        // Not views: a different part where x1 lies in cat1; the same value twice; a graph input.
        let other = try g.add1(.concat(axis: 1), [x, x2], name: "other")
        let twice = try g.add1(.concat(axis: 1), [y, y], name: "twice")
        let withInput = try g.add1(.concat(axis: 1), [input, y], name: "with_input")
        g.setOutput("y", try g.add1(.binary(.add), [y, x], name: "out"))
        g.setOutput("other", other)
        g.setOutput("twice", twice)
        g.setOutput("with_input", withInput)
        var lowering = Lowering()
        try lowering.add(entry: "main", graph: g)
        let e = lowering.entries[0]
        func instruction(_ name: String) -> Instruction? { e.instructions.first { $0.name == name } }
        #expect(instruction("cat1") == nil && instruction("cat2") == nil)
        #expect(instruction("other") != nil && instruction("twice") != nil && instruction("with_input") != nil)
        let base = instruction("x0")!.results[0].arenaOffset!
        #expect(instruction("c1")!.results[0].arenaOffset == base + 4 * 64 * 4)
        #expect(instruction("c2")!.operands[0].arenaOffset == base)
        #expect(instruction("c2")!.results[0].arenaOffset == base + 8 * 64 * 4)
        #expect(instruction("c3")!.operands[0].arenaOffset == base)
        // The plan runs as the graph does.
        let compiled = try Compiler.compile([("main", g)], options: CompileOptions())
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dense-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try PlanWriter.write(path: dir + "/p.plan", program: compiled.program, summary: compiled.report, weights: compiled.weights, overwrite: true)
        let feed = ["x": Tensor((0..<256).map { Float(($0 * 13) % 29) / 10 - 1.4 }, shape: [1, 4, 8, 8])]
        let want = try Interpreter.run(g, inputs: feed)
        let got = try Executor(plan: try PlanFile(path: dir + "/p.plan"), threads: 2).run(entry: "main", inputs: feed)
        for o in got.outputs {
            let a = o.tensor.floats(), b = want[o.name]!.floats()
            let err = zip(a, b).map { abs($0 - $1) }.max()!
            #expect(err <= 1e-4 * max(b.map(abs).max()!, 1), "\(o.name): \(err)")
        }
    }
}
