import Foundation
import Kernels
import Plan
import ReferenceKernels
import Tensors

/// Why a run stopped.
public struct ExecutorError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Options of one run of an entry point.
public struct RunOptions: Sendable {
    /// Re-run every instruction with the reference kernels on the same operands and compare.
    public var validate = false
    /// Relative error (max |fast − reference| / max |reference|) above which `--validate` reports a divergence.
    public var tolerance = 1e-4
    /// Time every instruction and sum by kernel kind.
    public var profile = false
    /// How many of the slowest instructions the profile lists.
    public var profileInstructions = 12
    /// Called after each instruction with (done, total) for progress output.
    public var progress: (@Sendable (Int, Int) -> Void)?
    /// Drop each weight's pages from the resident set after the instruction that used it (they are
    /// read again from the page cache next time): memory stays near the arena plus the largest
    /// weight, for budgets smaller than the weights.
    public var streamWeights = false
    /// Watches the run instruction by instruction (the compiler's calibration and error
    /// compensation, in `Quantize`); the executor itself keeps no such state.
    public var observer: (any RunObserver)?
    public init() {}
}

/// Sees each instruction of a run before and after it runs, with its operands and results in
/// place (`Executor.view`, `referenceOperand`): how tools outside the runtime measure a plan
/// without the executor knowing what they measure.
public protocol RunObserver: AnyObject, Sendable {
    func willRun(_ index: Int, _ instruction: Instruction, entry: String, executor: Executor) throws
    func didRun(_ index: Int, _ instruction: Instruction, entry: String, executor: Executor) throws
}

extension RunObserver {
    public func willRun(_ index: Int, _ instruction: Instruction, entry: String, executor: Executor) throws {}
    public func didRun(_ index: Int, _ instruction: Instruction, entry: String, executor: Executor) throws {}
}

/// Time spent per kernel kind.
/// Records every instruction an executor runs (entry, index, kernel, shapes, start and duration)
/// for a Chrome / Perfetto trace (`chrome://tracing`, ui.perfetto.dev). Set on `Executor.trace`;
/// runs are sequential, so one recorder serves one executor.
public final class TraceRecorder: @unchecked Sendable {
    public struct Event: Codable, Sendable {
        public var name: String
        public var cat: String
        public var ph = "X"
        /// Microseconds since the recorder was made.
        public var ts: Double
        public var dur: Double
        public var pid = 1
        public var tid = 1
        public var args: [String: String]
    }
    let origin = DispatchTime.now().uptimeNanoseconds
    public private(set) var events: [Event] = []
    public init() {}

    func record(entry: String, index: Int, instruction: Instruction, shapes: String, start: UInt64, end: UInt64) {
        events.append(Event(name: instruction.name.isEmpty ? instruction.kernel.kindName : instruction.name, cat: instruction.kernel.kindName,
                            ts: Double(start &- origin) / 1000, dur: Double(end &- start) / 1000,
                            args: ["entry": entry, "instruction": String(index), "shapes": shapes]))
    }

    /// The trace as Chrome's JSON object format.
    public func chromeJSON() throws -> Data {
        struct File: Codable { var traceEvents: [Event]; var displayTimeUnit = "ms" }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(File(traceEvents: events))
    }
}

public struct Profile: Sendable {
    public struct Row: Sendable {
        public var kind: String
        public var count: Int
        public var seconds: Double
    }
    public var rows: [Row]
    public var totalSeconds: Double
    /// The slowest instructions: name, kind, operand shapes, seconds.
    public var slowest: [(name: String, kind: String, shapes: String, seconds: Double)] = []

    public var formatted: String {
        func pad(_ s: String, _ n: Int, left: Bool = false) -> String {
            s.count >= n ? s : (left ? String(repeating: " ", count: n - s.count) + s : s + String(repeating: " ", count: n - s.count))
        }
        var lines = [pad("kind", 22) + pad("count", 7, left: true) + pad("ms", 11, left: true) + pad("share", 8, left: true)]
        for r in rows.sorted(by: { $0.seconds > $1.seconds }) {
            lines.append(pad(r.kind, 22) + pad("\(r.count)", 7, left: true) + pad(String(format: "%.2f", r.seconds * 1000), 11, left: true)
                         + pad(String(format: "%.1f%%", totalSeconds > 0 ? 100 * r.seconds / totalSeconds : 0), 8, left: true))
        }
        lines.append(pad("total", 22) + pad("\(rows.reduce(0) { $0 + $1.count })", 7, left: true) + pad(String(format: "%.2f", totalSeconds * 1000), 11, left: true))
        if !slowest.isEmpty {
            lines.append("slowest instructions:")
            for s in slowest {
                lines.append(pad(String(format: "%.2f ms", s.seconds * 1000), 12, left: true) + "  " + s.kind + "  " + s.shapes + "  " + s.name)
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// What `--validate` found.
public struct Validation: Sendable {
    public struct Divergence: Sendable {
        public var index: Int
        public var name: String
        public var kind: String
        public var relativeError: Double
    }
    /// The first instruction whose result differs from the reference by more than the tolerance.
    public var first: Divergence?
    /// The largest relative error of each kernel kind.
    public var worstByKind: [String: Double]
    public var instructions: Int
}

/// The result of one run.
public struct RunResult: Sendable {
    public var outputs: [(name: String, tensor: Tensor)]
    public var seconds: Double
    public var profile: Profile?
    public var validation: Validation?
    /// Instructions that ran on the reference kernels (no fast kernel for their dtype or form).
    public var fallbacks: [String: Int]
}

/// Runs the entry points of a plan: one preallocated arena, weights used in place from the mapping,
/// each instruction dispatched to its fast kernel (or its reference twin when there is none).
public final class Executor: @unchecked Sendable {
    public let plan: PlanFile
    public let threads: Int
    private let arena: UnsafeMutableRawPointer
    public let arenaBytes: Int
    private let weightBase: UnsafeMutableRawPointer
    /// The GEMM kernels in use (`ISA.best` unless forced).
    public let gemm: Gemm
    /// When set, every instruction run is recorded (`run --trace`, `restore --trace`).
    public var trace: TraceRecorder?
    /// Weights packed for the GEMM micro-kernels, made when an instruction first uses them (A panels
    /// for convolutions, B panels for linear layers); their mapped pages are released after packing.
    private var packed: [Int: PackedMatrix] = [:]
    /// The plan's packed forms (`compile --prepack`) by the weight they pack.
    private let prepacked: [Int: [PackedWeight]]
    /// How many weights were found packed in the plan, and how many had to be packed here (f32 and
    /// bf16 weights, and the int8 × int8 kernels' int8 ones; other quantised weights are expanded as used).
    public private(set) var packedFromPlan = 0, packedHere = 0
    /// The bytes of the file the packed forms span (mapped in huge pages until a run streams).
    private var packedSpan: Range<Int>?

    /// Linear weights packed for int8 × int8 products (plans compiled with `--activations int8`).
    private var int8Packed: [Int: Int8WeightPanels] = [:]
    private var int8Conv: [Int: Int8ConvWeights] = [:]
    /// Whether the plan runs its int8-weight linear layers on int8 activations.
    private var int8Activations: Bool { plan.program.activations == .int8 }

    /// Drops the packed forms of the weights that entry point `entry` does not use, and the kernels'
    /// idle scratch (memory budgets: the pipeline runs one network at a time).
    public func releasePacked(keepingWeightsOf entry: String) {
        guard let e = plan.program.entry(entry) else { return }
        var used = Set<Int>()
        for ins in e.instructions { for o in ins.operands { if case .weight(let i) = o { used.insert(i) } } }
        packed = packed.filter { used.contains($0.key) }
        int8Packed = int8Packed.filter { used.contains($0.key) }
        int8Conv = int8Conv.filter { used.contains($0.key) }
        // The plan's packed forms of the others leave the resident set too, as the packed copies do.
        for (i, forms) in prepacked where !used.contains(i) {
            for form in forms { releaseMapped(form.storage) }
        }
        // (The scratch was sized by the previous entry's shapes.)
        ScratchPool.shared.trim()
    }

    /// Bytes of weights packed so far (resident in place of their mapped pages).
    public var packedBytes: Int { packed.values.reduce(0) { $0 + ($1.borrowed ? 0 : $1.byteCount) } + int8Packed.values.reduce(0) { $0 + ($1.borrowed ? 0 : $1.byteCount) }
        + int8Conv.values.reduce(0) { $0 + ($1.borrowed ? 0 : $1.byteCount) } }

    public init(plan: PlanFile, threads: Int, isa: ISA = .best) {
        self.plan = plan
        self.threads = max(1, threads)
        gemm = Gemm(isa)
        prepacked = Dictionary(grouping: plan.program.packedWeights, by: \.weight)
        // The packed forms are read at every step and never released (unless a run streams its
        // weights, which forbids huge pages again): let them be mapped in huge pages.
        let storages = plan.program.packedWeights.map { plan.program.weights[$0.storage] }
        if let first = storages.map(\.offset).min(), let end = storages.map({ $0.offset + $0.byteCount }).max() {
            packedSpan = (plan.weightSection.lowerBound + first)..<(plan.weightSection.lowerBound + end)
            plan.file.adviseHugePages(packedSpan!, true)
        } else {
            packedSpan = nil
        }
        arenaBytes = plan.program.arenaBytes
        arena = UnsafeMutableRawPointer.allocate(byteCount: max(arenaBytes, 64), alignment: 64)
        // Weights are never written: the mapping is read-only and the kernels only read operands.
        weightBase = UnsafeMutableRawPointer(mutating: plan.file.bytes.baseAddress! + plan.weightSection.lowerBound)
        // OpenBLAS runs single-threaded inside our tiles (see `Tiling`): results do not depend on the
        // thread count, and its idle threads never spin against ours.
        BLAS.setThreads(1)
    }

    deinit { arena.deallocate() }

    /// An operand or result of an instruction: an arena slot or a weight, in place.
    package func view(_ o: Operand) -> View {
        switch o {
        case .arena(let offset, let dtype, let shape):
            return View(pointer: arena + offset, dtype: dtype, shape: shape)
        case .weight(let i):
            let w = plan.program.weights[i]
            return View(pointer: weightBase + w.offset, dtype: w.dtype, shape: w.shape)
        }
    }

    /// An operand for the reference kernels: a copy, bf16 and f16 weights widened to f32 (exactly),
    /// int8 weights dequantised.
    package func referenceOperand(_ o: Operand) -> Tensor {
        let t = Self.tensor(copying: view(o))
        if case .weight(let i) = o, let s = plan.program.weights[i].scale, t.dtype == .i8 {
            if let c = plan.program.weights[i].blockCodes, let format = plan.program.weights[i].format {
                return Quantization.dequantizeInt8Blocks(t, scales: Self.tensor(copying: view(.weight(s))), codes: Self.tensor(copying: view(.weight(c))),
                                                         format: format)
            }
            return Quantization.dequantizeInt8PerRow(t, scales: Self.tensor(copying: view(.weight(s))))
        }
        return t.dtype == .bf16 || t.dtype == .f16 ? t.converted(to: .f32) : t
    }

    static func tensor(copying v: View) -> Tensor {
        let storage = TensorStorage(byteCount: v.byteCount)
        storage.mutableBytes!.baseAddress!.copyMemory(from: v.pointer, byteCount: v.byteCount)
        return Tensor(dtype: v.dtype, shape: v.shape, storage: storage)
    }

    /// Runs `entry` on `inputs` (by binding name; dtypes and shapes must match the plan).
    public func run(entry name: String, inputs: [String: Tensor], options: RunOptions = RunOptions()) throws -> RunResult {
        guard let entry = plan.program.entry(name) else {
            throw ExecutorError("\(plan.path): no entry point '\(name)' (entry points: \(plan.program.entryPoints.map(\.name).joined(separator: ", ")))")
        }
        for b in entry.inputs {
            guard let t = inputs[b.name] else {
                throw ExecutorError("entry \(name): no tensor for input '\(b.name)' (\(b.dtype)\(b.shape))")
            }
            guard t.shape == b.shape else {
                throw ExecutorError("entry \(name): input '\(b.name)' has shape \(t.shape) but the plan was compiled for \(b.shape): recompile with that size")
            }
            let src = t.dtype == b.dtype ? t : t.converted(to: b.dtype)
            (arena + b.offset).copyMemory(from: src.bytes.baseAddress!, byteCount: src.byteCount)
        }
        if let extra = inputs.keys.first(where: { k in !entry.inputs.contains { $0.name == k } }) {
            throw ExecutorError("entry \(name): the plan has no input '\(extra)' (inputs: \(entry.inputs.map(\.name).joined(separator: ", ")))")
        }
        if options.streamWeights, let span = packedSpan {
            // Releasing a weight must not leave its huge page's other half mapped.
            plan.file.adviseHugePages(span, false)
            plan.file.release(span)
            packedSpan = nil
        }
        var times: [String: (Int, Double)] = [:]
        var each: [(Int, Double)] = []
        var worst: [String: Double] = [:]
        var first: Validation.Divergence?
        var fallbacks: [String: Int] = [:]
        let start = DispatchTime.now().uptimeNanoseconds
        for (index, ins) in entry.instructions.enumerated() {
            let operands = ins.operands.map(view)
            let results = ins.results.map(view)
            let before: [Tensor] = options.validate ? ins.operands.map(referenceOperand) : []
            try options.observer?.willRun(index, ins, entry: name, executor: self)
            let t0 = options.profile || trace != nil ? DispatchTime.now().uptimeNanoseconds : 0
            if !runFast(ins.kernel, operands, results, weights: ins.operands, stream: options.streamWeights) {
                fallbacks[ins.kernel.kindName, default: 0] += 1
                try runReference(ins, ins.operands.map(referenceOperand), results)
            }
            try options.observer?.didRun(index, ins, entry: name, executor: self)
            if let trace {
                let shapes = ins.operands.map { "\(view($0).dims)" }.joined(separator: " ") + " -> " + ins.results.map { "\(view($0).dims)" }.joined(separator: " ")
                trace.record(entry: name, index: index, instruction: ins, shapes: shapes, start: t0, end: DispatchTime.now().uptimeNanoseconds)
            }
            if options.profile {
                let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                times[ins.kernel.kindName, default: (0, 0)].0 += 1
                times[ins.kernel.kindName, default: (0, 0)].1 += dt
                each.append((index, dt))
            }
            if options.validate {
                let expected = try Reference.execute(ins.kernel, before, results: results.map { ($0.dtype, $0.shape) })
                var err = 0.0
                for (r, e) in zip(results, expected) { err = max(err, Self.relativeError(Self.tensor(copying: r), e)) }
                worst[ins.kernel.kindName] = max(worst[ins.kernel.kindName] ?? 0, err)
                if first == nil && !(err <= options.tolerance) {
                    first = Validation.Divergence(index: index, name: ins.name, kind: ins.kernel.kindName, relativeError: err)
                }
            }
            if options.streamWeights {
                for o in ins.operands {
                    if case .weight(let i) = o {
                        for j in [i] + (prepacked[i] ?? []).map(\.storage) { releaseMapped(j) }
                    }
                }
            }
            options.progress?(index + 1, entry.instructions.count)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let outputs = entry.outputs.map { b in (b.name, Self.tensor(copying: View(pointer: arena + b.offset, dtype: b.dtype, shape: b.shape))) }
        var profile = options.profile
            ? Profile(rows: times.map { Profile.Row(kind: $0.key, count: $0.value.0, seconds: $0.value.1) },
                      totalSeconds: times.values.reduce(0) { $0 + $1.1 }) : nil
        profile?.slowest = each.sorted { $0.1 > $1.1 }.prefix(options.profileInstructions).map { (i, dt) in
            let ins = entry.instructions[i]
            let shapes = ins.operands.map { o -> String in
                let v = view(o)
                return "\(v.dims)"
            }.joined(separator: " ") + " -> " + ins.results.map { "\(view($0).dims)" }.joined(separator: " ")
            return (ins.name, ins.kernel.kindName, shapes, dt)
        }
        let validation = options.validate ? Validation(first: first, worstByKind: worst, instructions: entry.instructions.count) : nil
        return RunResult(outputs: outputs, seconds: seconds, profile: profile, validation: validation, fallbacks: fallbacks)
    }

    package static func referenceOperand(copying v: View) -> Tensor {
        let t = tensor(copying: v)
        return t.dtype == .bf16 || t.dtype == .f16 ? t.converted(to: .f32) : t
    }

    /// max |a − b| / max |b| in double precision (NaN when either has a NaN where the other has not).
    public static func relativeError(_ a: Tensor, _ b: Tensor) -> Double {
        let x = a.converted(to: .f64), y = b.converted(to: .f64)
        return x.withElements(as: Double.self) { xa in
            y.withElements(as: Double.self) { yb in
                guard xa.count == yb.count else { return .infinity }
                var diff = 0.0, scale = 0.0
                for i in 0..<xa.count {
                    if xa[i].isNaN != yb[i].isNaN { return .nan }
                    if xa[i].isNaN { continue }
                    if xa[i] == yb[i] { scale = max(scale, Swift.abs(yb[i])); continue }
                    diff = max(diff, Swift.abs(xa[i] - yb[i]))
                    scale = max(scale, Swift.abs(yb[i]))
                }
                return diff == 0 ? 0 : diff / max(scale, 1e-30)
            }
        }
    }

    private func runReference(_ ins: Instruction, _ operands: [Tensor], _ results: [View]) throws {
        let out: [Tensor]
        do {
            out = try Reference.execute(ins.kernel, operands, results: results.map { ($0.dtype, $0.shape) })
        } catch {
            throw ExecutorError("instruction \(ins.name) (\(ins.kernel.kindName)): \(error)")
        }
        for (r, t) in zip(results, out) {
            let c = t.dtype == r.dtype ? t : t.converted(to: r.dtype)
            guard c.byteCount == r.byteCount else {
                throw ExecutorError("instruction \(ins.name) (\(ins.kernel.kindName)): the reference kernel produced \(t.shape), the plan expects \(r.shape)")
            }
            r.pointer.copyMemory(from: c.bytes.baseAddress!, byteCount: c.byteCount)
        }
    }

    /// The storage of the plan's packed form of weight `i` in `layout` and `width`, if it has one
    /// (the verifier proved its geometry is the weight's and that it holds the panels and scales).
    private func prepackedStorage(_ i: Int, _ layout: PanelLayout, width: Int) -> WeightRecord? {
        guard let form = prepacked[i]?.first(where: { $0.layout == layout && $0.width == width }) else { return nil }
        return plan.program.weights[form.storage]
    }

    /// The packed form of operand `position` when it is a weight (nil for activations or OpenBLAS).
    /// `choice` is how an f32 or bf16 weight is packed (`WeightPacking`): the plan's packed form of
    /// that layout and width is used in place when it has one.
    private func packedWeight(_ operands: [Operand], _ position: Int, stream: Bool, choice: WeightPacking.Choice? = nil,
                              make: () -> PackedMatrix?) -> PackedMatrix? {
        guard !gemm.usesBLAS, position < operands.count, case .weight(let i) = operands[position] else { return nil }
        if let p = packed[i] { return p }
        if let choice, let groups = choice.layout.geometry(weight: plan.program.weights[i].shape.dims, groups: choice.groups)?.groups,
           let form = prepacked[i]?.first(where: { $0.layout == choice.layout && $0.width == choice.width && $0.groups == groups }) {
            // (The verifier proved the storage holds this geometry, and that it is the weight's.)
            let storage = plan.program.weights[form.storage]
            let p = PackedMatrix(borrowing: weightBase + storage.offset, extent: form.extent, k: form.k, width: form.width, groups: form.groups)
            packedFromPlan += 1
            if !stream { packed[i] = p }
            return p
        }
        guard let p = make() else { return nil }
        if choice != nil { packedHere += 1 }
        if stream { return p }
        packed[i] = p
        releaseMapped(i)
        return p
    }

    /// The int8 × int8 kernels' panels of weight `i`: kept from an earlier call, the plan's packed form
    /// in `layout` used in place (`borrow`), or packed here (`pack`); kept unless streaming, and then
    /// the weight's own mapped pages leave the resident set.
    private func int8Panels<P: Int8PackedPanels>(_ i: Int, _ kept: ReferenceWritableKeyPath<Executor, [Int: P]>, layout: PanelLayout, width: Int,
                                                 stream: Bool, borrow: (UnsafeRawPointer) -> P, pack: () -> P) -> P {
        if let p = self[keyPath: kept][i] { return p }
        let panels: P
        if let storage = prepackedStorage(i, layout, width: width) {
            panels = borrow(weightBase + storage.offset)
            packedFromPlan += 1
        } else {
            panels = pack()
            packedHere += 1
            if !stream { releaseMapped(i) }
        }
        if !stream { self[keyPath: kept][i] = panels }
        return panels
    }

    /// Lets the mapped pages of weight record `i` leave the resident set (read again from the file if used).
    private func releaseMapped(_ i: Int) {
        let w = plan.program.weights[i]
        let start = plan.weightSection.lowerBound + w.offset
        plan.file.release(start..<(start + w.byteCount))
    }

    /// Every operand and result f32, except operand `weight`, which may also be bf16, f16 or int8.
    private func f32Except(weight: Int, tables: [Int] = [], _ x: [View], _ r: [View]) -> Bool {
        r.allSatisfy { $0.dtype == .f32 } && x.enumerated().allSatisfy {
            $0.element.dtype == .f32 || ($0.offset == weight && [.bf16, .f16, .i8].contains($0.element.dtype))
                || (tables.contains($0.offset) && $0.element.dtype == .i32)
        }
    }

    /// The per-row scales of an int8 weight operand.
    private func scales(of operand: Operand) -> UnsafePointer<Float>? {
        guard case .weight(let i) = operand, let s = plan.program.weights[i].scale else { return nil }
        return UnsafePointer(view(.weight(s)).floats)
    }

    /// The per-row scales of an int8-channel weight operand (nil for the block formats, which the int8
    /// × int8 kernels do not take: their products run with f32 activations).
    private func channelScales(of operand: Operand) -> UnsafePointer<Float>? {
        guard case .weight(let i) = operand, plan.program.weights[i].blockCodes == nil else { return nil }
        return scales(of: operand)
    }

    /// The block codes of a block-format (`int8-block32`, `int8-block16`) weight operand.
    private func blockCodes(of operand: Operand) -> UnsafePointer<UInt8>? {
        guard case .weight(let i) = operand, let c = plan.program.weights[i].blockCodes else { return nil }
        return UnsafePointer(view(.weight(c)).pointer.assumingMemoryBound(to: UInt8.self))
    }

    /// int8 or f16 weights `[groups·rows, k]` as quantised panels of `width` (A rows or B columns).
    private func quantizedPanels(_ w: View, operand: Operand, rows: Int, k: Int, groups: Int, width: Int) -> PackedMatrix? {
        switch w.dtype {
        case .i8:
            guard let s = scales(of: operand) else { return nil }
            if let c = blockCodes(of: operand), case .weight(let i) = operand, let format = plan.program.weights[i].format {
                return PackedMatrix.int8BlockRows(w.pointer.assumingMemoryBound(to: Int8.self), scales: s, codes: c, format: format, rows: rows, k: k,
                                                  groups: groups, width: width, threads: threads)
            }
            return PackedMatrix.int8Rows(w.pointer.assumingMemoryBound(to: Int8.self), scales: s, rows: rows, k: k, groups: groups, width: width, threads: threads)
        case .f16:
            return PackedMatrix.f16Rows(w.pointer.assumingMemoryBound(to: UInt16.self), rows: rows, k: k, groups: groups, width: width, threads: threads)
        default:
            return nil
        }
    }

    /// The fast kernel of `kernel` when there is one for these operands; false to fall back.
    package func runFast(_ kernel: Kernel, _ x: [View], _ r: [View], weights: [Operand], stream: Bool) -> Bool {
        let allF32 = x.allSatisfy { $0.dtype == .f32 } && r.allSatisfy { $0.dtype == .f32 }
        switch kernel {
        case .conv2d(var c):
            guard x[0].dims.count == 4, f32Except(weight: 1, x, r) else { return false }
            // Without VNNI, the large 3×3 convolutions run as Winograd on the int8 weights (f32 activations).
            if x[1].dtype == .i8, int8Activations, Int8Convolution.runsAsF32Winograd(c, weight: x[1].dims, output: r[0].dims, isa: gemm.isa),
               channelScales(of: weights[1]) != nil {
                c.winograd = true
                c.winogradTile = r[0].dims[2] * r[0].dims[3] >= 64 * 64 && Winograd43.quantizedFits(oc: x[1].dims[0], c: x[1].dims[1]) ? 4 : nil
            }
            // int8 weights in an int8-activation plan: int8 × int8 products (VNNI, or AVX2 on 16 bits);
            // an upsampling convolution's four 2×2 phase kernels as one 2×2 convolution.
            let int8Upsample = Int8Convolution.upsampleEligible(c, input: x[0].dims, weight: x[1].dims)
            if x[1].dtype == .i8, int8Activations, c.winograd != true, c.upsample != true || int8Upsample, let kernel = Int8Convolution.kernel(c, isa: gemm.isa),
               case .weight(let wi) = weights[1], let s = channelScales(of: weights[1]) {
                let w = x[1].dims
                let packedConv = int8Panels(wi, \.int8Conv, layout: .int8Taps, width: Int8Gemm.mr, stream: stream,
                                            borrow: { Int8ConvWeights(borrowing: $0, oc: w[0], ic: w[1], kh: w[2], kw: w[3]) },
                                            pack: { Int8ConvWeights(x[1].pointer.assumingMemoryBound(to: Int8.self), scales: s,
                                                                    oc: w[0], ic: w[1], kh: w[2], kw: w[3], threads: threads) })
                if c.upsample == true {
                    Int8Convolution.runUpsample(c, x: x[0], weights: packedConv, operands: x, out: r[0], kernel: kernel, threads: threads)
                } else {
                    Int8Convolution.run(c, x: x[0], weights: packedConv, operands: x, out: r[0], kernel: kernel, threads: threads)
                }
                return true
            }
            if c.upsample == true {
                // A nearest 2× upsample absorbed by the convolution, whose weight holds the four 2×2
                // phase kernels: our kernels read the small image's padded bands in place (int8 and f16
                // phase kernels expanded block by block as packed); OpenBLAS runs the phases one by one.
                let g = x[1].dtype == .bf16 ? gemm.with(.bf16) : gemm
                let choice = WeightPacking.choice(.conv2d(c), input: x[0].dims, weight: x[1].dims, weightType: x[1].dtype, gemm: gemm)
                if UpsampleConvolution.eligible(c, x: x[0], weight: x[1], gemm: g),
                   x[1].dtype != .i8 || scales(of: weights[1]) != nil,
                   let phases = packedWeight(weights, 1, stream: stream, choice: choice, make: {
                       if let choice { return WeightPacking.pack(x[1], choice, threads: threads) }
                       // int8 and f16 phase kernels stay in their format, expanded as the GEMM packs them.
                       return quantizedPanels(x[1], operand: weights[1], rows: x[1].dims[0] / 4, k: x[1].dims[1] * 4, groups: 4, width: g.mr)
                   }) {
                    UpsampleConvolution.run(c, x: x[0], packed: phases, operands: x, out: r[0], gemm: g, threads: threads)
                    return true
                }
                guard x[1].dtype == .f32, c.groups == 1, c.prologue == nil else { return false }
                UpsampleConvolution.runPhasesSeparately(c, x: x[0], weight: x[1], operands: x, out: r[0], gemm: gemm, threads: threads)
                return true
            }
            let w = x[1].dims
            // bf16 weights run the bf16 kernels (f32 accumulation); OpenBLAS has none, nor quantised ones.
            let g = x[1].dtype == .bf16 ? gemm.with(.bf16) : gemm
            if x[1].dtype != .f32 && gemm.usesBLAS { return false }
            if x[1].dtype == .i8 && scales(of: weights[1]) == nil { return false }
            let packing = ConvolutionPacking.choose(c, weight: x[1], gemm: g)
            let choice = WeightPacking.choice(.conv2d(c), input: x[0].dims, weight: x[1].dims, weightType: x[1].dtype, gemm: gemm)
            // (nil on OpenBLAS, which packs for itself; quantised weights never run there.)
            let a = packedWeight(weights, 1, stream: stream, choice: choice, make: {
                // (Without a choice the weight is quantised: f32 and bf16 weights always have one here.)
                if let choice { return WeightPacking.pack(x[1], choice, threads: threads) }
                return quantizedPanels(x[1], operand: weights[1], rows: w[0] / c.groups, k: w[1] * w[2] * w[3], groups: c.groups, width: g.mr)
            })
            if packing == .quantizedPanels && a == nil { return false }
            FusedConvolution.run(c, x: x[0], weight: x[1], packed: a, operands: x, out: r[0], gemm: g, threads: threads)
        case .convTranspose2d(let c):
            guard allF32, x[0].dims.count == 4 else { return false }
            TransposedConvolution.run(c, x: x[0], weight: x[1], bias: c.hasBias ? x[2] : nil, out: r[0], gemm: gemm, threads: threads)
        case .linear(let l):
            // Layout tables (i32) follow their offsets' operand index.
            let tables = [l.inputOffsets, l.outputOffsets].compactMap { $0 }.flatMap { [$0, $0 + 1] }
            guard f32Except(weight: 1, tables: tables, x, r) else { return false }
            let w = x[1].dims
            let g = x[1].dtype == .bf16 ? gemm.with(.bf16) : gemm
            if x[1].dtype != .f32 && gemm.usesBLAS { return false }
            let quantized = x[1].dtype == .i8 || x[1].dtype == .f16
            if x[1].dtype == .i8 && scales(of: weights[1]) == nil { return false }
            // int8 weights in an int8-activation plan: int8 × int8 products when there are rows enough.
            if x[1].dtype == .i8, int8Activations, Int8Linear.kernel(rows: x[0].count / max(w[1], 1), isa: gemm.isa) != nil,
               case .weight(let wi) = weights[1], let s = channelScales(of: weights[1]) {
                let panels = int8Panels(wi, \.int8Packed, layout: .int8Columns, width: Int8Gemm.nr, stream: stream,
                                        borrow: { Int8WeightPanels(borrowing: $0, n: w[0], k: w[1]) },
                                        pack: { Int8WeightPanels(x[1].pointer.assumingMemoryBound(to: Int8.self), scales: s, n: w[0], k: w[1], threads: threads) })
                FusedLinear.run(l, x: x[0], weight: x[1], int8: panels, operands: x, out: r[0], gemm: g, threads: threads)
                return true
            }
            let choice = WeightPacking.choice(kernel, input: x[0].dims, weight: w, weightType: x[1].dtype, gemm: gemm)
            let b = packedWeight(weights, 1, stream: stream, choice: choice) {
                if let choice { return WeightPacking.pack(x[1], choice, threads: threads) }
                return quantizedPanels(x[1], operand: weights[1], rows: w[0], k: w[1], groups: 1, width: g.nr)
            }
            if quantized && b == nil { return false }
            FusedLinear.run(l, x: x[0], weight: x[1], packed: b, operands: x, out: r[0], gemm: g, threads: threads)
        case .matmul(let m):
            guard allF32, x[0].dims.count >= 2, x[1].dims.count >= 2 else { return false }
            BatchedMatmul.run(m, a: x[0], b: x[1], out: r[0], gemm: gemm, threads: threads)
        case .attention(let a):
            guard allF32 else { return false }
            // bf16 plans (`--precision bf16`) also take attention's products in bf16, and plans with
            // int8 activations their scores in int8 (VNNI), where the processor has the instructions;
            // emulated, both took 1.6–1.8× an f32 attention, so then it runs in f32.
            let native = CPU.hasBF16(gemm.isa)
            let g = !gemm.usesBLAS && plan.program.bf16Products && native ? gemm.with(.bf16) : gemm
            Attention.run(a, q: x[0], key: x[1], v: x[2], biases: Array(x.dropFirst(3)), out: r[0], gemm: g, threads: threads,
                          int8Scores: int8Activations && native)
        case .groupNorm(let groups, let epsilon, let silu):
            guard allF32, x[0].dims.count >= 2 else { return false }
            Normalization.groupNorm(x: x[0], scale: x[1], bias: x[2], out: r[0], groups: groups, epsilon: epsilon, silu: silu, threads: threads)
        case .layerNorm(let axis, let epsilon):
            guard allF32 else { return false }
            Normalization.layerNorm(x: x[0], scale: x[1], bias: x.count > 2 ? x[2] : nil, out: r[0], axis: axis, epsilon: epsilon, threads: threads)
        case .softmax(let axis, let log):
            guard allF32 else { return false }
            Normalization.softmax(x: x[0], out: r[0], axis: axis, log: log, threads: threads)
        case .elementwise(let e):
            guard ElementwiseKernels.supports(e, x, r[0]) else { return false }
            ElementwiseKernels.run(e, operands: x, out: r[0], threads: threads)
        case .movement(.gather(let axis)):
            return MovementKernels.gather(x[0], indices: x[1], axis: axis, out: r[0], threads: threads)
        case .movement(let m):
            guard MovementKernels.supports(m) else { return false }
            MovementKernels.run(m, operands: x, results: r, threads: threads)
        case .copy:
            if r[0].pointer != x[0].pointer { r[0].pointer.copyMemory(from: x[0].pointer, byteCount: r[0].byteCount) }
        default:
            return false
        }
        return true
    }
}
