import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Pipeline
@testable import Service
import Testing
import TestSupport

/// The PostgreSQL queue against a real server: `Tools/with-postgres.sh swift test` (as CI runs the
/// tests) starts one and names it in DIFFBIR_TEST_POSTGRES; without it these tests are skipped.
enum TestDatabase {
    static let url = ProcessInfo.processInfo.environment["DIFFBIR_TEST_POSTGRES"]
    static var available: Bool { url != nil }

    static var logger: Logger {
        var l = Logger(label: "test.postgres")
        l.logLevel = .warning
        return l
    }

    /// A queue on the test database, its pool running, the table emptied.
    static func withQueue<T: Sendable>(depth: Int = 16, lease: Duration = .seconds(30), _ body: (PostgresJobQueue) async throws -> T) async throws -> T {
        let queue = try PostgresJobQueue(url: try #require(url), depth: depth, keep: 64, lease: lease, logger: logger)
        let pool = Task { try await queue.run() }
        defer { pool.cancel() }
        try await Task.sleep(for: .milliseconds(50))  // (the pool's run() begins: no "lease before run" warning)
        try await queue.migrate()
        try await queue.client.query("DELETE FROM diffbir_jobs", logger: logger)
        return try await body(queue)
    }

    static func outcome(_ bytes: [UInt8]) -> RestoreOutcome {
        RestoreOutcome(bytes: bytes, format: .png, inputSize: (1, 1), outputSize: (4, 4), seconds: [("network", 0.5)], notes: [])
    }
}

@Suite(.serialized, .enabled(if: TestDatabase.available, "DIFFBIR_TEST_POSTGRES names no server (run under Tools/with-postgres.sh)"))
struct PostgresQueueTests {
    @Test func schemaIsCreatedOnceAndMigratedIdempotently() async throws {
        try await TestDatabase.withQueue { queue in
            let first = try await queue.migrate()
            let second = try await queue.migrate()
            #expect(first == PostgresJobQueue.migrations.count)
            #expect(second == first)
        }
    }

    @Test func aDatabaseErrorIsLoggedWithTheServersMessageOnOneLine() async throws {
        try await TestDatabase.withQueue { queue in
            do {
                try await queue.client.query("SELECT * FROM diffbir_no_such_table", logger: TestDatabase.logger)
                Issue.record("a query on a missing table succeeded")
            } catch {
                let line = describeForLog(error)
                #expect(line.contains("diffbir_no_such_table"), "\(line)")
                #expect(line.contains("SQLSTATE 42P01"), "\(line)")
                #expect(!line.contains("\n"))
            }
        }
    }

    @Test func claimProgressFinishOnceAndQueueDepth() async throws {
        try await TestDatabase.withQueue(depth: 2) { queue in
            var p = RestoreParameters()
            p.steps = 3
            p.seed = 42
            let a = try await queue.submit(input: [1, 2, 3], parameters: p, deadline: nil)
            _ = try await queue.submit(input: [4], parameters: RestoreParameters(), deadline: nil)
            await #expect(throws: SubmitRefusal.self) { _ = try await queue.submit(input: [5], parameters: p, deadline: nil) }
            #expect(try await queue.queuedCount() == 2)

            let claimed = try #require(try await queue.claim(worker: "w1"))
            #expect(claimed.record.id == a.id, "oldest first")
            #expect(claimed.input == [1, 2, 3])
            #expect(claimed.record.parameters == p)
            #expect(try await queue.progress(claimed, stage: "sampling", done: 1, total: 3))
            let running = try #require(try await queue.record(a.id))
            #expect(running.state == .running)
            #expect(running.stage == "sampling" && running.done == 1 && running.total == 3)
            #expect(running.worker == "w1")

            try await queue.finish(claimed, .success(TestDatabase.outcome([9, 9])))
            // A second completion of the same claim changes nothing.
            try await queue.finish(claimed, .failure(JobFailure(.internalError, "late")))
            let done = try #require(try await queue.record(a.id))
            #expect(done.state == .succeeded)
            #expect(done.error == nil)
            #expect(try await queue.result(a.id) == [9, 9])
            #expect(done.seconds["network"] == 0.5)
            #expect(try await queue.progress(claimed, stage: "x", done: 0, total: 0) == false, "a finished job has no claim")
        }
    }

    @Test func aLostLeaseRunsTheJobAgainAndTheOldClaimCannotWrite() async throws {
        try await TestDatabase.withQueue(lease: .seconds(1)) { queue in
            let job = try await queue.submit(input: [7], parameters: RestoreParameters(), deadline: nil)
            let dead = try #require(try await queue.claim(worker: "dies"))
            #expect(try await queue.claim(worker: "other") == nil, "held under its lease")
            try await Task.sleep(for: .milliseconds(1300))
            let again = try #require(try await queue.claim(worker: "other"))
            #expect(again.record.id == job.id)
            #expect(again.record.attempts == 2)
            #expect(again.claim != dead.claim)
            // The first worker comes back: its heartbeat says stop, its result is dropped.
            #expect(try await queue.progress(dead, stage: "sampling", done: 1, total: 2) == false)
            try await queue.finish(dead, .success(TestDatabase.outcome([1])))
            try await queue.finish(again, .success(TestDatabase.outcome([2])))
            #expect(try await queue.result(job.id) == [2])
            #expect(try await queue.record(job.id)?.worker == "other")
        }
    }

    @Test func cancelQueuedAtOnceAndRunningThroughTheHeartbeat() async throws {
        try await TestDatabase.withQueue { queue in
            let a = try await queue.submit(input: [1], parameters: RestoreParameters(), deadline: nil)
            let b = try await queue.submit(input: [2], parameters: RestoreParameters(), deadline: nil)
            let claimed = try #require(try await queue.claim(worker: "w"))
            #expect(claimed.record.id == a.id)
            #expect(try await queue.cancel(b.id)?.state == .cancelled)
            #expect(try await queue.cancel(a.id)?.state == .running)
            #expect(try await queue.progress(claimed, stage: "sampling", done: 1, total: 9) == false, "asked to stop")
            try await queue.finish(claimed, .failure(JobFailure(.cancelled, "cancelled while it ran")))
            #expect(try await queue.record(a.id)?.state == .cancelled)
            #expect(try await queue.claim(worker: "w") == nil)
            #expect(try await queue.cancel(UUID().uuidString) == nil)
        }
    }

    @Test func servedThroughPostgresGivesTheSameBytes() async throws {
        let (sessions, admission) = try RestoreServer.sessions(plan: ServedPlans.bsrnet, maxMemory: 4_000_000_000, jobs: 1, threads: 2)
        let memory = try TestService(plan: ServedPlans.bsrnet)
        let expected = try await memory.withEngine {
            try await memory.app.test(.router) { client in
                try await client.execute(uri: "/v1/restores?wait=true&seed=5", method: .post, headers: pngType, body: try png()) { Data(buffer: $0.body) }
            }
        }
        try await TestDatabase.withQueue { queue in
            let metrics = ServiceMetrics()
            let engine = Engine(sessions: sessions, queue: queue, admission: admission, metrics: metrics, logger: TestDatabase.logger,
                                heartbeat: .milliseconds(50), idlePoll: .milliseconds(10))
            let api = RestoreAPI(queue: queue, session: sessions[0], admission: admission, metrics: metrics, ready: { engine.isReady })
            let app = Application(router: api.router(), logger: TestDatabase.logger)
            let work = Task { try await engine.run() }
            defer { work.cancel() }
            try await app.test(.router) { client in
                try await client.execute(uri: "/v1/restores?wait=true&seed=5", method: .post, headers: pngType, body: try png()) { r in
                    #expect(r.status == .ok)
                    #expect(Data(buffer: r.body) == expected)
                }
            }
        }
    }
}
