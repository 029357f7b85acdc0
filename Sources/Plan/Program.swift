import Tensors

/// Where an instruction's operand or result lives.
public enum Operand: Codable, Sendable, Equatable {
    /// In the entry point's arena at a byte offset (64-byte aligned).
    case arena(offset: Int, dtype: DType, shape: Shape)
    /// A weight or constant of the plan, by index into `Program.weights` (index 0 is never used).
    case weight(Int)

    public var arenaOffset: Int? {
        if case .arena(let o, _, _) = self { return o }
        return nil
    }

    // JSON: {"arena": {"offset": 64, "dtype": "f32", "shape": {"dims": [1, 4]}}} or {"weight": 12}.
    private enum Keys: String, CodingKey { case arena, weight }
    private struct ArenaSlot: Codable { var offset: Int; var dtype: DType; var shape: Shape }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        if let i = try c.decodeIfPresent(Int.self, forKey: .weight) {
            self = .weight(i)
        } else {
            let a = try c.decode(ArenaSlot.self, forKey: .arena)
            self = .arena(offset: a.offset, dtype: a.dtype, shape: a.shape)
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        switch self {
        case .arena(let offset, let dtype, let shape): try c.encode(ArenaSlot(offset: offset, dtype: dtype, shape: shape), forKey: .arena)
        case .weight(let i): try c.encode(i, forKey: .weight)
        }
    }
}

public struct Instruction: Codable, Sendable, Equatable {
    public var kernel: Kernel
    public var operands: [Operand]
    public var results: [Operand]
    /// Provenance: the IR node(s) it came from.
    public var name: String
    public init(kernel: Kernel, operands: [Operand], results: [Operand], name: String) {
        self.kernel = kernel
        self.operands = operands
        self.results = results
        self.name = name
    }
}

/// A named input or output of an entry point and where it lives in the arena.
public struct Binding: Codable, Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: Shape
    public var offset: Int
    public init(name: String, dtype: DType, shape: Shape, offset: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.offset = offset
    }
}

public struct EntryPoint: Codable, Sendable, Equatable {
    public var name: String
    public var inputs: [Binding]
    public var outputs: [Binding]
    public var instructions: [Instruction]
    /// Bytes of arena this entry point needs.
    public var arenaBytes: Int
    public init(name: String, inputs: [Binding], outputs: [Binding], instructions: [Instruction], arenaBytes: Int) {
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.instructions = instructions
        self.arenaBytes = arenaBytes
    }
}

/// A weight or constant stored in the plan's weight section.
public struct WeightRecord: Codable, Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: Shape
    /// Byte offset in the weight section (a multiple of 64).
    public var offset: Int
    public var byteCount: Int
    /// How the weight is stored: f32, f16, bf16, int8-channel (dtype i8, symmetric per output
    /// channel, with `scale` naming the f32 `[dims[0]]` scales) or int8-block32 / int8-block16 (the
    /// same, and `blockCodes` naming the u8 block codes: a code per 32 values of a row, or two 4-bit
    /// codes a byte for blocks of 16); nil for a constant kept as its dtype (integers, bools).
    /// Stored as the format's name, or the dtype's for nil; any other name refuses the plan.
    public var format: WeightFormat?
    /// For the int8 formats: the index of the weight holding the per-row scales.
    public var scale: Int?
    /// For "int8-block32" and "int8-block16": the index of the weight holding the u8 block codes
    /// `[dims[0], ceil(k / 32)]`.
    public var blockCodes: Int?
    public init(name: String, dtype: DType, shape: Shape, offset: Int, byteCount: Int, format: WeightFormat?, scale: Int? = nil, blockCodes: Int? = nil) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.offset = offset
        self.byteCount = byteCount
        self.format = format
        self.scale = scale
        self.blockCodes = blockCodes
    }

    private enum Keys: String, CodingKey { case name, dtype, shape, offset, byteCount, format, scale, blockCodes }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        name = try c.decode(String.self, forKey: .name)
        dtype = try c.decode(DType.self, forKey: .dtype)
        shape = try c.decode(Shape.self, forKey: .shape)
        offset = try c.decode(Int.self, forKey: .offset)
        byteCount = try c.decode(Int.self, forKey: .byteCount)
        scale = try c.decodeIfPresent(Int.self, forKey: .scale)
        blockCodes = try c.decodeIfPresent(Int.self, forKey: .blockCodes)
        let stored = try c.decode(String.self, forKey: .format)
        if let f = WeightFormat(rawValue: stored) {
            format = f
        } else if stored == dtype.rawValue || (stored == "none" && byteCount == 0) {  // (weight 0, the placeholder, in older plans)
            format = nil
        } else {
            throw DecodingError.dataCorruptedError(forKey: .format, in: c, debugDescription: "weight '\(name)': format '\(stored)' is not one this build reads")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(name, forKey: .name)
        try c.encode(dtype, forKey: .dtype)
        try c.encode(shape, forKey: .shape)
        try c.encode(offset, forKey: .offset)
        try c.encode(byteCount, forKey: .byteCount)
        try c.encode(format?.rawValue ?? dtype.rawValue, forKey: .format)
        try c.encodeIfPresent(scale, forKey: .scale)
        try c.encodeIfPresent(blockCodes, forKey: .blockCodes)
    }
}

/// A weight stored a second time as the GEMM micro-kernels read it (`compile --prepack`): the
/// executor maps it in place instead of packing the weight at its first use, when its processor's
/// kernels ask for the same layout and panel width (else it packs as without).
public struct PackedWeight: Codable, Sendable, Equatable {
    /// The weight packed (an index into `Program.weights`).
    public var weight: Int
    /// The weight record holding the panels (u8: the panels, the int8 layouts' scales, then 64 bytes
    /// of slack).
    public var storage: Int
    public var layout: PanelLayout
    /// Rows (A side) or columns (B side) per panel.
    public var width: Int
    /// Rows or columns packed per group, steps per panel, and groups.
    public var extent: Int
    public var k: Int
    public var groups: Int
    public init(weight: Int, storage: Int, layout: PanelLayout, width: Int, extent: Int, k: Int, groups: Int) {
        self.weight = weight
        self.storage = storage
        self.layout = layout
        self.width = width
        self.extent = extent
        self.k = k
        self.groups = groups
    }

    /// Bytes of the panels: `groups · ⌈extent / width⌉ · k · width` 4-byte words, and for the int8
    /// layouts an f32 scale per padded row or column after them (nil on overflow).
    public var panelBytes: Int? {
        guard width > 0, extent >= 0, let words = Checked.count([groups, (extent + width - 1) / width, k, width, 4], limit: PlanVerifier.maxBytes)
        else { return nil }
        guard layout.isInt8 else { return words }
        guard let scales = Checked.count([(extent + width - 1) / width, width, 4], limit: PlanVerifier.maxBytes) else { return nil }
        return Checked.sum(words, scales, limit: PlanVerifier.maxBytes)
    }
}

/// A compiled plan: entry points sharing one weight section and one arena.
public struct Program: Codable, Sendable, Equatable {
    public var entryPoints: [EntryPoint]
    /// Index 0 is a placeholder, so that 0 never names a weight.
    public var weights: [WeightRecord]
    /// The precision of the activations into the GEMMs (bf16 and int8 plans also run attention's
    /// products in bf16). Plans written before it stored `targetFeatures` (`["f32", "bf16", "int8"]`),
    /// read as the same.
    public var activations: ActivationPrecision
    /// The compile report, human-readable.
    public var report: String
    /// What the plan is for, as key–value pairs (`diffbir.version`, `diffbir.tile`, ...): read by the
    /// pipeline. Absent in plans that are single networks.
    public var metadata: [String: String]?
    /// Weights also stored packed for the micro-kernels of one processor family (`compile --prepack`).
    public var packedWeights: [PackedWeight]
    public init(entryPoints: [EntryPoint], weights: [WeightRecord], activations: ActivationPrecision, report: String, metadata: [String: String]? = nil,
                packedWeights: [PackedWeight] = []) {
        self.packedWeights = packedWeights
        self.entryPoints = entryPoints
        self.weights = weights
        self.activations = activations
        self.report = report
        self.metadata = metadata
    }

    private enum Keys: String, CodingKey { case entryPoints, weights, activations, targetFeatures, report, metadata, packedWeights }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        entryPoints = try c.decode([EntryPoint].self, forKey: .entryPoints)
        weights = try c.decode([WeightRecord].self, forKey: .weights)
        report = try c.decode(String.self, forKey: .report)
        metadata = try c.decodeIfPresent([String: String].self, forKey: .metadata)
        packedWeights = try c.decodeIfPresent([PackedWeight].self, forKey: .packedWeights) ?? []
        if let a = try c.decodeIfPresent(ActivationPrecision.self, forKey: .activations) {
            activations = a
        } else {
            let features = try c.decodeIfPresent([String].self, forKey: .targetFeatures) ?? []
            activations = features.contains("int8") ? .int8 : features.contains("bf16") ? .bf16 : .f32
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(entryPoints, forKey: .entryPoints)
        try c.encode(weights, forKey: .weights)
        try c.encode(activations, forKey: .activations)
        try c.encode(report, forKey: .report)
        try c.encodeIfPresent(metadata, forKey: .metadata)
        if !packedWeights.isEmpty { try c.encode(packedWeights, forKey: .packedWeights) }
    }

    /// Whether attention's products (and, with bf16 activations, the GEMMs) run in bf16.
    public var bf16Products: Bool { activations != .f32 }

    /// The index of the weight named `name` (baked constants such as prompt embeddings).
    public func weightIndex(named name: String) -> Int? { weights.indices.dropFirst().first { weights[$0].name == name } }

    /// The arena every entry point fits in.
    public var arenaBytes: Int { entryPoints.map(\.arenaBytes).max() ?? 0 }

    public func entry(_ name: String) -> EntryPoint? { entryPoints.first { $0.name == name } }
}
