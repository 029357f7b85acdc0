import Foundation
import Yams

/// DiffBIR's inference configurations read as published (`configs/inference/cldm.yaml`,
/// `swinir.yaml`, `bsrnet.yaml`, `scunet.yaml`): the section of the network being built is picked
/// (cldm.yaml: `params.unet_cfg`, `controlnet_cfg`, `vae_cfg` with its `ddconfig`, `clip_cfg` with
/// its `text_cfg`; the others: `params`), the keys this build's configuration has are applied, the
/// keys that only name what the build already is are checked against it, and the rest (training
/// switches such as `use_checkpoint`, values marked unused such as `image_size`) are ignored and
/// named in a note.
extension NetworkConfig {
    /// Keys whose value this build assumes: a file with another value is refused (the network it
    /// describes is not the one built here).
    nonisolated(unsafe) static let assumed: [Network: [String: Any]] = [
        .unet: ["use_spatial_transformer": true, "use_linear_in_transformer": true, "transformer_depth": 1, "legacy": false],
        .vaeDecoder: ["double_z": true, "attn_resolutions": [Any]()],
        .swinir: ["patch_size": 1, "in_chans": 3, "upsampler": "nearest+conv", "resi_connection": "1conv", "unshuffle": true, "img_range": 1.0],
    ]

    /// Whether a YAML scalar (or empty list) equals an assumed value: numbers by value, booleans,
    /// strings, lists element by element.
    static func same(_ a: Any, _ b: Any) -> Bool {
        switch (a, b) {
        case (let x as Bool, let y as Bool): return x == y
        case (is Bool, _), (_, is Bool): return false
        case (let x as Int, let y as Int): return x == y
        case (let x as Double, let y as Double): return x == y
        case (let x as Int, let y as Double), (let y as Double, let x as Int): return Double(x) == y
        case (let x as String, let y as String): return x == y
        case (let x as [Any], let y as [Any]): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        default: return false
        }
    }

    /// `network`'s configuration from a DiffBIR yaml file's text; `notes` names the keys ignored.
    public static func load(_ network: Network, yaml: String, notes: inout [String]) throws -> NetworkConfig {
        let root: Any?
        do { root = try Yams.load(yaml: yaml) } catch { throw ModelError("not valid YAML: \(error)") }
        guard let top = root as? [String: Any], let params = top["params"] as? [String: Any] else {
            throw ModelError("not a DiffBIR configuration (no 'params' mapping)")
        }
        func section(_ path: [String]) throws -> [String: Any] {
            var v: Any = params
            for k in path {
                guard let m = v as? [String: Any], let next = m[k] else { throw ModelError("has no params.\(path.joined(separator: ".")) for \(network.rawValue)") }
                v = next
            }
            guard let m = v as? [String: Any] else { throw ModelError("params.\(path.joined(separator: ".")) is not a mapping") }
            return m
        }
        var keys: [String: Any]
        let family: Network
        switch network {
        case .unet, .denoise: keys = try section(["unet_cfg"]); family = .unet
        case .controlnet: keys = try section(["controlnet_cfg"]); family = .unet
        case .vaeEncoder, .vaeDecoder:
            keys = try section(["vae_cfg", "ddconfig"])
            if let e = try section(["vae_cfg"])["embed_dim"] { keys["embed_dim"] = e }
            if let s = params["latent_scale_factor"] { keys["scale_factor"] = s }
            family = .vaeDecoder
        case .clipText:
            keys = try section(["clip_cfg", "text_cfg"])
            if let l = try section(["clip_cfg"])["layer"] { keys["layer"] = l }
            family = .clipText
        case .swinir, .bsrnet, .scunet:
            keys = params
            family = network
            let expected = ["swinir": "SwinIR", "bsrnet": "RRDBNet", "scunet": "SCUNet"][network.rawValue]!
            if let target = top["target"] as? String, !target.hasSuffix("." + expected) {
                throw ModelError("is the configuration of \(target), not of \(network.rawValue) (\(expected))")
            }
        }
        // What this build's configuration of the network has.
        var c = NetworkConfig()
        let known: Set<String>
        func fields<T: Encodable>(_ value: T) throws -> Set<String> {
            Set((try JSONSerialization.jsonObject(with: JSONEncoder().encode(value)) as? [String: Any] ?? [:]).keys)
        }
        switch family {
        case .unet: known = try fields(c.unet)
        case .vaeDecoder: known = try fields(c.vae)
        case .clipText: known = try fields(c.clip)
        case .swinir: known = try fields(c.swinir)
        case .bsrnet: known = try fields(c.bsrnet)
        default: known = try fields(c.scunet)
        }
        var applied: [String: Any] = [:], ignored: [String] = []
        for (k, v) in keys.sorted(by: { $0.key < $1.key }) {
            if known.contains(k) {
                applied[k] = v
            } else if let expected = assumed[family]?[k] {
                guard same(v, expected) else {
                    throw ModelError("\(k): \(v) describes a network this build does not make (it makes \(k): \(expected))")
                }
            } else {
                ignored.append(k)
            }
        }
        if !ignored.isEmpty { notes.append("ignored (training-only or unused here): " + ignored.joined(separator: ", ")) }
        let json = try JSONSerialization.data(withJSONObject: applied)
        switch family {
        case .unet: c.unet = try overlay(c.unet, json)
        case .vaeDecoder: c.vae = try overlay(c.vae, json)
        case .clipText: c.clip = try overlay(c.clip, json)
        case .swinir: c.swinir = try overlay(c.swinir, json)
        case .bsrnet: c.bsrnet = try overlay(c.bsrnet, json)
        default: c.scunet = try overlay(c.scunet, json)
        }
        return c
    }
}
