import Kernels
import Executor
import Plan
import ReferenceKernels
import Tensors

/// Calibration's per-layer measure, watching a run of the f32 plan: after each convolution or
/// linear layer, the same instruction of `shadow` (a plan compiled from the same graphs with other
/// weight formats) runs on the same operands but with the shadow's weight, and its error against
/// this run's result goes to `report` (index, name, error energy Σ(d²), signal energy Σ(r²)).
public final class ShadowComparison: RunObserver, @unchecked Sendable {
    let shadow: Executor
    let report: (Int, String, Double, Double) -> Void

    public init(shadow: Executor, report: @escaping (Int, String, Double, Double) -> Void) {
        self.shadow = shadow
        self.report = report
    }

    public func didRun(_ index: Int, _ ins: Instruction, entry: String, executor: Executor) throws {
        switch ins.kernel {
        case .conv2d, .linear: break
        default: return
        }
        guard let theirs = shadow.plan.program.entry(entry), theirs.instructions.count > index,
              theirs.instructions[index].name == ins.name, theirs.instructions[index].kernel.kindName == ins.kernel.kindName,
              theirs.instructions[index].operands.count == ins.operands.count else {
            throw ExecutorError("calibration: instruction \(index) (\(ins.name)) of entry \(entry) differs between the two plans: compile both from the same graphs")
        }
        let other = theirs.instructions[index]
        guard case .weight(let mine) = ins.operands[1], case .weight(let their) = other.operands[1],
              executor.plan.program.weights[mine].format != shadow.plan.program.weights[their].format else { return }
        var x = ins.operands.map(executor.view)
        x[1] = shadow.view(.weight(their))
        let out = executor.view(ins.results[0])
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(out.byteCount, 4), alignment: 64)
        defer { buffer.deallocate() }
        let r = View(pointer: buffer, dtype: out.dtype, shape: out.shape)
        if !shadow.runFast(other.kernel, x, [r], weights: other.operands, stream: false) {
            let t = try Reference.execute(other.kernel, x.enumerated().map {
                $0.offset == 1 ? shadow.referenceOperand(other.operands[1]) : Executor.referenceOperand(copying: $0.element)
            }, results: [(r.dtype, r.shape)])
            buffer.copyMemory(from: t[0].converted(to: r.dtype).bytes.baseAddress!, byteCount: r.byteCount)
        }
        var noise = 0.0, signal = 0.0
        let (a, b) = (r.floats, out.floats)
        for i in 0..<out.count {
            let d = Double(a[i]) - Double(b[i])
            noise += d * d
            signal += Double(b[i]) * Double(b[i])
        }
        report(index, ins.name, noise, signal)
    }
}

/// Error compensation's input statistics, watching a run of the f32 plan: before each convolution
/// or linear layer whose weight (its index in the plan) is in `weights`, the vectors its GEMM
/// multiplies the weight with (`Executor.gemmInputs`) go to `sink` with the weight's index and the
/// rows of the weight they go with.
public final class GemmInputCollector: RunObserver, @unchecked Sendable {
    let weights: Set<Int>
    let sink: (Int, Range<Int>, Tensor) -> Void

    public init(weights: Set<Int>, sink: @escaping (Int, Range<Int>, Tensor) -> Void) {
        self.weights = weights
        self.sink = sink
    }

    public func willRun(_ index: Int, _ ins: Instruction, entry: String, executor: Executor) throws {
        guard ins.operands.count > 1, case .weight(let w) = ins.operands[1], weights.contains(w) else { return }
        let operands = ins.operands.enumerated().map { $0.offset == 1 ? Tensor.zeros(.f32, [0]) : executor.referenceOperand($0.element) }
        guard let groups = Executor.gemmInputs(ins.kernel, operands, weightShape: executor.plan.program.weights[w].shape) else { return }
        for (rows, x) in groups { sink(w, rows, x) }
    }
}
