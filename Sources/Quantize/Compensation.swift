import Executor
import Foundation
import Kernels
import Plan
import Tensors

/// `compile --gptq`: the int8 weights of a quantised plan rounded with error compensation
/// (`ErrorCompensation`), from the inputs each layer sees in the f32 plan of the same graphs on the
/// calibration sets. A layer is compensated when the sets give it at least `minSamples × k` input
/// vectors (k its values per output channel); the others keep plain rounding. The k × k input
/// statistics are gathered for groups of layers within `memoryBudget` bytes, one pass over the
/// calibration sets per group.
public struct Compensation: Sendable {
    /// The compensated weights by name (`CompileOptions.int8Overrides`).
    public var overrides: [String: QuantizedWeight] = [:]
    public var compensated = 0
    /// int8 weights left to plain rounding (too few calibration inputs, or the factorisation failed).
    public var plain = 0
    /// Passes over the calibration sets.
    public var passes = 0
    /// Layers whose factorisation failed (rounded plainly, counted in `plain`), with the reason.
    public var failed: [(name: String, reason: String)] = []

    struct Candidate {
        var index: Int
        var name: String
        /// Groups of rows with their own inputs (one; an upsampling convolution's four phases).
        var rowGroups: [Range<Int>]
        var k: Int
        var samples = 0
        var bytes: Int { rowGroups.count * k * k * 4 }
    }

    /// `inputs`: the calibration sets of each entry point, by entry name (entries without sets are
    /// not run, and their layers count no inputs).
    public static func run(quantized: PlanFile, reference: PlanFile, inputs: [String: [[String: Tensor]]], threads: Int, damping: Float, activationOrder: Bool = false,
                           minSamples: Double, memoryBudget: Int, log: (String) -> Void = { _ in }) throws -> Compensation {
        var result = Compensation()
        var formats: [String: WeightFormat] = [:]
        for w in quantized.program.weights { if let f = w.format, f.isInt8 { formats[w.name] = f } }
        let int8 = Set(formats.keys)
        var candidates: [Int: Candidate] = [:]
        for e in reference.program.entryPoints {
            let count = inputs[e.name]?.count ?? 0
            for ins in e.instructions {
                guard ins.operands.count > 1, case .weight(let w) = ins.operands[1], case .arena(_, _, let out) = ins.results[0] else { continue }
                let rec = reference.program.weights[w]
                guard rec.format == .f32, int8.contains(rec.name), let rows = rec.shape.dims.first, rows > 0 else { continue }
                // Vectors per row group and run: output values per output channel of the group.
                var perGroup = out.count / rows
                var rowGroups = [0..<rows]
                switch ins.kernel {
                case .conv2d(let c):
                    guard c.groups == 1, rec.shape.rank == 4 else { continue }
                    if c.upsample == true {
                        guard rows % 4 == 0 else { continue }
                        rowGroups = (0..<4).map { $0 * rows / 4..<($0 + 1) * rows / 4 }  // [n, oc, 2h, 2w]: n·h·w per phase
                    }
                case .linear(let l):
                    guard rec.shape.rank == 2 else { continue }
                    if l.geglu == true { perGroup = out.count / (rows / 2) }
                default: continue
                }
                let k = rec.shape.count / rows
                var c = candidates[w] ?? Candidate(index: w, name: rec.name, rowGroups: rowGroups, k: k)
                c.samples += count * perGroup
                candidates[w] = c
            }
        }
        let chosen = candidates.values.filter { Double($0.samples) >= minSamples * Double($0.k) }.sorted { $0.index < $1.index }
        result.plain = int8.count - chosen.count
        guard !chosen.isEmpty else { return result }
        var passes: [[Candidate]] = [[]]
        var bytes = 0
        for c in chosen {
            if !passes[passes.count - 1].isEmpty && bytes + c.bytes > memoryBudget { passes.append([]); bytes = 0 }
            passes[passes.count - 1].append(c)
            bytes += c.bytes
        }
        final class Stats: @unchecked Sendable {
            /// By weight index and first row of the group.
            var h: [Int: [Int: UnsafeMutablePointer<Float>]] = [:]
            var k: [Int: Int] = [:]
        }
        let executor = Executor(plan: reference, threads: threads)
        for (g, pass) in passes.enumerated() {
            let stats = Stats()
            for c in pass {
                stats.k[c.index] = c.k
                for r in c.rowGroups {
                    let p = UnsafeMutablePointer<Float>.allocate(capacity: c.k * c.k)
                    p.initialize(repeating: 0, count: c.k * c.k)
                    stats.h[c.index, default: [:]][r.lowerBound] = p
                }
            }
            defer { for m in stats.h.values { for p in m.values { p.deallocate() } } }
            var options = RunOptions()
            options.observer = GemmInputCollector(weights: Set(pass.map(\.index))) { w, rows, x in
                guard let h = stats.h[w]?[rows.lowerBound], let k = stats.k[w], x.shape.dims.last == k else { return }
                x.withElements(as: Float.self) { ErrorCompensation.accumulate(h, k: k, x: $0.baseAddress!, rows: x.shape.dims[0]) }
            }
            for e in reference.program.entryPoints {
                let feeds = inputs[e.name] ?? []
                for (i, feed) in feeds.enumerated() {
                    log("error compensation: pass \(g + 1)/\(passes.count) (\(pass.count) layers' input statistics), \(e.name) input set \(i + 1)/\(feeds.count)")
                    _ = try executor.run(entry: e.name, inputs: feed, options: options)
                }
            }
            for (n, c) in pass.enumerated() {
                log("error compensation: pass \(g + 1)/\(passes.count), rounding \(c.name) (k = \(c.k); \(n + 1)/\(pass.count))")
                let w = reference.weight(c.index)
                do {
                    let format = formats[c.name] ?? .int8Channel
                    let blocks = Quantization.codeBytes(k: c.k)
                    let values = Tensor.zeros(.i8, w.shape), scales = Tensor.zeros(.f32, Shape([w.shape.dims[0]]))
                    let codes: Tensor? = format.hasBlockCodes ? Tensor.zeros(.u8, Shape([w.shape.dims[0], blocks])) : nil
                    for r in c.rowGroups {
                        let part = Tensor.zeros(.f32, Shape([r.count, c.k]))
                        part.storage.mutableBytes!.baseAddress!.copyMemory(from: w.bytes.baseAddress! + r.lowerBound * c.k * 4, byteCount: r.count * c.k * 4)
                        let q = try ErrorCompensation.quantizeInt8(part, format: format, hessian: stats.h[c.index]![r.lowerBound]!, damping: damping,
                                                                   activationOrder: activationOrder)
                        (values.storage.mutableBytes!.baseAddress! + r.lowerBound * c.k).copyMemory(from: q.values.bytes.baseAddress!, byteCount: r.count * c.k)
                        (scales.storage.mutableBytes!.baseAddress! + r.lowerBound * 4).copyMemory(from: q.scales!.bytes.baseAddress!, byteCount: r.count * 4)
                        if let codes, let qc = q.blockCodes {
                            (codes.storage.mutableBytes!.baseAddress! + r.lowerBound * blocks).copyMemory(from: qc.bytes.baseAddress!, byteCount: r.count * blocks)
                        }
                    }
                    result.overrides[c.name] = QuantizedWeight(format: format, values: values, scales: scales, blockCodes: codes)
                    result.compensated += 1
                } catch {
                    log("error compensation: \(c.name): \(error); plain rounding")
                    result.failed.append((c.name, "\(error)"))
                    result.plain += 1
                }
            }
            result.passes += 1
        }
        return result
    }
}
