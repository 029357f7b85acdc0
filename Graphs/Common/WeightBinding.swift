import IR
import Tensors

/// Where one part of a network's weights lives in published checkpoints.
public struct WeightPart: Sendable {
    public let name: String
    /// Prefix of this part's weight names in the graph (`unet.` in the denoise graph).
    public let graphPrefix: String
    /// Checkpoint prefixes to try, in order (`model.diffusion_model.`, then none).
    public let prefixes: [String]
    /// A key (after the prefix) that only this part has: finds the file and prefix that provide it.
    public let signature: String
    /// Keys (after the prefix) that belong to this part; a claimed key the graph does not use is an error.
    public let claims: [String]
    /// Keys the reference itself ignores (recomputed buffers, unused layers): skipped, never required.
    public let ignored: @Sendable (String) -> Bool

    public init(name: String, graphPrefix: String, prefixes: [String], signature: String, claims: [String] = [""],
                ignored: @escaping @Sendable (String) -> Bool = { _ in false }) {
        self.name = name
        self.graphPrefix = graphPrefix
        self.prefixes = prefixes
        self.signature = signature
        self.claims = claims
        self.ignored = ignored
    }

    static func unet(graphPrefix: String) -> WeightPart {
        WeightPart(name: "unet", graphPrefix: graphPrefix, prefixes: ["model.diffusion_model.", ""], signature: "out.2.weight")
    }

    static func controlNet(graphPrefix: String) -> WeightPart {
        WeightPart(name: "controlnet", graphPrefix: graphPrefix, prefixes: ["control_model.", ""], signature: "zero_convs.0.0.weight")
    }

    /// CLIP keys DiffBIR does not use: the projection and logit scale of the image-text model, and the
    /// transformer blocks from `layersUsed` on (the penultimate layer's output is taken).
    static func clipIgnored(_ key: String, layersUsed: Int) -> Bool {
        if key == "model.text_projection" || key == "model.logit_scale" { return true }
        let prefix = "model.transformer.resblocks."
        guard key.hasPrefix(prefix), let index = Int(key.dropFirst(prefix.count).prefix { $0.isNumber }) else { return false }
        return index >= layersUsed
    }
}

/// One checkpoint's tensors as the binder sees them: names, types, and how to load each.
public struct WeightFile: Sendable {
    public struct Entry: Sendable {
        public let dtype: DType
        public let shape: Shape
        public let load: @Sendable () -> Tensor
        public init(dtype: DType, shape: Shape, load: @escaping @Sendable () -> Tensor) {
            self.dtype = dtype
            self.shape = shape
            self.load = load
        }
    }

    public let path: String
    public let entries: [String: Entry]

    /// Strips `module.` (DataParallel) when the first key has it, as DiffBIR's loader does.
    public init(path: String, entries: [String: Entry], firstKey: String?) {
        self.path = path
        if let first = firstKey, first.hasPrefix("module.") {
            var stripped: [String: Entry] = [:]
            for (k, v) in entries { stripped[k.hasPrefix("module.") ? String(k.dropFirst(7)) : k] = v }
            self.entries = stripped
        } else {
            self.entries = entries
        }
    }
}

/// Every problem found binding a checkpoint to a graph, reported together.
public struct WeightBindingError: Error, CustomStringConvertible, Sendable {
    public let network: String
    public let problems: [String]
    /// One line (errors are printed one a line): the first eight problems, then how many more.
    public var description: String {
        let shown = problems.prefix(8).joined(separator: "; ")
        let more = problems.count > 8 ? "; and \(problems.count - 8) more" : ""
        return "the weights do not fit \(network) (\(problems.count) problem\(problems.count == 1 ? "" : "s")): " + shown + more
    }
}

/// What a binding used: for each part, the file and prefix.
public struct BindingReport: Sendable {
    public var sources: [(part: String, path: String, prefix: String)] = []
    public var bound = 0
    public var ignored = 0
    public var converted = 0
}

extension Network {
    /// The published files (DiffBIR's `pretrained_models.py` names) that hold a part, for errors.
    public static func publishedSources(ofPart part: String) -> String {
        switch part {
        case "unet", "vae-encoder", "vae-decoder", "clip-text":
            return "v2-1_512-ema-pruned.ckpt or sd2.1-base-zsnr-laionaes5.ckpt (diffbir fetch sd_v2.1 / sd_v2.1_zsnr)"
        case "controlnet": return "DiffBIR_v2.1.pt, v2.pth or v1_general.pth (diffbir fetch v2.1 / v2 / v1_general)"
        case "swinir": return "realesrgan_s4_swinir_100k.pth or general_swinir_v1.ckpt (diffbir fetch swinir_realesrgan / swinir_general)"
        case "bsrnet": return "BSRNet.pth (diffbir fetch bsrnet)"
        case "scunet": return "scunet_color_real_psnr.pth (diffbir fetch scunet_psnr)"
        default: return "its published checkpoint"
        }
    }

    /// Binds every weight of `graph` from `files`, strictly: a missing key, a claimed key the graph
    /// does not use, and a shape mismatch are errors, all reported together; float weights of another
    /// precision are converted to the graph's dtype.
    public func bind(_ graph: inout Graph, config: NetworkConfig, files: [WeightFile]) throws -> BindingReport {
        var problems: [String] = []
        var report = BindingReport()
        var plan: [(graphKey: String, entry: WeightFile.Entry)] = []
        let declared = graph.weights
        for part in parts(config) {
            var source: (WeightFile, String)?
            search: for file in files {
                for prefix in part.prefixes where file.entries[prefix + part.signature] != nil {
                    source = (file, prefix)
                    break search
                }
            }
            guard let (file, prefix) = source else {
                let looked = part.prefixes.map { "'\($0)\(part.signature)'" }.joined(separator: " or ")
                problems.append("no weights file has the \(part.name): it is in \(Self.publishedSources(ofPart: part.name)) "
                                + "(looked for \(looked) in \(files.map(\.path).joined(separator: ", ")))")
                continue
            }
            report.sources.append((part.name, file.path, prefix))
            let expected = declared.filter { $0.key.hasPrefix(part.graphPrefix) }
            var claimed = Set<String>()
            for key in file.entries.keys where key.hasPrefix(prefix) {
                let rest = String(key.dropFirst(prefix.count))
                if part.claims.contains(where: { rest.hasPrefix($0) }) { claimed.insert(rest) }
            }
            var used = Set<String>()
            for w in expected {
                let rest = String(w.key.dropFirst(part.graphPrefix.count))
                used.insert(rest)
                guard let entry = file.entries[prefix + rest] else {
                    problems.append("missing: \(prefix + rest) \(w.type.shape) is not in \(file.path)")
                    continue
                }
                guard entry.shape == w.type.shape else {
                    problems.append("shape mismatch: \(prefix + rest) is \(entry.shape) in \(file.path), the \(part.name) needs \(w.type.shape)")
                    continue
                }
                guard entry.dtype == w.type.dtype || (entry.dtype.isFloatingPoint && w.type.dtype.isFloatingPoint) else {
                    problems.append("dtype mismatch: \(prefix + rest) is \(entry.dtype) in \(file.path), the \(part.name) needs \(w.type.dtype)")
                    continue
                }
                plan.append((w.key, entry))
            }
            for rest in claimed.subtracting(used).sorted() {
                if part.ignored(rest) {
                    report.ignored += 1
                } else {
                    problems.append("unused: \(prefix + rest) \(file.entries[prefix + rest]!.shape) in \(file.path) is not a weight of the \(part.name)")
                }
            }
        }
        if !problems.isEmpty { throw WeightBindingError(network: rawValue, problems: problems) }
        for (key, entry) in plan {
            var t = entry.load()
            let want = graph.type(graph.weightIndex[key]!).dtype
            if t.dtype != want {
                t = t.converted(to: want)
                report.converted += 1
            }
            try graph.bindWeight(key, t)
            report.bound += 1
        }
        return report
    }

}
