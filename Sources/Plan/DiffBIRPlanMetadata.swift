/// What a DiffBIR plan is for, written by `diffbir compile --model diffbir-…` and read by the
/// restorer: typed here, stored in the plan's metadata table under `diffbir.*` keys (the form plans
/// have always carried). A plan whose table names DiffBIR but does not parse is refused at open.
public struct DiffBIRPlanMetadata: Codable, Sendable, Equatable {
    /// The restoration task whose stage-1 network the plan holds.
    public enum Task: String, Codable, Sendable, CaseIterable { case sr, face, denoise }
    /// DiffBIR's stage-1 restoration networks.
    public enum StageOne: String, Codable, Sendable, CaseIterable { case swinir, bsrnet, scunet }

    public struct Defaults: Codable, Sendable, Equatable {
        public var sampler: SamplerKind
        public var steps: Int
        public var cfg: Double
        public var upscale: Double
        public init(sampler: SamplerKind, steps: Int, cfg: Double, upscale: Double) {
            self.sampler = sampler
            self.steps = steps
            self.cfg = cfg
            self.upscale = upscale
        }
    }

    /// `v1`, `v2`, `v2.1`.
    public var version: String
    public var task: Task
    public var cleaner: StageOne
    public var parameterization: Parameterization
    public var zeroTerminalSNR: Bool
    /// Tile size in pixels the entry points were compiled for (latent tiles are tile / latentFactor).
    public var tile: Int
    public var latentFactor: Int
    /// The smallest side the stage-1 output is brought to (512 in DiffBIR).
    public var minimumSide: Int
    /// The baked prompts (nil: the plan has a text entry point instead).
    public var positivePrompt: String?
    public var negativePrompt: String?
    public var defaults: Defaults

    public init(version: String, task: Task, cleaner: StageOne, parameterization: Parameterization, zeroTerminalSNR: Bool, tile: Int,
                latentFactor: Int, minimumSide: Int = 512, positivePrompt: String?, negativePrompt: String?, defaults: Defaults) {
        self.version = version
        self.task = task
        self.cleaner = cleaner
        self.parameterization = parameterization
        self.zeroTerminalSNR = zeroTerminalSNR
        self.tile = tile
        self.latentFactor = latentFactor
        self.minimumSide = minimumSide
        self.positivePrompt = positivePrompt
        self.negativePrompt = negativePrompt
        self.defaults = defaults
    }

    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Whether a metadata table is a DiffBIR plan's.
    public static func describes(_ table: [String: String]?) -> Bool { table?["diffbir.version"] != nil }

    /// The metadata from a plan's table (the keys `table` writes).
    public init(table m: [String: String]) throws(Invalid) {
        func get(_ k: String) throws(Invalid) -> String {
            guard let v = m["diffbir." + k] else { throw Invalid(description: "metadata diffbir.\(k) is missing") }
            return v
        }
        func parse<T: RawRepresentable>(_ k: String, _ type: T.Type) throws(Invalid) -> T where T.RawValue == String {
            let v = try get(k)
            guard let t = T(rawValue: v) else { throw Invalid(description: "metadata diffbir.\(k) '\(v)' is not one this build knows") }
            return t
        }
        func int(_ k: String) throws(Invalid) -> Int {
            guard let v = Int(try get(k)), v > 0, v <= 1 << 20 else { throw Invalid(description: "metadata diffbir.\(k) is not a positive integer") }
            return v
        }
        func number(_ k: String) throws(Invalid) -> Double {
            guard let v = Double(try get(k)), v.isFinite else { throw Invalid(description: "metadata diffbir.\(k) is not a finite number") }
            return v
        }
        version = try get("version")
        task = try parse("task", Task.self)
        cleaner = try parse("cleaner", StageOne.self)
        parameterization = try parse("parameterization", Parameterization.self)
        zeroTerminalSNR = try get("zero_snr") == "true"
        tile = try int("tile")
        latentFactor = try int("latent_factor")
        minimumSide = try int("minimum_side")
        positivePrompt = m["diffbir.prompt.positive"]
        negativePrompt = m["diffbir.prompt.negative"]
        defaults = Defaults(sampler: try parse("default.sampler", SamplerKind.self), steps: try int("default.steps"),
                            cfg: try number("default.cfg"), upscale: try number("default.upscale"))
    }

    /// As stored in the plan.
    public var table: [String: String] {
        var m = [
            "diffbir.version": version, "diffbir.task": task.rawValue, "diffbir.cleaner": cleaner.rawValue,
            "diffbir.parameterization": parameterization.rawValue, "diffbir.zero_snr": zeroTerminalSNR ? "true" : "false",
            "diffbir.tile": "\(tile)", "diffbir.latent_factor": "\(latentFactor)", "diffbir.minimum_side": "\(minimumSide)",
            "diffbir.default.sampler": defaults.sampler.rawValue, "diffbir.default.steps": "\(defaults.steps)",
            "diffbir.default.cfg": "\(defaults.cfg)", "diffbir.default.upscale": "\(defaults.upscale)",
        ]
        if let positivePrompt { m["diffbir.prompt.positive"] = positivePrompt }
        if let negativePrompt { m["diffbir.prompt.negative"] = negativePrompt }
        return m
    }
}

extension Program {
    /// The DiffBIR metadata, or nil for a plan of single networks.
    public func diffbir() throws(DiffBIRPlanMetadata.Invalid) -> DiffBIRPlanMetadata? {
        guard let metadata, DiffBIRPlanMetadata.describes(metadata) else { return nil }
        return try DiffBIRPlanMetadata(table: metadata)
    }
}

/// What the denoiser predicts: noise (v1, v2) or velocity (v2.1).
public enum Parameterization: String, Sendable, Codable, CaseIterable {
    case eps, v
}

/// DiffBIR's samplers.
public enum SamplerKind: String, Sendable, CaseIterable, Codable {
    case spaced
    case ddim
    case dpmppM2 = "dpm++_m2"
    case edmDpmpp3mSDE = "edm_dpm++_3m_sde"
}
