import ArgumentParser
import Dispatch
import Foundation
import Logging
import Service

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve restores over HTTP: one plan mapped once, a bounded queue, Prometheus metrics.",
        discussion: """
        POST an image (PNG, JPEG or WebP) to /v1/restores (fields as query parameters: upscale, steps, \
        cfg, sampler, seed, strength, stage1-only, format, quality; ?wait=true answers with the image), \
        then GET /v1/restores/ID, /v1/restores/ID/image or /v1/restores/ID/events (Server-Sent Events); \
        DELETE /v1/restores/ID cancels. /healthz, /readyz (after one warm-up run), /metrics, \
        /openapi.json, and a page for people at /. How many jobs run at once follows from the plan's \
        weights, one job's working memory and --max-memory. SIGTERM or SIGINT drains: no new jobs, \
        running ones finish, then exit. docs/serving.md has the details.
        """
    )

    @Option(help: "The plan to serve (diffbir compile).")
    var plan: String

    @Option(help: "Address and port to listen on.")
    var listen = "127.0.0.1:8080"

    @Option(name: .customLong("max-memory"), help: "Memory the service may use, e.g. 2G (default: the memory the machine has available); sets how many jobs run at once and the largest image accepted.")
    var maxMemory: ByteSize?

    @Option(name: .customLong("queue-depth"), help: "Jobs that may wait; beyond, 429 with Retry-After.")
    var queueDepth = 16

    @Option(name: .customLong("token-file"), help: "A file of bearer tokens, one per line: /v1/ then requires Authorization: Bearer TOKEN.")
    var tokenFile: String?

    @Option(help: "At most this many jobs at once (default: one per --threads cores, as memory allows); 0 with --queue: an API server only, workers run the jobs.")
    var jobs: Int?

    @Option(help: "Keep jobs and results in PostgreSQL, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (schema created and migrated by the tool), shared with `diffbir worker`s on any number of machines (default: in this process).")
    var queue: String?

    @Option(name: .customLong("max-body"), help: "Largest request body accepted, e.g. 32M (413 above).")
    var maxBody = ByteSize(bytes: 32_000_000, description: "32M")

    @Option(name: .customLong("request-timeout"), help: "Seconds a ?wait=true request waits before answering 202.")
    var requestTimeout: Double = 300

    @Option(help: "Finished jobs kept with their images for clients to fetch.")
    var keep = 256

    @OptionGroup(title: "Threads")
    var threading: ThreadOptions

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        if queueDepth < 0 { throw ValidationError("--queue-depth must be at least 0") }
        if let jobs, jobs < (queue == nil ? 1 : 0) { throw ValidationError(queue == nil ? "--jobs must be at least 1 (0 only with --queue)" : "--jobs must be at least 0") }
        if keep < 1 { throw ValidationError("--keep must be at least 1") }
        if !(requestTimeout.isFinite && requestTimeout > 0) { throw ValidationError("--request-timeout must be a positive number of seconds") }
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("--log-level \(logLevel): one of trace, debug, info, notice, warning, error, critical") }
        _ = try Self.address(listen)
    }

    static func address(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen \(text): HOST:PORT, e.g. 127.0.0.1:8080")
        }
        return (String(text[..<colon]), port)
    }

    static func tokens(_ path: String) throws -> Set<String> {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ToolError("\(path): cannot read the token file") }
        let tokens = Set(text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") })
        guard !tokens.isEmpty else { throw ToolError("\(path): no tokens in the token file") }
        return tokens
    }

    func run() throws {
        var options = RestoreServer.Options(plan: plan)
        (options.host, options.port) = try Self.address(listen)
        options.maxMemory = maxMemory?.bytes
        options.jobs = jobs
        options.threads = threading.threads
        options.queueDepth = queueDepth
        options.keep = keep
        options.queue = queue
        options.api.maxBodyBytes = maxBody.bytes
        options.api.requestTimeout = .milliseconds(Int64(requestTimeout * 1000))
        if let tokenFile { options.api.tokens = try Self.tokens(tokenFile) }
        var logger = Logger(label: "diffbir.serve")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        try runAsync { [options, logger] in try await RestoreServer.run(options, logger: logger) }
    }
}

struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run restores from a PostgreSQL queue that `diffbir serve --queue` fills.",
        discussion: """
        Claims the oldest waiting job (SELECT … FOR UPDATE SKIP LOCKED) under a lease its heartbeat         renews, restores it with the plan, and writes the result once. A worker that dies loses its         lease and its job runs again on another. Start as many as the queue needs, on any machines,         each with the same plan. SIGTERM finishes the running job, then exits.
        """
    )

    @Option(help: "The plan (the same one the API servers were given).")
    var plan: String

    @Option(help: "The queue: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE.")
    var queue: String

    @Option(name: .customLong("max-memory"), help: "Memory this worker may use, e.g. 2G (default: the memory the machine has available).")
    var maxMemory: ByteSize?

    @Option(help: "At most this many jobs at once (default: one per --threads cores, as memory allows).")
    var jobs: Int?

    @Option(help: "Serve /healthz, /readyz and /metrics on HOST:PORT (default: none).")
    var listen: String?

    @Option(help: "Seconds a claim holds a job without a heartbeat (renewed five times as often); a worker silent that long has its job run again elsewhere.")
    var lease: Double = 30

    @OptionGroup(title: "Threads")
    var threading: ThreadOptions

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if let listen { _ = try Serve.address(listen) }
        if !(lease.isFinite && lease >= 1 && lease <= 3600) { throw ValidationError("--lease must be in 1...3600 seconds") }
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("--log-level \(logLevel): one of trace, debug, info, notice, warning, error, critical") }
    }

    func run() throws {
        var logger = Logger(label: "diffbir.worker")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let address = try listen.map(Serve.address)
        let (plan, queue, maxMemory, jobs, threads) = (self.plan, self.queue, self.maxMemory?.bytes, self.jobs, threading.threads)
        let lease = Duration.milliseconds(Int64(self.lease * 1000))
        try runAsync { [logger] in
            try await RestoreServer.work(plan: plan, queue: queue, maxMemory: maxMemory, jobs: jobs, threads: threads, lease: lease,
                                         listen: address, logger: logger)
        }
    }
}

/// Runs `body` on Swift's concurrency pool and waits for it (the commands are synchronous).
func runAsync(_ body: @escaping @Sendable () async throws -> Void) throws {
    let failure = Box()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { try await body() } catch { failure.set("\(error)") }
        done.signal()
    }
    done.wait()
    if let message = failure.get() { throw ToolError(message) }
}

/// A message handed from the server's task to the command.
final class Box: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    func set(_ v: String) { lock.lock(); value = v; lock.unlock() }
    func get() -> String? { lock.lock(); defer { lock.unlock() }; return value }
}
