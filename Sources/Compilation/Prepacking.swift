import IR
import Kernels
import Passes
import Plan
import Tensors

/// `compile --prepack`: every f32 or bf16 weight that a convolution or linear layer of the plan
/// reads packed, and every int8 weight that the int8 × int8 kernels take (plans with int8
/// activations), is stored a second time, packed as this processor's micro-kernels read it
/// (`WeightPacking`: the executor's own choice of layout and panel width), so that a run on a
/// processor of the same kernels maps the panels in place instead of packing them at the first step
/// (in anonymous memory, which a `--max-memory` budget then has to hold or pack again each step).
/// The plain weights stay too: the reference kernels, OpenBLAS and other processors read them.
public enum Prepacking {
    public struct Summary: Sendable {
        public var forms = 0
        public var bytes = 0
    }

    /// Appends the packed forms to `compiled` (records after the last weight, 64-byte aligned).
    public static func add(to compiled: inout CompiledPlan, gemm: Gemm, threads: Int) -> Summary {
        var summary = Summary()
        var seen = Set<[Int]>()
        var end = compiled.program.weights.map { $0.offset + $0.byteCount }.max() ?? 0
        for entry in compiled.program.entryPoints {
            for ins in entry.instructions {
                guard ins.operands.count >= 2, case .weight(let i) = ins.operands[1], let tensor = compiled.weights[i] else { continue }
                let record = compiled.program.weights[i]
                let input: [Int]
                switch ins.operands[0] {
                case .arena(_, _, let shape): input = shape.dims
                case .weight(let j): input = compiled.program.weights[j].shape.dims
                }
                let output: [Int]
                switch ins.results.first {
                case .arena(_, _, let shape)?: output = shape.dims
                default: output = []
                }
                let dims = record.shape.dims
                let int8 = compiled.program.activations == .int8 && record.format == .int8Channel && record.blockCodes == nil
                guard let choice = int8 ? WeightPacking.int8Choice(ins.kernel, input: input, output: output, weight: dims, gemm: gemm)
                                        : WeightPacking.choice(ins.kernel, input: input, weight: dims, weightType: record.dtype, gemm: gemm),
                      seen.insert([i, PanelLayout.allCases.firstIndex(of: choice.layout) ?? 0, choice.width, choice.groups]).inserted else { continue }
                let view = View(pointer: UnsafeMutableRawPointer(mutating: tensor.bytes.baseAddress!), dtype: tensor.dtype, shape: tensor.shape)
                // The panels (and the int8 layouts' scales), then the 64 bytes of slack the verifier asks for.
                let storage: Tensor, geometry: (extent: Int, k: Int, groups: Int), bytes: Int
                if int8 {
                    guard let s = record.scale, let scales = compiled.weights[s] else { continue }
                    let q = UnsafePointer(view.pointer.assumingMemoryBound(to: Int8.self))
                    let scalePointer = scales.bytes.baseAddress!.assumingMemoryBound(to: Float.self)
                    guard let g = choice.layout.geometry(weight: dims, groups: 1) else { continue }
                    let panels: any Int8PackedPanels = choice.layout == .int8Taps
                        ? Int8ConvWeights(q, scales: scalePointer, oc: dims[0], ic: dims[1], kh: dims[2], kw: dims[3], threads: threads)
                        : Int8WeightPanels(q, scales: scalePointer, n: dims[0], k: dims[1], threads: threads)
                    bytes = panels.byteCount + 64
                    storage = Tensor.zeros(.u8, Shape([bytes]))
                    panels.write(into: storage.storage.mutableBytes!.baseAddress!)
                    geometry = g
                } else {
                    let packed = WeightPacking.pack(view, choice, threads: threads)
                    bytes = packed.byteCount + 64
                    storage = Tensor.zeros(.u8, Shape([bytes]))
                    storage.storage.mutableBytes!.baseAddress!.copyMemory(from: UnsafeRawPointer(packed.pointer), byteCount: packed.byteCount)
                    geometry = (packed.extent, packed.k, packed.groups)
                }
                let offset = (end + 63) / 64 * 64
                end = offset + bytes
                compiled.program.weights.append(WeightRecord(name: record.name + ".packed-" + choice.layout.rawValue + "-\(choice.width)",
                                                             dtype: .u8, shape: Shape([bytes]), offset: offset, byteCount: bytes, format: nil))
                compiled.weights.append(storage)
                compiled.program.packedWeights.append(PackedWeight(weight: i, storage: compiled.program.weights.count - 1, layout: choice.layout,
                                                                   width: choice.width, extent: geometry.extent, k: geometry.k, groups: geometry.groups))
                summary.forms += 1
                summary.bytes += bytes
            }
        }
        return summary
    }
}
