import Foundation
import Hummingbird
import Logging
import NIOCore
import Pipeline
import Plan
import Synchronization

/// The HTTP API (docs/serving.md; `GET /openapi.json`): restores submitted, watched, fetched and
/// cancelled; health, readiness and metrics.
public struct RestoreAPI: Sendable {
    public struct Configuration: Sendable {
        /// Largest request body accepted (413 above).
        public var maxBodyBytes = 32 << 20
        /// Bearer tokens accepted on /v1/ (nil: no authentication).
        public var tokens: Set<String>?
        /// How long `?wait=true` holds a request before answering 202.
        public var requestTimeout: Duration = .seconds(300)
        /// How often a waiting request and the events stream look at the job.
        public var poll: Duration = .milliseconds(20)
        public var eventsPoll: Duration = .milliseconds(200)
        public init() {}
    }

    let queue: any JobQueue
    let session: RestoreSession
    let admission: Admission
    let metrics: ServiceMetrics
    let configuration: Configuration
    /// Ready: the plan mapped and one warm-up run done (by the engine, or the caller).
    let ready: @Sendable () -> Bool

    /// `session`: a session of the plan the jobs run (for checking requests against it; never run here).
    public init(queue: any JobQueue, session: RestoreSession, admission: Admission, metrics: ServiceMetrics,
                configuration: Configuration = Configuration(), ready: @escaping @Sendable () -> Bool) {
        self.queue = queue
        self.session = session
        self.admission = admission
        self.metrics = metrics
        self.configuration = configuration
        self.ready = ready
        metrics.arena.set(Double(admission.perJob))
        metrics.weights.set(Double(admission.weights))
        metrics.slots.set(Double(admission.slots))
    }

    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: LogRequestsMiddleware(.info))
        router.add(middleware: RefusalCounter(metrics: metrics))
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/readyz") { _, _ -> Response in
            guard ready() else { throw HTTPError(.serviceUnavailable, message: "warming up: the plan is mapped, the first run not done") }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready\n")))
        }
        router.get("/metrics") { _, _ -> Response in
            metrics.queueDepth.set(Double((try? await queue.queuedCount()) ?? 0))
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: metrics.emit())))
        }
        router.get("/openapi.json") { _, _ in try Self.resource("openapi", "json", type: "application/json") }
        router.get("/") { _, _ in try Self.resource("index", "html", type: "text/html; charset=utf-8") }
        router.get("/v1/plan") { _, _ in Self.json(planDescription) }

        let jobs = router.group("/v1/restores")
        if let tokens = configuration.tokens { jobs.add(middleware: BearerAuth(tokens: tokens)) }
        jobs.post { request, context in try await submit(request, context) }
        jobs.get("{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let r = try await queue.record(id) else { throw HTTPError(.notFound, message: "no job \(id)") }
            return Self.json(r.json)
        }
        jobs.get("{id}/image") { _, context -> Response in
            let id = try context.parameters.require("id")
            return try await image(id)
        }
        jobs.delete("{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let r = try await queue.cancel(id) else { throw HTTPError(.notFound, message: "no job \(id)") }
            return Self.json(r.json, status: .accepted)
        }
        jobs.get("{id}/events") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard try await queue.record(id) != nil else { throw HTTPError(.notFound, message: "no job \(id)") }
            return events(id)
        }
        return router
    }

    var planDescription: [String: Any] {
        var o: [String: Any] = ["plan": session.planName, "slots": admission.slots, "per_job_bytes": admission.perJob, "weights_bytes": admission.weights]
        if let info = session.diffbirInfo {
            o["kind"] = "diffbir"
            o["version"] = info.version
            o["task"] = info.task.rawValue
            o["defaults"] = ["sampler": info.defaultSampler.rawValue, "steps": info.defaultSteps, "cfg": info.defaultCFG, "upscale": info.defaultUpscale]
            o["samplers"] = SamplerKind.allCases.map(\.rawValue)
        } else if let info = session.imageInfo {
            o["kind"] = "image"
            o["scale"] = info.scale
        }
        return o
    }

    // MARK: handlers

    func submit(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        // A full queue answers before the body is read or the image decoded: clients that retry
        // cost the server almost nothing (the queue checks again when the job is added).
        if let full = try await queue.fullness() { throw Self.refusal(full) }
        let query = request.uri.queryParameters
        var fields: [(String, String)] = query.map { (String($0.key), String($0.value)) }
        let type = request.headers[.contentType].map { $0.split(separator: ";")[0].trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: configuration.maxBodyBytes) } catch is NIOTooManyBytesError {
            throw HTTPError(.contentTooLarge, message: "the body is larger than this server accepts (\(configuration.maxBodyBytes) bytes)")
        }
        var input: [UInt8]
        switch type {
        case "image/png", "image/jpeg", "image/webp", "application/octet-stream", "":
            input = Array(buffer: body)
        case "application/x-www-form-urlencoded" where body.withUnsafeReadableBytes({ ImageFormat(signature: $0) != nil }):
            // curl --data-binary's default type, on an image's bytes.
            input = Array(buffer: body)
        case "application/json":
            guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
                throw HTTPError(.badRequest, message: "the body is not a JSON object")
            }
            guard let encoded = object["image"] as? String, let data = Data(base64Encoded: encoded) else {
                throw HTTPError(.badRequest, message: "a JSON body carries the image base64-encoded in the field 'image'")
            }
            input = Array(data)
            for (k, v) in object where k != "image" {
                guard let text = RestoreParameters.fieldText(v) else { throw HTTPError(.badRequest, message: "field '\(k)': a number, string or boolean") }
                fields.append((k, text))
            }
        default:
            throw HTTPError(.unsupportedMediaType, message: "Content-Type \(type): send image/png, image/jpeg, image/webp (or application/json with the image base64-encoded)")
        }
        var parameters: RestoreParameters
        do { parameters = try RestoreParameters(fields: fields) } catch { throw HTTPError(.badRequest, message: error.description) }
        if !session.isDiffBIR && (parameters.steps != nil || parameters.cfg != nil || parameters.sampler != nil || parameters.stage1Only || parameters.strength != 1) {
            throw HTTPError(.badRequest, message: "steps, cfg, sampler, strength and stage1-only are for DiffBIR plans; this server's plan holds one image-to-image network")
        }
        // The image is checked now (the reader's one-line error), and against a job's memory.
        let decoded: LoadedImage
        do {
            decoded = try input.withUnsafeBytes { try InputImage.decode($0, name: "the request's image", maxDecodedBytes: max(admission.perJob / 16, 1)) }
        } catch { throw HTTPError(.badRequest, message: "\(error)") }
        let need = session.workingMemory(height: decoded.height, width: decoded.width, upscale: parameters.upscale)
        if need > admission.perJob {
            throw HTTPError(.contentTooLarge, message: String(format: "a %d×%d image needs %.2f GB of working memory with this plan; this server gives a job %.2f GB",
                                                              decoded.width, decoded.height, Double(need) / 1e9, Double(admission.perJob) / 1e9))
        }
        var deadline: Date?
        if let d = query["deadline"] {
            guard let s = Double(String(d)), s > 0, s.isFinite else { throw HTTPError(.badRequest, message: "deadline=\(d): seconds from now, a positive number") }
            deadline = Date().addingTimeInterval(s)
        }
        let record: JobRecord
        do { record = try await queue.submit(input: input, parameters: parameters, deadline: deadline) } catch let refusal as SubmitRefusal {
            throw Self.refusal(refusal)
        }
        input = []
        context.logger.info("job queued", metadata: ["job": "\(record.id)"])
        let location = "/v1/restores/\(record.id)"
        if let wait = query["wait"], ["1", "true", "yes"].contains(wait.lowercased()) {
            let clock = ContinuousClock()
            let until = clock.now.advanced(by: configuration.requestTimeout)
            while clock.now < until {
                guard let r = try await queue.record(record.id) else { break }
                if r.state.isFinal {
                    let response = try await image(record.id, location: location)
                    await queue.delivered(record.id)
                    return response
                }
                if let d = r.deadline, Date() > d.addingTimeInterval(1) { break }
                try await Task.sleep(for: configuration.poll)
            }
            if let r = try await queue.record(record.id), let d = r.deadline, Date() > d, !r.state.isFinal {
                _ = try await queue.cancel(record.id)
                throw HTTPError(.gatewayTimeout, message: "the deadline passed before the job finished")
            }
        }
        return Self.json((try await queue.record(record.id) ?? record).json, status: .accepted, headers: [.location: location])
    }

    /// The image of a finished job; a failed job's error with its status; 409 while it runs.
    func image(_ id: String, location: String? = nil) async throws -> Response {
        guard let r = try await queue.record(id) else { throw HTTPError(.notFound, message: "no job \(id)") }
        switch r.state {
        case .succeeded:
            guard let bytes = try await queue.result(id) else {
                throw HTTPError(.gone, message: "job \(id)'s image is no longer kept (it was sent to the request that waited for it, or newer jobs replaced it)")
            }
            var headers: HTTPFields = [.contentType: "image/\(r.parameters.format.rawValue)"]
            if let location { headers[.location] = location }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        case .failed, .cancelled:
            let status = HTTPResponse.Status(code: r.errorStatus ?? (r.state == .cancelled ? 409 : 500))
            throw HTTPError(status, message: "job \(id) \(r.state.rawValue): \(r.error ?? "")")
        case .queued, .running:
            throw HTTPError(.conflict, headers: [.retryAfter: "1"], message: "job \(id) is \(r.state.rawValue)")
        }
    }

    /// Server-Sent Events: `progress` with the job's record whenever it changes, until it ends.
    func events(_ id: String) -> Response {
        let queue = self.queue, poll = configuration.eventsPoll
        let body = ResponseBody { writer in
            var last = ""
            while true {
                guard let r = try await queue.record(id) else { break }
                var o = r.json
                o["progress"] = (o["progress"] as? [String: Any])?.filter { $0.key != "eta_seconds" }
                let text = Self.text(o)
                if text != last {
                    try await writer.write(ByteBuffer(string: "event: \(r.state.isFinal ? "end" : "progress")\ndata: \(Self.text(r.json))\n\n"))
                    last = text
                }
                if r.state.isFinal { break }
                try await Task.sleep(for: poll)
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    // MARK: helpers

    static func refusal(_ refusal: SubmitRefusal) -> HTTPError {
        switch refusal {
        case .queueFull(let queued, let retryAfter):
            return HTTPError(.tooManyRequests, headers: [.retryAfter: "\(retryAfter)"], message: "the queue is full (\(queued) jobs wait); retry after \(retryAfter) s")
        case .draining:
            return HTTPError(.serviceUnavailable, headers: [.retryAfter: "5"], message: "the server is shutting down; no new jobs")
        }
    }

    static func text(_ object: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    static func json(_ object: [String: Any], status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(string: text(object) + "\n")))
    }

    static func resource(_ name: String, _ ext: String, type: String) throws -> Response {
        guard let url = Bundle.module.url(forResource: name, withExtension: ext), let data = try? Data(contentsOf: url) else {
            throw HTTPError(.internalServerError, message: "\(name).\(ext) is missing from the build")
        }
        return Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// `Authorization: Bearer TOKEN` on the routes it guards.
struct BearerAuth<Context: RequestContext>: RouterMiddleware {
    let tokens: Set<String>
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // EventSource cannot send headers: the events stream (and only GETs) may carry ?access_token=.
        let header = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
        let query = request.method == .get ? request.uri.queryParameters["access_token"].map(String.init) : nil
        guard let token = header ?? query, tokens.contains(token.trimmingCharacters(in: .whitespaces)) else {
            throw HTTPError(.unauthorized, headers: [.wwwAuthenticate: "Bearer"], message: "a valid bearer token is required (Authorization: Bearer TOKEN)")
        }
        return try await next(request, context)
    }
}

/// Counts the requests answered with an error, by status (`diffbir_requests_refused_total`).
struct RefusalCounter<Context: RequestContext>: RouterMiddleware {
    let metrics: ServiceMetrics
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            let response = try await next(request, context)
            if response.status.code >= 400 { metrics.refused(response.status.code) }
            return response
        } catch let e as HTTPResponseError {
            metrics.refused(e.status.code)
            throw e
        }
    }
}
