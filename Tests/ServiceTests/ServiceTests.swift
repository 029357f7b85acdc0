import Foundation
import Hummingbird
import HummingbirdTesting
import Logging

import Pipeline
import Plan
import Service
import Testing
import TestSupport

/// The fixture plans the service tests serve, compiled once by the built `diffbir`.
enum ServedPlans {
    nonisolated(unsafe) static let directory = TemporaryDirectory()

    /// BSRNet ×4 on 16×16 tiles: an image-to-image plan, restores in milliseconds.
    static let bsrnet: String = {
        let path = directory.file("bsrnet.plan")
        let r = Tool.run(["compile", "--model", "bsrnet", "--weights", Fixtures.path("networks/bsrnet.weights.safetensors"),
                          "--config", Fixtures.path("networks/bsrnet.config.json"), "--size", "16x16", "-o", path, "-q"])
        precondition(r.status == 0, "compile bsrnet: \(r)")
        return path
    }()

    /// DiffBIR v2.1 on the small fixture checkpoints (steps and stages to watch and cancel).
    static let diffbir: String = {
        let path = directory.file("diffbir.plan")
        let f = Fixtures.path
        let r = Tool.run(["compile", "--model", "diffbir-v2.1", "--config", f("pipeline/config.json"), "--weights",
                          f("networks/unet.weights.safetensors"), f("networks/controlnet.weights.safetensors"),
                          f("pipeline/swinir.weights.safetensors"), f("pipeline/vae8.weights.safetensors"),
                          "--prompt-embeddings", f("pipeline/text.safetensors"), "-o", path, "-q"])
        precondition(r.status == 0, "compile diffbir: \(r)")
        return path
    }()
}

/// One service on a plan, in process: the API's router, the queue, and an engine the test starts.
struct TestService {
    let app: Application<RouterResponder<BasicRequestContext>>
    let engine: Engine
    let queue: MemoryJobQueue
    let metrics: ServiceMetrics

    init(plan: String, depth: Int = 16, tokens: Set<String>? = nil, maxBody: Int = 32 << 20) throws {
        let (sessions, admission) = try RestoreServer.sessions(plan: plan, maxMemory: 4_000_000_000, jobs: 1, threads: 2)
        queue = MemoryJobQueue(depth: depth, keep: 8)
        metrics = ServiceMetrics()
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        engine = Engine(sessions: sessions, queue: queue, admission: admission, metrics: metrics, logger: logger,
                        heartbeat: .milliseconds(20), idlePoll: .milliseconds(5))
        var configuration = RestoreAPI.Configuration()
        configuration.tokens = tokens
        configuration.maxBodyBytes = maxBody
        configuration.requestTimeout = .seconds(120)
        configuration.eventsPoll = .milliseconds(20)
        let engine = self.engine
        let api = RestoreAPI(queue: queue, session: sessions[0], admission: admission, metrics: metrics, configuration: configuration,
                             ready: { engine.isReady })
        app = Application(router: api.router(), logger: logger)
    }

    /// Runs `body` with the engine working (warmed up first).
    func withEngine<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        let task = Task { try await engine.run() }
        defer { task.cancel() }
        while !engine.isReady { try await Task.sleep(for: .milliseconds(10)) }
        return try await body()
    }
}

func png(_ path: String = Fixtures.path("pipeline/lq64.png")) throws -> ByteBuffer {
    ByteBuffer(bytes: try Data(contentsOf: URL(fileURLWithPath: path)))
}

func object(_ b: ByteBuffer) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(buffer: b)) as? [String: Any]) ?? [:]
}

let pngType: HTTPFields = [.contentType: "image/png"]

@Suite(.serialized) struct ServiceTests {
    @Test func restoresTheSameBytesAsTheCommandLine() async throws {
        let service = try TestService(plan: ServedPlans.bsrnet)
        let dir = TemporaryDirectory()
        let cli = Tool.run(["restore", "--plan", ServedPlans.bsrnet, Fixtures.path("pipeline/lq64.png"), "--upscale", "2", "-o", dir.file("cli.png"), "-q"])
        #expect(cli.status == 0, "\(cli)")
        let expected = try Data(contentsOf: URL(fileURLWithPath: dir.file("cli.png")))
        try await service.withEngine {
            try await service.app.test(.router) { client in
                try await client.execute(uri: "/v1/restores?upscale=2&wait=true", method: .post, headers: pngType, body: try png()) { r in
                    #expect(r.status == .ok)
                    #expect(r.headers[.contentType] == "image/png")
                    #expect(Data(buffer: r.body) == expected)
                }
                // JSON body, base64 image, fields alongside.
                let json = try JSONSerialization.data(withJSONObject: ["image": try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("pipeline/lq64.png"))).base64EncodedString(),
                                                                       "upscale": 2, "wait": true])
                try await client.execute(uri: "/v1/restores?wait=true", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(bytes: json)) { r in
                    #expect(r.status == .ok)
                    #expect(Data(buffer: r.body) == expected)
                }
            }
        }
    }

    @Test func jobLifecycleStatusImageEventsAndMetrics() async throws {
        let service = try TestService(plan: ServedPlans.diffbir)
        try await service.withEngine {
            try await service.app.test(.router) { client in
                let id = try await client.execute(uri: "/v1/restores?steps=3&upscale=2", method: .post, headers: pngType, body: try png()) { r -> String in
                    #expect(r.status == .accepted)
                    let o = object(r.body)
                    let id = try #require(o["id"] as? String)
                    #expect(r.headers[.location] == "/v1/restores/\(id)")
                    return id
                }
                // The events stream runs until the job ends: progress events, then `end`.
                let events = try await client.execute(uri: "/v1/restores/\(id)/events", method: .get) { r -> String in
                    #expect(r.status == .ok)
                    #expect(r.headers[.contentType] == "text/event-stream")
                    return String(buffer: r.body)
                }
                #expect(events.contains("event: end"))
                #expect(events.contains("\"state\":\"succeeded\""))
                try await client.execute(uri: "/v1/restores/\(id)", method: .get) { r in
                    #expect(r.status == .ok)
                    let o = object(r.body)
                    #expect(o["state"] as? String == "succeeded")
                    #expect((o["output_size"] as? [Int]) == [128, 128])
                    #expect((o["seconds"] as? [String: Double])?["sampling"] != nil)
                }
                try await client.execute(uri: "/v1/restores/\(id)/image", method: .get) { r in
                    #expect(r.status == .ok)
                    #expect(Array(r.body.readableBytesView.prefix(4)) == [0x89, 0x50, 0x4E, 0x47])
                }
                try await client.execute(uri: "/metrics", method: .get) { r in
                    let text = String(buffer: r.body)
                    #expect(text.contains("diffbir_jobs_total{outcome=\"succeeded\"} 1"))
                    #expect(text.contains("diffbir_step_seconds_count 3"), "\(text)")
                    #expect(text.contains("diffbir_job_run_seconds_count 1"))
                }
            }
        }
    }

    @Test func badRequestsGetTheRightStatus() async throws {
        let service = try TestService(plan: ServedPlans.bsrnet, maxBody: 100_000)
        try await service.app.test(.router) { client in
            var truncated = try png()
            truncated.moveWriterIndex(to: 300)
            try await client.execute(uri: "/v1/restores", method: .post, headers: pngType, body: truncated) { r in
                #expect(r.status == .badRequest)
                #expect(String(buffer: r.body).contains("the request's image"))
            }
            try await client.execute(uri: "/v1/restores", method: .post, headers: [.contentType: "text/plain"], body: try png()) { r in
                #expect(r.status == .unsupportedMediaType)
            }
            try await client.execute(uri: "/v1/restores", method: .post, headers: pngType, body: ByteBuffer(repeating: 0x89, count: 200_000)) { r in
                #expect(r.status == .contentTooLarge)
            }
            for bad in ["steps=3", "upscale=nan", "seed=-1", "sampler=euler", "colour=red", "deadline=-1"] {
                try await client.execute(uri: "/v1/restores?\(bad)", method: .post, headers: pngType, body: try png()) { r in
                    #expect(r.status == .badRequest, "\(bad): \(r.status)")
                }
            }
            for path in ["/v1/restores/nope", "/v1/restores/nope/image", "/v1/restores/nope/events"] {
                try await client.execute(uri: path, method: .get) { r in #expect(r.status == .notFound, "\(path)") }
            }
            try await client.execute(uri: "/v1/restores/nope", method: .delete) { r in #expect(r.status == .notFound) }
            try await client.execute(uri: "/metrics", method: .get) { r in
                let text = String(buffer: r.body)
                #expect(text.contains("diffbir_requests_refused_total{status=\"400\"} 7"), "\(text)")
                #expect(text.contains("diffbir_requests_refused_total{status=\"415\"} 1"))
                #expect(text.contains("diffbir_requests_refused_total{status=\"413\"} 1"))
            }
        }
    }

    @Test func fullQueueAnswers429ThenServesOnRetry() async throws {
        let service = try TestService(plan: ServedPlans.bsrnet, depth: 1)
        try await service.app.test(.router) { client in
            // The engine is not running yet: the first job waits, the second finds the queue full.
            let first = try await client.execute(uri: "/v1/restores", method: .post, headers: pngType, body: try png()) { r -> String in
                #expect(r.status == .accepted)
                return try #require(object(r.body)["id"] as? String)
            }
            try await client.execute(uri: "/v1/restores", method: .post, headers: pngType, body: try png()) { r in
                #expect(r.status == .tooManyRequests)
                #expect(Int(r.headers[.retryAfter] ?? "") ?? 0 >= 1)
            }
            try await client.execute(uri: "/v1/restores/\(first)/image", method: .get) { r in
                #expect(r.status == .conflict)
            }
            try await service.withEngine {
                try await client.execute(uri: "/v1/restores?wait=true", method: .post, headers: pngType, body: try png()) { r in
                    #expect(r.status == .ok)
                }
            }
            try await client.execute(uri: "/v1/restores/\(first)", method: .get) { r in
                #expect(object(r.body)["state"] as? String == "succeeded")
            }
        }
    }

    @Test func cancelQueuedAndRunningJobsAndDeadlines() async throws {
        let service = try TestService(plan: ServedPlans.diffbir)
        try await service.app.test(.router) { client in
            func submit(_ query: String) async throws -> String {
                try await client.execute(uri: "/v1/restores?\(query)", method: .post, headers: pngType, body: try png()) { r in
                    #expect(r.status == .accepted)
                    return try #require(object(r.body)["id"] as? String)
                }
            }
            func state(_ id: String) async throws -> [String: Any] {
                try await client.execute(uri: "/v1/restores/\(id)", method: .get) { object($0.body) }
            }
            let queued = try await submit("steps=2")
            let late = try await submit("steps=2&deadline=0.01")
            try await client.execute(uri: "/v1/restores/\(queued)", method: .delete) { r in
                #expect(r.status == .accepted)
                #expect(object(r.body)["state"] as? String == "cancelled")
            }
            try await Task.sleep(for: .milliseconds(50))
            try await service.withEngine {
                let long = try await submit("steps=1000&upscale=2")
                while (try await state(long)["progress"] as? [String: Any])?["stage"] as? String != "sampling" {
                    try await Task.sleep(for: .milliseconds(10))
                }
                try await client.execute(uri: "/v1/restores/\(long)", method: .delete) { r in #expect(r.status == .accepted) }
                var s = try await state(long)
                while s["state"] as? String == "running" { try await Task.sleep(for: .milliseconds(10)); s = try await state(long) }
                #expect(s["state"] as? String == "cancelled")
                let done = ((s["progress"] as? [String: Any])?["done"] as? Int) ?? 0
                #expect(done < 1000, "cancelled between steps, not after all of them")
                try await client.execute(uri: "/v1/restores/\(long)/image", method: .get) { r in #expect(r.status == .conflict) }
                var l = try await state(late)
                while !(["failed", "cancelled", "succeeded"].contains(l["state"] as? String ?? "")) { try await Task.sleep(for: .milliseconds(10)); l = try await state(late) }
                #expect(l["state"] as? String == "failed")
                try await client.execute(uri: "/v1/restores/\(late)/image", method: .get) { r in #expect(r.status == .gatewayTimeout) }
            }
        }
    }

    @Test func healthReadinessTokensAndDocuments() async throws {
        let service = try TestService(plan: ServedPlans.bsrnet, tokens: ["s3cret"])
        try await service.app.test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { r in #expect(r.status == .ok) }
            try await client.execute(uri: "/readyz", method: .get) { r in #expect(r.status == .serviceUnavailable) }
            try await client.execute(uri: "/v1/restores", method: .post, headers: pngType, body: try png()) { r in
                #expect(r.status == .unauthorized)
            }
            try await client.execute(uri: "/v1/restores", method: .post, headers: [.contentType: "image/png", .authorization: "Bearer wrong"], body: try png()) { r in
                #expect(r.status == .unauthorized)
            }
            try await service.withEngine {
                try await client.execute(uri: "/readyz", method: .get) { r in #expect(r.status == .ok) }
                try await client.execute(uri: "/v1/restores?wait=true", method: .post, headers: [.contentType: "image/png", .authorization: "Bearer s3cret"], body: try png()) { r in
                    #expect(r.status == .ok)
                }
            }
            try await client.execute(uri: "/openapi.json", method: .get) { r in
                #expect(r.status == .ok)
                let paths = try #require(object(r.body)["paths"] as? [String: Any])
                for p in ["/v1/restores", "/v1/restores/{id}", "/v1/restores/{id}/image", "/v1/restores/{id}/events", "/healthz", "/readyz", "/metrics", "/"] {
                    #expect(paths[p] != nil, "\(p) missing from openapi.json")
                }
            }
            try await client.execute(uri: "/", method: .get) { r in
                #expect(r.status == .ok)
                #expect(String(buffer: r.body).contains("EventSource"))
            }
            try await client.execute(uri: "/v1/plan", method: .get) { r in
                #expect(object(r.body)["kind"] as? String == "image")
            }
        }
    }
}
