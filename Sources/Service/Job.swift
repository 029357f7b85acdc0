import Foundation
import Pipeline
import Plan

/// A restore job as clients see it (`GET /v1/restores/{id}`).
public struct JobRecord: Sendable, Equatable {
    public enum State: String, Sendable, Codable, CaseIterable {
        case queued, running, succeeded, failed, cancelled
        public var isFinal: Bool { self == .succeeded || self == .failed || self == .cancelled }
    }

    public var id: String
    public var state: State
    public var parameters: RestoreParameters
    /// Stage of the restore under way (`stage1`, `sampling`, `decode`, `tiles`, ...), steps done of total.
    public var stage: String?
    public var done = 0
    public var total = 0
    public var submitted: Date
    public var started: Date?
    public var finished: Date?
    /// Must have finished by then (nil: no deadline).
    public var deadline: Date?
    /// Why it failed, and the HTTP status that describes it (400: the input, 504: the deadline, 500: ours).
    public var error: String?
    public var errorStatus: Int?
    /// Size of the encoded result, its format, and the output size.
    public var resultBytes: Int?
    public var outputWidth: Int?
    public var outputHeight: Int?
    /// Seconds by stage, when it succeeded.
    public var seconds: [String: Double] = [:]
    /// The worker that ran it (host:pid), and how many times it was claimed (a lost lease runs it again).
    public var worker: String?
    public var attempts = 0

    public init(id: String, parameters: RestoreParameters, submitted: Date = Date(), deadline: Date? = nil) {
        self.id = id
        self.state = .queued
        self.parameters = parameters
        self.submitted = submitted
        self.deadline = deadline
    }

    /// Seconds still to go, from the rate of steps so far (nil before the first step).
    public var eta: Double? {
        guard state == .running, let started, done > 0, total > done else { return nil }
        return Date().timeIntervalSince(started) / Double(done) * Double(total - done)
    }

    public var json: [String: Any] {
        var o: [String: Any] = ["id": id, "state": state.rawValue, "submitted": Self.time(submitted), "attempts": attempts]
        var progress: [String: Any] = ["done": done, "total": total]
        if let stage { progress["stage"] = stage }
        if let eta { progress["eta_seconds"] = eta }
        o["progress"] = progress
        if let started { o["started"] = Self.time(started); o["wait_seconds"] = started.timeIntervalSince(submitted) }
        if let finished { o["finished"] = Self.time(finished); if let started { o["run_seconds"] = finished.timeIntervalSince(started) } }
        if let deadline { o["deadline"] = Self.time(deadline) }
        if let error { o["error"] = error }
        if let resultBytes { o["result_bytes"] = resultBytes; o["image"] = "/v1/restores/\(id)/image" }
        if let outputWidth, let outputHeight { o["output_size"] = [outputWidth, outputHeight] }
        if !seconds.isEmpty { o["seconds"] = seconds }
        if let worker { o["worker"] = worker }
        o["parameters"] = parameters.json
        return o
    }

    static func time(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }
}

extension RestoreParameters {
    var json: [String: Any] {
        var o: [String: Any] = ["seed": seed, "strength": strength, "stage1_only": stage1Only, "format": format.rawValue, "quality": quality]
        if let upscale { o["upscale"] = upscale }
        if let steps { o["steps"] = steps }
        if let cfg { o["cfg"] = cfg }
        if let sampler { o["sampler"] = sampler.rawValue }
        return o
    }

    /// A JSON value as a field's text: numbers as written, booleans `true`/`false` (JSON's
    /// booleans are NSNumbers too: told apart by their type), strings as they are.
    static func fieldText(_ v: Any) -> String? {
        if let n = v as? NSNumber, !(v is String) {
            return String(cString: n.objCType) == "c" ? (n.boolValue ? "true" : "false") : n.stringValue
        }
        return v as? String
    }

    /// Reads the request's fields (query parameters, or a JSON object): upscale, steps, cfg,
    /// sampler, seed, strength, stage1-only (or stage1_only), format, quality. Unknown fields and
    /// malformed values are refused with the field named.
    public init(fields: [(String, String)]) throws(RestoreError) {
        self.init()
        for (key, value) in fields {
            func number<T: LosslessStringConvertible>(_: T.Type) throws(RestoreError) -> T {
                guard let v = T(value) else { throw RestoreError("\(key)=\(value): not a valid \(T.self == Double.self ? "number" : "integer")") }
                return v
            }
            switch key {
            case "upscale": upscale = try number(Double.self)
            case "steps": steps = try number(Int.self)
            case "cfg": cfg = try number(Double.self)
            case "seed": seed = try number(UInt64.self)
            case "strength": strength = try number(Double.self)
            case "quality": quality = try number(Int.self)
            case "sampler":
                guard let s = SamplerKind(rawValue: value) else {
                    throw RestoreError("sampler=\(value): one of \(SamplerKind.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                sampler = s
            case "format":
                guard let f = ImageFormat(extension: value) else { throw RestoreError("format=\(value): one of png, jpeg, webp") }
                format = f
            case "stage1-only", "stage1_only":
                switch value.lowercased() {
                case "", "1", "true", "yes": stage1Only = true
                case "0", "false", "no": stage1Only = false
                default: throw RestoreError("\(key)=\(value): true or false")
                }
            case "wait", "deadline": break  // the request's, not the restore's
            default:
                throw RestoreError("unknown field '\(key)' (fields: upscale, steps, cfg, sampler, seed, strength, stage1-only, format, quality, wait, deadline)")
            }
        }
        try validate()
    }
}
