import Foundation
import Hummingbird
import Logging
import Pipeline
import Plan
import ServiceLifecycle

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

    /// The application: API in front, engine behind, both on `queue`.
    public static func application(sessions: [RestoreSession], admission: Admission, queue: any JobQueue, options: Options,
                                   metrics: ServiceMetrics, logger: Logger) -> (some ApplicationProtocol, Engine) {
        let engine = Engine(sessions: sessions, queue: queue, admission: admission, metrics: metrics, logger: logger)
        let api = RestoreAPI(queue: queue, session: sessions[0], admission: admission, metrics: metrics, configuration: options.api,
                             ready: { engine.isReady })
        let app = Application(router: api.router(), configuration: .init(address: .hostname(options.host, port: options.port), serverName: "diffbir"),
                              logger: logger)
        return (app, engine)
    }

    public static func run(_ options: Options, logger: Logger) async throws {
        let (sessions, admission) = try Self.sessions(plan: options.plan, maxMemory: options.maxMemory, jobs: options.jobs, threads: options.threads)
        let queue = MemoryJobQueue(depth: options.queueDepth, keep: options.keep)
        let metrics = ServiceMetrics()
        let (app, engine) = application(sessions: sessions, admission: admission, queue: queue, options: options, metrics: metrics, logger: logger)
        logger.info("serving", metadata: ["plan": "\(options.plan)", "listen": "\(options.host):\(options.port)", "slots": "\(admission.slots)",
                                          "per_job_bytes": "\(admission.perJob)", "queue_depth": "\(options.queueDepth)"])
        // Shutdown runs from the last service to the first: the queue stops taking jobs, the HTTP
        // server finishes its requests, then the engine its running jobs.
        let group = ServiceGroup(configuration: .init(services: [engine, app, Drainer(queue: queue)],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
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
