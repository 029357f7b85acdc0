import Foundation
import Hummingbird
import Logging
import Pipeline
import Plan
import ServiceLifecycle
import Synchronization

/// `diffbir serve`: one plan mapped once, its sessions, the queue, the engine and the HTTP API,
/// run until SIGTERM or SIGINT, then drained (no new jobs; running ones finish).
public enum RestoreServer {
    public struct Options: Sendable {
        public var plan: String
        public var host = "127.0.0.1"
        public var port = 8080
        public var maxMemory: Int?
        /// At most this many jobs at once (nil: one per `threads` cores, as memory allows).
        public var jobs: Int?
        public var threads = 2
        public var queueDepth = 16
        /// Finished jobs (and their images) kept for clients to fetch.
        public var keep = 256
        public var api = RestoreAPI.Configuration()
        /// A PostgreSQL URL: jobs and results in its tables (nil: in this process).
        public var queue: String?
        public init(plan: String) { self.plan = plan }
    }

    /// The plan's sessions (one per slot) and the admission that sized them.
    public static func sessions(plan path: String, maxMemory: Int?, jobs: Int?, threads: Int) throws -> ([RestoreSession], Admission) {
        let file: PlanFile
        do { file = try PlanFile(path: path) } catch { throw RestoreError(error.description) }
        let name = URL(fileURLWithPath: path).lastPathComponent
        let first = try RestoreSession(plan: file, name: name, threads: threads)
        let admission = try Admission.from(session: first, maxMemory: maxMemory, wanted: jobs, threads: threads)
        var sessions = [first]
        while sessions.count < admission.slots { sessions.append(try RestoreSession(plan: file, name: name, threads: threads)) }
        return (sessions, admission)
    }

    public static func run(_ options: Options, logger: Logger) async throws {
        let (sessions, admission) = try Self.sessions(plan: options.plan, maxMemory: options.maxMemory, jobs: options.jobs, threads: options.threads)
        let metrics = ServiceMetrics()
        var services: [any Service] = []
        let queue: any JobQueue
        if let url = options.queue {
            let postgres = try PostgresJobQueue(url: url, depth: options.queueDepth, keep: options.keep, logger: logger)
            services.append(postgres)
            queue = postgres
        } else {
            queue = MemoryJobQueue(depth: options.queueDepth, keep: options.keep)
        }
        // `--jobs 0` (with a PostgreSQL queue): an API server only; workers run the jobs.
        let migrated = Flag(options.queue == nil)
        let engine = options.jobs == 0 ? nil : Engine(sessions: sessions, queue: queue, admission: admission, metrics: metrics, logger: logger,
                                                      queueReady: migrated)
        let api = RestoreAPI(queue: queue, session: sessions[0], admission: admission, metrics: metrics, configuration: options.api,
                             ready: { migrated.isSet && (engine?.isReady ?? true) })
        let app = Application(router: api.router(), configuration: .init(address: .hostname(options.host, port: options.port), serverName: "diffbir"),
                              logger: logger)
        if let engine { services.append(engine) }
        // Shutdown runs from the last service to the first: the queue stops taking jobs, the HTTP
        // server finishes its requests, the engine its running jobs, then the database pool closes.
        services += [app, Drainer(queue: queue)]
        if let postgres = queue as? PostgresJobQueue { services.append(Migration(queue: postgres, done: { migrated.set() })) }
        logger.info("serving", metadata: ["plan": "\(options.plan)", "listen": "\(options.host):\(options.port)", "slots": "\(engine == nil ? 0 : admission.slots)",
                                          "per_job_bytes": "\(admission.perJob)", "queue": "\(options.queue == nil ? "memory" : "postgres")",
                                          "queue_depth": "\(options.queueDepth)"])
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// `diffbir worker`: claims jobs from the PostgreSQL queue and runs them until SIGTERM (the
    /// running job finishes first). `listen`: /healthz, /readyz and /metrics there.
    public static func work(plan: String, queue url: String, maxMemory: Int?, jobs: Int?, threads: Int, lease: Duration = .seconds(30),
                            listen: (String, Int)?, logger: Logger) async throws {
        let (sessions, admission) = try Self.sessions(plan: plan, maxMemory: maxMemory, jobs: jobs, threads: threads)
        let metrics = ServiceMetrics()
        let queue = try PostgresJobQueue(url: url, depth: 0, lease: lease, logger: logger)
        let migrated = Flag(false)
        let engine = Engine(sessions: sessions, queue: queue, admission: admission, metrics: metrics, logger: logger,
                            heartbeat: lease / 5, idlePoll: .milliseconds(100), queueReady: migrated)
        var services: [any Service] = [queue, engine]
        if let listen {
            let router = Router(context: BasicRequestContext.self)
            router.get("/healthz") { _, _ in "ok\n" }
            router.get("/readyz") { _, _ -> Response in
                guard migrated.isSet && engine.isReady else { throw HTTPError(.serviceUnavailable, message: "warming up") }
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready\n")))
            }
            router.get("/metrics") { _, _ -> Response in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: metrics.emit())))
            }
            services.append(Application(router: router, configuration: .init(address: .hostname(listen.0, port: listen.1), serverName: "diffbir-worker"), logger: logger))
        }
        services.append(Migration(queue: queue, done: { migrated.set() }))
        logger.info("working", metadata: ["plan": "\(plan)", "slots": "\(admission.slots)", "per_job_bytes": "\(admission.perJob)"])
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// Creates or migrates the PostgreSQL schema once the pool runs (retrying while the server is
/// not reachable), then waits for shutdown.
struct Migration: Service {
    let queue: PostgresJobQueue
    let done: @Sendable () -> Void
    func run() async throws {
        var delay = Duration.milliseconds(200)
        // (The pool starts beside this service: a moment for its run() to begin.)
        try? await Task.sleep(for: .milliseconds(100))
        while !Task.isShuttingDownGracefully {
            do {
                let version = try await queue.migrate()
                queue.logger.info("queue schema ready", metadata: ["version": "\(version)"])
                done()
                break
            } catch {
                queue.logger.warning("the queue's database is not reachable yet: \(describeForLog(error))")
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
        try? await gracefulShutdown()
    }
}

/// Waits for graceful shutdown, then closes the queue to new jobs.
struct Drainer: Service {
    let queue: any JobQueue
    func run() async throws {
        try? await gracefulShutdown()
        await queue.drain()
    }
}
