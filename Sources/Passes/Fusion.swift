import IR
import ReferenceKernels
import Tensors

/// Fusion rules. Each is legality first (the absorbed intermediates have one consumer, are not graph
/// outputs, and are float32, the dtype the fused kernels take), then a rewrite of the chain's last
/// node in place (same output value and type); the absorbed nodes become dead code.
enum Fusion {
    static func isF32(_ g: Graph, _ vs: [ValueID]) -> Bool { vs.allSatisfy { g.type($0).dtype == .f32 } }

    static func swapsLastTwo(_ perm: [Int]) -> Bool {
        let r = perm.count
        guard r >= 2 else { return false }
        return perm == Array(0..<(r - 2)) + [r - 1, r - 2]
    }

    // MARK: attention

    /// `softmax(matmul(q, kᵀ)·scale + biases)·v`, or with q scaled before the product → `attention`.
    static let attention = Pass(name: "attention", summary: "softmax(QKᵀ·scale + bias)·V as one kernel") { g, _ in
        var changes = 0
        var uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard n.op == .matmul, let (_, sm) = g.producerNode(n.inputs[0]), case .softmax(let axis) = sm.op,
                  uses.absorbable(n.inputs[0]), axis == -1 || axis == g.type(sm.inputs[0]).rank - 1 else { continue }
            // Walk back over bias additions to the scaled product.
            var scores = sm.inputs[0]
            var biases: [ValueID] = []
            while uses.absorbable(scores), let (_, add) = g.producerNode(scores), add.op == .binary(.add) {
                let (a, b) = (add.inputs[0], add.inputs[1])
                // The running scores are the operand with the scores' own shape.
                if g.type(a) == g.type(scores), let (_, pa) = g.producerNode(a), [Op.binary(.add), .binary(.mul), .binary(.div), .matmul].contains(pa.op) {
                    biases.insert(b, at: 0)
                    scores = a
                } else if g.type(b) == g.type(scores), let (_, pb) = g.producerNode(b), [Op.binary(.add), .binary(.mul), .binary(.div), .matmul].contains(pb.op) {
                    biases.insert(a, at: 0)
                    scores = b
                } else {
                    break
                }
            }
            guard uses.absorbable(scores), let (_, sn) = g.producerNode(scores) else { continue }
            var q: ValueID, kt: ValueID, scale: Double, scaleQueries: Bool
            if sn.op == .matmul, let (_, qs) = g.producerNode(sn.inputs[0]), qs.op == .binary(.mul), uses.absorbable(sn.inputs[0]),
               let s = g.scalarConstant(qs.inputs[1]) ?? g.scalarConstant(qs.inputs[0]) {
                q = g.scalarConstant(qs.inputs[1]) != nil ? qs.inputs[0] : qs.inputs[1]
                (kt, scale, scaleQueries) = (sn.inputs[1], s, true)
            } else if sn.op == .binary(.mul) || sn.op == .binary(.div) {
                let product = g.scalarConstant(sn.inputs[1]) != nil ? sn.inputs[0] : sn.inputs[1]
                guard let s = g.scalarConstant(sn.op == .binary(.div) ? sn.inputs[1] : (product == sn.inputs[0] ? sn.inputs[1] : sn.inputs[0])),
                      uses.absorbable(product), let (_, mm) = g.producerNode(product), mm.op == .matmul else { continue }
                if sn.op == .binary(.div) && product != sn.inputs[0] { continue }
                (q, kt, scale, scaleQueries) = (mm.inputs[0], mm.inputs[1], sn.op == .binary(.div) ? 1 / s : s, false)
            } else if sn.op == .matmul {
                (q, kt, scale, scaleQueries) = (sn.inputs[0], sn.inputs[1], 1, false)
            } else {
                continue
            }
            var k = kt
            var keysTransposed = true
            // A transpose that puts the keys' depth before their rows (`[b, m, h, d] → [b, h, d, m]`,
            // heads split and keys transposed in one) becomes one that keeps the rows first
            // (`→ [b, h, m, d]`, as the queries' and values' are, which linear-layout then folds into
            // the key projection's output) and the attention reads untransposed keys.
            var keysTranspose: (node: Int, perm: [Int], type: TensorType)? = nil
            if uses.absorbable(kt), let (ti, t) = g.producerNode(kt), case .transpose(let perm) = t.op {
                if swapsLastTwo(perm) {
                    k = t.inputs[0]
                    keysTransposed = false
                } else if perm.count >= 2 {
                    let r = perm.count
                    let kd = g.type(kt).dims
                    keysTranspose = (ti, Array(perm.prefix(r - 2)) + [perm[r - 1], perm[r - 2]],
                                     TensorType(g.type(kt).dtype, Shape(Array(kd.prefix(r - 2)) + [kd[r - 1], kd[r - 2]])))
                    keysTransposed = false
                }
            }
            let operands = [q, k, n.inputs[1]] + biases
            var types = operands.map { g.type($0) }
            if let keysTranspose { types[1] = keysTranspose.type }
            guard isF32(g, operands), g.type(q).rank >= 2, types[1].rank == g.type(q).rank else { continue }
            let spec = AttentionSpec(scale: Float(scale), scaleQueries: scaleQueries, keysTransposed: keysTransposed, biasCount: biases.count)
            guard (try? Op.attention(spec).inferTypes(types)) == [g.type(n.outputs[0])] else { continue }
            if let keysTranspose {
                g.nodes[keysTranspose.node].op = .transpose(keysTranspose.perm)
                g.values[kt].type = keysTranspose.type
            }
            g.nodes[i] = Node(op: .attention(spec), inputs: operands, outputs: n.outputs, name: n.name)
            changes += 1
            uses = Uses(g)
        }
        g = g.withoutDeadNodes()
        return changes
    }

    // MARK: GEGLU

    /// `split(x, [n, n])` → `a · gelu(gate)` → `geglu(x)`.
    static let geglu = Pass(name: "geglu", summary: "split + GELU + mul of the feed-forward as one kernel") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard n.op == .binary(.mul) else { continue }
            for (a, b) in [(n.inputs[0], n.inputs[1]), (n.inputs[1], n.inputs[0])] {
                guard let (_, gelu) = g.producerNode(b), gelu.op == .gelu(.none), uses.absorbable(b), uses.absorbable(a),
                      let (_, split) = g.producerNode(a), case .split(let axis, let sizes) = split.op, sizes.count == 2, sizes[0] == sizes[1],
                      split.outputs == [a, gelu.inputs[0]], uses.absorbable(gelu.inputs[0]),
                      axis == -1 || axis == g.type(split.inputs[0]).rank - 1, isF32(g, [split.inputs[0]]) else { continue }
                g.nodes[i] = Node(op: .geglu, inputs: [split.inputs[0]], outputs: n.outputs, name: n.name)
                changes += 1
                break
            }
        }
        g = g.withoutDeadNodes()
        return changes
    }

    // MARK: prologues

    /// `conv(silu?(group_norm(x)))` → a convolution that normalises while it reads.
    static let convPrologue = Pass(name: "conv-prologue", summary: "GroupNorm (→ SiLU) folded into the next convolution") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard case .conv(let c) = n.op else { continue }
            var x = n.inputs[0]
            var silu = false
            if let (_, s) = g.producerNode(x), s.op == .unary(.silu), uses.absorbable(x) {
                silu = true
                x = s.inputs[0]
            }
            guard uses.absorbable(x), let (_, gn) = g.producerNode(x), case .groupNorm(let groups, let eps) = gn.op,
                  isF32(g, [gn.inputs[0], n.outputs[0]]) else { continue }
            let fusion = ConvFusion(hasBias: n.inputs.count == 3, prologue: GroupNormPrologue(groups: groups, epsilon: eps, silu: silu))
            g.nodes[i] = Node(op: .convFused(c, fusion), inputs: [gn.inputs[0]] + n.inputs.dropFirst() + [gn.inputs[1], gn.inputs[2]],
                              outputs: n.outputs, name: n.name)
            changes += 1
        }
        g = g.withoutDeadNodes()
        return changes
    }

    /// `conv3×3(resize_nearest_2×(x))` (stride 1, padding 1, ungrouped, no prologue) → a convolution
    /// that reads the small x: the executor runs it as four 2×2 phase convolutions (4 taps an output
    /// instead of 9) and no enlarged copy is made. The resize must map output pixel (y, x) to input
    /// (y/2, x/2), checked by running it on an index image.
    static let upsampleConv = Pass(name: "upsample-conv", summary: "nearest 2× upsample read by the next 3×3 convolution") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            var f: ConvFusion
            let c: Conv2D
            switch n.op {
            case .conv(let cc): (c, f) = (cc, ConvFusion(hasBias: n.inputs.count == 3))
            case .convFused(let cc, let ff): (c, f) = (cc, ff)
            default: continue
            }
            let w = g.type(n.inputs[1]).dims
            guard f.prologue == nil, !f.upsampleNearest, w.count == 4, w[2] == 3, w[3] == 3, c.strides == [1, 1], c.pads == [1, 1, 1, 1],
                  c.dilations == [1, 1], c.groups == 1, uses.absorbable(n.inputs[0]), let (_, r) = g.producerNode(n.inputs[0]),
                  case .resize(let spec) = r.op, spec.mode == .nearest, isF32(g, [r.inputs[0], n.outputs[0]]) else { continue }
            let small = g.type(r.inputs[0]).dims, big = g.type(n.inputs[0]).dims
            // (Rows of the small image a whole number of micro-kernel panels, else the executor would
            // enlarge it anyway.)
            guard small.count == 4, big == [small[0], small[1], 2 * small[2], 2 * small[3]], small[3] % 32 == 0,
                  nearestTwice(spec, height: small[2], width: small[3]) else { continue }
            f.upsampleNearest = true
            g.nodes[i] = Node(op: .convFused(c, f), inputs: [r.inputs[0]] + n.inputs.dropFirst(), outputs: n.outputs, name: n.name)
            changes += 1
        }
        g = g.withoutDeadNodes()
        return changes
    }

    /// Whether `spec` (nearest) maps every output pixel of an h × w image to (y/2, x/2).
    static func nearestTwice(_ spec: Resize, height h: Int, width w: Int) -> Bool {
        let image = Tensor((0..<(h * w)).map { Float($0) }, shape: Shape([1, 1, h, w]))
        // One image of one channel (the batch and channel axes are not resized).
        var s = spec
        if s.sizes.count == 4 { s.sizes = [1, 1, s.sizes[2], s.sizes[3]] }
        if s.scales.count == 4 { s.scales = [1, 1, s.scales[2], s.scales[3]] }
        guard let out = try? ReferenceEvaluator().evaluate(.resize(s), [image], outputTypes: [TensorType(.f32, Shape([1, 1, 2 * h, 2 * w]))]).first
        else { return false }
        let v = out.floats()
        for y in 0..<(2 * h) { for x in 0..<(2 * w) where v[y * 2 * w + x] != Float((y / 2) * w + x / 2) { return false } }
        return true
    }

    /// `linear(layer_norm(x))` (normalised over the last axis) → a linear that normalises while it reads.
    static let layerNormLinear = Pass(name: "layernorm-linear", summary: "LayerNorm folded into the next linear") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            // A plain linear, or one that reads its rows through a layout (whole rows of the norm's axis).
            var fusion = LinearFusion(hasBias: n.inputs.count == 3)
            if case .linearFused(let f) = n.op {
                guard f.layerNorm == nil, f.epilogue.isEmpty else { continue }
                if f.gathersInput {
                    guard let rows = g.values[n.inputs[f.inputTables]].constant, let columns = g.values[n.inputs[f.inputTables + 1]].constant,
                          columns.withElements(as: Int32.self, { Array($0) }) == Array(0..<Int32(columns.count)),
                          rows.withElements(as: Int32.self, { $0.allSatisfy { Int($0) % columns.count == 0 } }) else { continue }
                }
                fusion = f
            } else if n.op != .linear {
                continue
            }
            guard uses.absorbable(n.inputs[0]), let (_, ln) = g.producerNode(n.inputs[0]),
                  case .layerNorm(let axis, let eps) = ln.op, axis == -1 || axis == g.type(ln.inputs[0]).rank - 1,
                  g.type(ln.inputs[0]).dims.last == g.type(n.inputs[1]).dims.last,
                  ln.inputs.dropFirst().allSatisfy({ g.type($0).rank == 1 }), isF32(g, [ln.inputs[0]]) else { continue }
            fusion.layerNorm = LayerNormPrologue(epsilon: eps, hasBias: ln.inputs.count == 3)
            g.nodes[i] = Node(op: .linearFused(fusion), inputs: [ln.inputs[0]] + n.inputs[1..<fusion.normOperands] + ln.inputs.dropFirst()
                                  + n.inputs[fusion.normOperands...], outputs: n.outputs, name: n.name)
            changes += 1
        }
        g = g.withoutDeadNodes()
        return changes
    }

    // MARK: GEGLU into the linear layer

    /// `geglu(linear(x))` → the linear with `geglu`: the 2h-wide product is combined tile by tile as
    /// the kernel writes, never stored (h a multiple of 32, so each half starts on a panel of every
    /// kernel set; no layouts, no epilogue yet).
    static let gegluLinear = Pass(name: "geglu-linear", summary: "GEGLU of the feed-forward applied as its first linear layer writes") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard n.op == .geglu, uses.absorbable(n.inputs[0]), let (_, p) = g.producerNode(n.inputs[0]),
                  isF32(g, [n.inputs[0], n.outputs[0]]) else { continue }
            var f: LinearFusion
            switch p.op {
            case .linear: f = LinearFusion(hasBias: p.inputs.count == 3)
            case .linearFused(let fused): f = fused
            default: continue
            }
            let width = g.type(p.inputs[1]).dims[0]
            guard !f.gathersInput, !f.scattersOutput, f.outputShape == nil, f.epilogue.isEmpty, !f.geglu,
                  width % 64 == 0 else { continue }
            f.geglu = true
            g.nodes[i] = Node(op: .linearFused(f), inputs: p.inputs, outputs: n.outputs, name: p.name)
            changes += 1
        }
        g = g.withoutDeadNodes()
        return changes
    }

    // MARK: epilogues

    /// Activation, constant or runtime scale and residual add after a convolution or linear, and a
    /// per-channel add after a convolution, as epilogue steps.
    static let epilogues = Pass(name: "epilogues", summary: "activation, scale, residual and per-channel add applied as the conv/linear writes") { g, _ in
        var changes = 0
        var uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            var step: EpilogueOp
            var source: ValueID
            var residual: ValueID?
            switch n.op {
            case .unary(.silu): (step, source) = (.activation(.silu), n.inputs[0])
            case .unary(.relu): (step, source) = (.activation(.relu), n.inputs[0])
            case .unary(.sigmoid): (step, source) = (.activation(.sigmoid), n.inputs[0])
            case .gelu(let a): (step, source) = (.activation(a == .tanh ? .geluTanh : .gelu), n.inputs[0])
            case .leakyRelu(let alpha): (step, source) = (.activation(.leakyRelu(alpha)), n.inputs[0])
            case .binary(.mul):
                if let s = g.scalarConstant(n.inputs[1]) { (step, source) = (.scale(Float(s)), n.inputs[0]) }
                else if let s = g.scalarConstant(n.inputs[0]) { (step, source) = (.scale(Float(s)), n.inputs[1]) }
                else {
                    // A single value known at run time (a control scale): the next operand of the step.
                    let (a, b) = (n.inputs[0], n.inputs[1])
                    func single(_ v: ValueID, times other: ValueID) -> Bool {
                        g.type(v).count == 1 && g.type(v).dtype == g.type(other).dtype && g.type(other) == g.type(n.outputs[0])
                    }
                    if single(b, times: a) { (step, source, residual) = (.scaleByInput, a, b) }
                    else if single(a, times: b) { (step, source, residual) = (.scaleByInput, b, a) }
                    else { continue }
                }
            case .binary(.add):
                if let (source, slopes) = preluAfterConvolution(g, n, uses) {
                    // relu(y) + min(y, 0)·s (PReLU as the ncnn importer writes it) on a convolution's output y.
                    let scalar = g.values[slopes].constant.flatMap { $0.count == 1 ? $0.floats()[0] : nil }
                    let step: EpilogueOp = scalar.map { .activation(.leakyRelu($0)) } ?? .preluChannels
                    let extra = scalar == nil ? [slopes] : []
                    guard let (_, p) = g.producerNode(source) else { continue }
                    switch p.op {
                    case .conv(let c):
                        g.nodes[i] = Node(op: .convFused(c, ConvFusion(hasBias: p.inputs.count == 3, epilogue: [step])), inputs: p.inputs + extra,
                                          outputs: n.outputs, name: p.name)
                    case .convFused(let c, var f):
                        f.epilogue.append(step)
                        g.nodes[i] = Node(op: .convFused(c, f), inputs: p.inputs + extra, outputs: n.outputs, name: p.name)
                    default: continue
                    }
                    changes += 1
                    uses = Uses(g)
                    continue
                }
                // The fused producer is the operand that is a conv/linear result; the other, of the same type, is the residual
                // (or, after a convolution, one value per image and channel: [N, C, 1, 1], a time embedding).
                let (a, b) = (n.inputs[0], n.inputs[1])
                func fusible(_ v: ValueID, convolutionOnly: Bool = false) -> Bool {
                    guard let (_, p) = g.producerNode(v) else { return false }
                    switch p.op {
                    case .conv, .convFused: return true
                    case .linear, .linearFused: return !convolutionOnly
                    default: return false
                    }
                }
                func perChannel(_ big: ValueID, _ small: ValueID) -> Bool {
                    let (t, e) = (g.type(big), g.type(small))
                    return t.dtype == e.dtype && t.rank == 4 && e.dims == [t.dims[0], t.dims[1], 1, 1] && t.dims[2] * t.dims[3] > 1
                }
                if g.type(a) == g.type(b) {
                    if fusible(a) && uses.absorbable(a) { (step, source, residual) = (.addResidual, a, b) }
                    else if fusible(b) && uses.absorbable(b) { (step, source, residual) = (.addResidual, b, a) }
                    else { continue }
                } else if fusible(a, convolutionOnly: true) && uses.absorbable(a) && perChannel(a, b) {
                    (step, source, residual) = (.addChannels, a, b)
                } else if fusible(b, convolutionOnly: true) && uses.absorbable(b) && perChannel(b, a) {
                    (step, source, residual) = (.addChannels, b, a)
                } else { continue }
            default: continue
            }
            guard uses.absorbable(source), let (_, p) = g.producerNode(source), isF32(g, [source, n.outputs[0]]) else { continue }
            if let residual, residual == source { continue }
            let extra = residual.map { [$0] } ?? []
            switch p.op {
            case .conv(let c):
                let f = ConvFusion(hasBias: p.inputs.count == 3, epilogue: [step])
                g.nodes[i] = Node(op: .convFused(c, f), inputs: p.inputs + extra, outputs: n.outputs, name: p.name)
            case .convFused(let c, var f):
                f.epilogue.append(step)
                g.nodes[i] = Node(op: .convFused(c, f), inputs: p.inputs + extra, outputs: n.outputs, name: p.name)
            case .linear:
                let f = LinearFusion(hasBias: p.inputs.count == 3, epilogue: [step])
                g.nodes[i] = Node(op: .linearFused(f), inputs: p.inputs + extra, outputs: n.outputs, name: p.name)
            case .linearFused(var f):
                // A scattered output takes epilogue steps only when its rows stay contiguous, or when
                // it is a channels-first transpose (the kernel applies them along each channel).
                if f.scattersOutput, let r = g.values[p.inputs[f.outputTables]].constant, let c = g.values[p.inputs[f.outputTables + 1]].constant {
                    let (rows, columns) = (r.withElements(as: Int32.self, { Array($0) }), c.withElements(as: Int32.self, { Array($0) }))
                    if columns != Array(0..<Int32(columns.count)) && !Layout.isTranspose(rows, columns) { continue }
                }
                f.epilogue.append(step)
                g.nodes[i] = Node(op: .linearFused(f), inputs: p.inputs + extra, outputs: n.outputs, name: p.name)
            default: continue
            }
            changes += 1
            uses = Uses(g)
        }
        g = g.withoutDeadNodes()
        return changes
    }

    /// `relu(y) + min(y, 0)·s` (either order of each operation), where y is an f32 convolution's
    /// output read only by that relu and min, the intermediates each read once, and s a constant
    /// slope: one value, or one per channel (`[1, C, 1, 1]`). Returns y and s.
    static func preluAfterConvolution(_ g: Graph, _ add: Node, _ uses: Uses) -> (ValueID, ValueID)? {
        func producer(_ v: ValueID) -> Node? { g.producerNode(v)?.node }
        for (r, m) in [(add.inputs[0], add.inputs[1]), (add.inputs[1], add.inputs[0])] {
            guard uses.absorbable(r), uses.absorbable(m), let relu = producer(r), relu.op == .unary(.relu),
                  let mul = producer(m), mul.op == .binary(.mul) else { continue }
            let y = relu.inputs[0]
            for (mn, s) in [(mul.inputs[0], mul.inputs[1]), (mul.inputs[1], mul.inputs[0])] {
                guard uses.absorbable(mn), let min = producer(mn), min.op == .binary(.min),
                      let slopes = g.values[s].constant, slopes.dtype == .f32 else { continue }
                let zeroAt = min.inputs[0] == y ? 1 : (min.inputs[1] == y ? 0 : -1)
                guard zeroAt >= 0, g.scalarConstant(min.inputs[zeroAt]) == 0 else { continue }
                let t = g.type(y)
                guard t.dtype == .f32, t.rank == 4, uses.counts[y] == 2, !uses.outputs.contains(y), let p = producer(y) else { continue }
                switch p.op { case .conv, .convFused: break; default: continue }
                guard slopes.count == 1 || slopes.shape.dims == [1, t.dims[1], 1, 1] else { continue }
                return (y, s)
            }
        }
        return nil
    }

    // MARK: batch norm

    /// `batch_norm(conv(x, w, b))` with constant parameters → the conv with folded weights and bias.
    static let batchNormFolding = Pass(name: "batchnorm-folding", summary: "inference BatchNorm folded into the convolution before it") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard case .batchNorm(let eps) = n.op, uses.absorbable(n.inputs[0]), let (_, conv) = g.producerNode(n.inputs[0]),
                  case .conv(let c) = conv.op, let w = g.values[conv.inputs[1]].constant, isF32(g, [n.outputs[0]]),
                  n.inputs.dropFirst().allSatisfy({ g.values[$0].isConstant }) else { continue }
            let p = n.inputs.dropFirst().map { g.values[$0].constant!.converted(to: .f64).withElements(as: Double.self) { Array($0) } }
            let (scale, bias, mean, variance) = (p[0], p[1], p[2], p[3])
            let oc = w.shape.dims[0], per = w.count / oc
            var wv = w.converted(to: .f64).withElements(as: Double.self) { Array($0) }
            var bv = conv.inputs.count == 3 ? g.values[conv.inputs[2]].constant!.converted(to: .f64).withElements(as: Double.self) { Array($0) }
                                            : [Double](repeating: 0, count: oc)
            for o in 0..<oc {
                let f = scale[o] / (variance[o] + Double(eps)).squareRoot()
                for k in 0..<per { wv[o * per + k] *= f }
                bv[o] = (bv[o] - mean[o]) * f + bias[o]
            }
            let newW = g.addConstant(Tensor(wv.map { Float($0) }, shape: w.shape), name: conv.name + ".weight(bn)")
            let newB = g.addConstant(Tensor(bv.map { Float($0) }, shape: [oc]), name: conv.name + ".bias(bn)")
            g.nodes[i] = Node(op: .conv(c), inputs: [conv.inputs[0], newW, newB], outputs: n.outputs, name: conv.name)
            changes += 1
        }
        g = g.withoutDeadNodes()
        return changes
    }
}

/// Layout choices that pay: transposes of matmul operands become flags of the product (no copy).
enum Layout {
    /// `matmul(x, W)` with `W` a constant `[K, N]` → `linear(x, Wᵀ)`. Exporters write `nn.Linear` on
    /// inputs of three or more dimensions as MatMul against the transposed weight (TorchScript's, the
    /// dynamo exporter's), and Gemm without `transB` the same way: as linear layers they are packed,
    /// quantised (`--weights-dtype`) and given their bias, activation and residual by `epilogues`
    /// like a model's own. A weight several products share is transposed once.
    static let constantMatmulIntoLinear = Pass(name: "matmul-linear", summary: "matmul against a constant matrix as a linear layer") { g, _ in
        var changes = 0
        var transposed: [ValueID: ValueID] = [:]
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard n.op == .matmul, n.inputs.count == 2, Fusion.isF32(g, n.inputs), g.type(n.inputs[0]).rank >= 2,
                  let w = g.values[n.inputs[1]].constant, w.shape.rank == 2, w.dtype == .f32 else { continue }
            let wt: ValueID
            if let t = transposed[n.inputs[1]] {
                wt = t
            } else {
                let (k, columns) = (w.shape.dims[0], w.shape.dims[1])
                let source = w.floats()
                var values = [Float](repeating: 0, count: source.count)
                for r in 0..<k { for c in 0..<columns { values[c * k + r] = source[r * columns + c] } }
                wt = g.addConstant(Tensor(values, shape: [columns, k]), name: g.values[n.inputs[1]].name + ".T")
                transposed[n.inputs[1]] = wt
            }
            g.nodes[i] = Node(op: .linear, inputs: [n.inputs[0], wt], outputs: n.outputs, name: n.name)
            changes += 1
        }
        // The exporter's bias: `add(linear(x, W), b)` with `b` a constant of one value per output
        // (shape [N] or [1, …, 1, N]) → the linear's bias.
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            guard n.op == .binary(.add), n.inputs.count == 2 else { continue }
            for (k, other) in [(0, 1), (1, 0)] {
                guard uses.absorbable(n.inputs[k]), let (_, l) = g.producerNode(n.inputs[k]), l.op == .linear, l.inputs.count == 2,
                      let b = g.values[n.inputs[other]].constant, b.dtype == .f32, Fusion.isF32(g, [n.inputs[k]]),
                      let columns = g.type(l.inputs[1]).dims.first, b.count == columns, b.shape.dims.last == columns,
                      g.type(n.outputs[0]).shape == g.type(n.inputs[k]).shape else { continue }
                let bias = b.shape.rank == 1 ? n.inputs[other] : g.addConstant(Tensor(b.floats(), shape: [columns]), name: g.values[n.inputs[other]].name)
                g.nodes[i] = Node(op: .linear, inputs: l.inputs + [bias], outputs: n.outputs, name: l.name)
                changes += 1
                break
            }
        }
        g = g.withoutDeadNodes()
        return changes
    }

    static let transposeIntoMatmul = Pass(name: "layout", summary: "transposes of matmul operands read in place as transposed operands") { g, _ in
        var changes = 0
        let uses = Uses(g)
        for i in g.nodes.indices {
            let n = g.nodes[i]
            var flags: (Bool, Bool)
            switch n.op {
            case .matmul: flags = (false, false)
            case .matmulTransposed(let a, let b): flags = (a, b)
            default: continue
            }
            guard g.type(n.inputs[0]).rank >= 2, g.type(n.inputs[1]).rank >= 2, Fusion.isF32(g, n.inputs) else { continue }
            var inputs = n.inputs
            var changed = false
            for k in 0..<2 {
                if uses.absorbable(inputs[k]), let (_, t) = g.producerNode(inputs[k]), case .transpose(let perm) = t.op, Fusion.swapsLastTwo(perm) {
                    inputs[k] = t.inputs[0]
                    if k == 0 { flags.0.toggle() } else { flags.1.toggle() }
                    changed = true
                }
            }
            guard changed else { continue }
            let op: Op = flags == (false, false) ? .matmul : .matmulTransposed(a: flags.0, b: flags.1)
            g.nodes[i] = Node(op: op, inputs: inputs, outputs: n.outputs, name: n.name)
            changes += 1
        }
        g = g.withoutDeadNodes()
        return changes
    }
}

// MARK: movement into linear layers

extension Layout {
    /// Columns must come in contiguous runs at least this long (or be all contiguous) for a layout
    /// to be read or written in place: shorter runs are cheaper as the blocked transpose kernel,
    /// except a whole channels-first transpose, which the linear kernel moves in blocks itself.
    static let minimumRun = 16

    /// Movement chains (reshape, transpose, slice, concat: shifted windows, head splits and merges)
    /// between a linear and its input, or its output and the next compute op, read or written
    /// through row and column offset tables when the chain only moves whole runs of columns.
    static let movementIntoLinear = Pass(name: "linear-layout",
                                         summary: "window, roll and head transposes around linears read and written in place") { g, _ in
        var changes = 0
        var i = 0
        while i < g.nodes.count {
            defer { i += 1 }
            let n = g.nodes[i]
            var f: LinearFusion
            switch n.op {
            case .linear: f = LinearFusion(hasBias: n.inputs.count == 3)
            case .linearFused(let lf): f = lf
            default: continue
            }
            guard !f.gathersInput, !f.scattersOutput, g.type(n.inputs[1]).rank == 2, Fusion.isF32(g, [n.inputs[0], n.outputs[0]]) else { continue }
            let users = g.users()
            let (nOut, k) = (g.type(n.inputs[1]).dims[0], g.type(n.inputs[1]).dims[1])
            let rows = g.type(n.inputs[0]).count / max(k, 1)
            var inputs = Array(n.inputs[0..<f.inputTables])
            var source = n.inputs[0]
            var inputTables: [ValueID] = []
            if f.layerNorm == nil, let chain = movementChain(g, users, to: n.inputs[0], consumer: i) {
                for (candidate, nodes) in chain.reversed() {
                    guard let offsets = offsetsThrough(g, nodes, from: candidate, to: n.inputs[0]),
                          let (r, c) = separable(offsets, rows: rows, columns: k), !isIdentity(r, c, columns: k),
                          minimumRunLength(c) >= min(minimumRun, k) || isTranspose(r, c)
                    else { continue }
                    source = candidate
                    inputTables = [g.addConstant(int32Tensor(r), name: n.name + ":input_rows"), g.addConstant(int32Tensor(c), name: n.name + ":input_columns")]
                    break
                }
            }
            inputs[0] = source
            var outputTables: [ValueID] = []
            var sink = n.outputs[0], sinkNode = i
            if f.residualCount == 0 {
                for (candidate, producer, nodes) in outputChain(g, users, from: n.outputs[0]).reversed() {
                    guard let offsets = offsetsThrough(g, nodes, from: n.outputs[0], to: candidate),
                          let destination = inverse(offsets),
                          let (r, c) = separable(destination, rows: rows, columns: nOut), !isIdentity(r, c, columns: nOut),
                          minimumRunLength(c) >= min(minimumRun, nOut) || isTranspose(r, c), f.epilogue.isEmpty || c == Array(0..<Int32(nOut))
                    else { continue }
                    (sink, sinkNode) = (candidate, producer)
                    outputTables = [g.addConstant(int32Tensor(r), name: n.name + ":output_rows"), g.addConstant(int32Tensor(c), name: n.name + ":output_columns")]
                    break
                }
            }
            guard !inputTables.isEmpty || !outputTables.isEmpty else { continue }
            f.gathersInput = !inputTables.isEmpty
            f.scattersOutput = !outputTables.isEmpty
            f.outputShape = g.type(sink).dims
            g.nodes[sinkNode] = Node(op: .linearFused(f), inputs: inputs + inputTables + outputTables + n.inputs[f.inputTables...],
                                     outputs: [sink], name: n.name)
            changes += 1
        }
        g = g.withoutDeadNodes()
        return changes
    }

    static func isMovement(_ op: Op) -> Bool {
        switch op {
        case .reshape, .transpose, .slice, .concat: return true
        default: return false
        }
    }

    /// Candidate sources of the movement chain ending at `value` (read by node `consumer`), nearest
    /// first, each with the chain's nodes: every value strictly inside is read only by the chain.
    static func movementChain(_ g: Graph, _ users: [[Int]], to value: ValueID, consumer: Int) -> [(ValueID, [Int])]? {
        let outputs = Set(g.outputs.map(\.value))
        var chain: Set<Int> = [consumer]
        var current = value
        var result: [(ValueID, [Int])] = []
        func onlyChain(_ v: ValueID) -> Bool { !outputs.contains(v) && users[v].allSatisfy { chain.contains($0) } }
        while onlyChain(current), let (pi, p) = g.producerNode(current), isMovement(p.op), p.outputs.count == 1 {
            if p.inputs.count == 1 {
                chain.insert(pi)
                current = p.inputs[0]
            } else if case .concat = p.op {
                // A roll: slices of one value, concatenated.
                let parts = p.inputs.compactMap { g.producerNode($0) }
                guard parts.count == p.inputs.count, parts.allSatisfy({ isMovement($0.node.op) && $0.node.inputs.count == 1 }),
                      Set(parts.map { $0.node.inputs[0] }).count == 1 else { break }
                chain.insert(pi)
                for part in parts { chain.insert(part.index) }
                guard p.inputs.allSatisfy(onlyChain) else { break }
                current = parts[0].node.inputs[0]
            } else {
                break
            }
            result.append((current, chain.subtracting([consumer]).sorted()))
        }
        return result.isEmpty ? nil : result
    }

    /// Candidate sinks of movement chains starting at the linear's output `value`, nearest first:
    /// (sink value, its producing node, the chain's nodes).
    static func outputChain(_ g: Graph, _ users: [[Int]], from value: ValueID) -> [(ValueID, Int, [Int])] {
        let outputs = Set(g.outputs.map(\.value))
        var chain: [Int] = []
        var current = value
        var result: [(ValueID, Int, [Int])] = []
        while !outputs.contains(current) {
            let readers = users[current]
            guard !readers.isEmpty, readers.allSatisfy({ isMovement(g.nodes[$0].op) && g.nodes[$0].outputs.count == 1 && g.nodes[$0].inputs.count == 1 }) else { break }
            if readers.count == 1 {
                chain.append(readers[0])
                current = g.nodes[readers[0]].outputs[0]
            } else {
                // A roll: slices of `current` whose outputs only feed one concat of exactly them.
                let parts = readers.map { g.nodes[$0].outputs[0] }
                guard parts.allSatisfy({ users[$0].count == 1 && !outputs.contains($0) }), Set(parts.map { users[$0][0] }).count == 1 else { break }
                let join = users[parts[0]][0]
                guard case .concat = g.nodes[join].op, Set(g.nodes[join].inputs) == Set(parts), g.nodes[join].inputs.count == parts.count else { break }
                chain += readers + [join]
                current = g.nodes[join].outputs[0]
            }
            result.append((current, chain.last!, chain.sorted()))
        }
        return result
    }

    /// The flat offsets into `from` of the elements of `to`: the chain's nodes (graph order) applied
    /// to the indices of `from` (movement only: reshape, transpose, slice, concat). Nil for a chain of
    /// reshapes alone (nothing moves) or a node of another kind.
    static func offsetsThrough(_ g: Graph, _ nodes: [Int], from: ValueID, to: ValueID) -> [Int32]? {
        let count = g.type(from).count
        guard count < Int(Int32.max), nodes.contains(where: { if case .reshape = g.nodes[$0].op { return false }; return true }) else { return nil }
        var env: [ValueID: [Int32]] = [from: (0..<Int32(count)).map { $0 }]
        for ni in nodes {
            let node = g.nodes[ni]
            guard node.outputs.count == 1, let first = env[node.inputs[0]] else { return nil }
            let inDims = g.type(node.inputs[0]).dims, outDims = g.type(node.outputs[0]).dims
            var strides = [Int](repeating: 1, count: inDims.count)
            for d in stride(from: inDims.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * inDims[d + 1] }
            switch node.op {
            case .reshape: env[node.outputs[0]] = first
            case .transpose(let perm): env[node.outputs[0]] = strided(first, outDims, base: 0, perm.map { strides[$0] })
            case .slice(let spec):
                let base = zip(spec.starts, strides).reduce(0) { $0 + $1.0 * $1.1 }
                env[node.outputs[0]] = strided(first, outDims, base: base, zip(spec.steps, strides).map { $0 * $1 })
            case .concat(let axis):
                let a = axis < 0 ? axis + outDims.count : axis
                let outer = outDims[..<a].reduce(1, *)
                var parts: [[Int32]] = []
                for v in node.inputs { guard let t = env[v] else { return nil }; parts.append(t) }
                let inner = node.inputs.map { g.type($0).dims[a...].reduce(1, *) }
                var out: [Int32] = []
                out.reserveCapacity(outDims.reduce(1, *))
                for o in 0..<outer { for (p, size) in zip(parts, inner) { out.append(contentsOf: p[(o * size)..<((o + 1) * size)]) } }
                env[node.outputs[0]] = out
            default: return nil
            }
        }
        return env[to]
    }

    /// `out[i] = x[base + Σ index(i)[a] · strides[a]]` over `dims`.
    static func strided(_ x: [Int32], _ dims: [Int], base: Int, _ strides: [Int]) -> [Int32] {
        let offsets = Reference.stridedOffsets(dims, base: base, strides: strides)
        return x.withUnsafeBufferPointer { src in offsets.map { src[$0] } }
    }

    /// Where each source index went: `destination[source] = position`, if `offsets` is a permutation.
    static func inverse(_ offsets: [Int32]) -> [Int32]? {
        var d = [Int32](repeating: -1, count: offsets.count)
        let ok = offsets.withUnsafeBufferPointer { src in
            d.withUnsafeMutableBufferPointer { dst in
                for p in 0..<src.count {
                    let s = Int(src[p])
                    guard s >= 0, s < dst.count, dst[s] < 0 else { return false }
                    dst[s] = Int32(p)
                }
                return true
            }
        }
        return ok ? d : nil
    }

    /// `offsets[r·columns + j] = rows[r] + cols[j]` for all r, j (with `cols[0] = 0`), if so.
    static func separable(_ offsets: [Int32], rows: Int, columns: Int) -> ([Int32], [Int32])? {
        guard rows * columns == offsets.count, rows > 0, columns > 0 else { return nil }
        return offsets.withUnsafeBufferPointer { o -> ([Int32], [Int32])? in
            let r = (0..<rows).map { o[$0 * columns] }, c = (0..<columns).map { o[$0] - o[0] }
            for i in 0..<rows {
                let row = r[i]
                for j in 0..<columns where o[i * columns + j] != row + c[j] { return nil }
            }
            return (r, c)
        }
    }

    /// Whether the tables are a channels-first transpose (`[rows, columns]` ↔ `[columns, rows]`:
    /// row i at offset i, column j at j·rows), which the linear kernel moves in 16 × 16 blocks
    /// (`FusedLinear.transposeStride`) however short its runs.
    static func isTranspose(_ r: [Int32], _ c: [Int32]) -> Bool {
        r.count >= minimumRun && c.count >= minimumRun && r == (0..<r.count).map { Int32($0) } && c == (0..<c.count).map { Int32($0 * r.count) }
    }

    static func isIdentity(_ r: [Int32], _ c: [Int32], columns: Int) -> Bool {
        c == Array(0..<Int32(columns)) && r == (0..<r.count).map { Int32($0 * columns) }
    }

    /// The shortest run of consecutive offsets in a column table.
    static func minimumRunLength(_ c: [Int32]) -> Int {
        var shortest = Int.max, run = 1
        for j in 1..<max(c.count, 1) {
            if c[j] == c[j - 1] + 1 { run += 1 } else { shortest = min(shortest, run); run = 1 }
        }
        return min(shortest, run)
    }

    static func int32Tensor(_ values: [Int32]) -> Tensor {
        let t = Tensor.zeros(.i32, Shape([values.count]))
        values.withUnsafeBytes { t.storage.mutableBytes!.copyMemory(from: $0) }
        return t
    }
}
