import Foundation
import Logging
import NIOSSL
import Pipeline
import Plan
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Jobs and results in a PostgreSQL table, shared by any number of API servers (`diffbir serve
/// --queue postgres://…`) and workers (`diffbir worker`). Workers claim the oldest queued job with
/// `SELECT … FOR UPDATE SKIP LOCKED` under a lease that their heartbeat renews; a job whose lease
/// ran out (its worker died) is claimed again; a result is written only by the claim that holds the
/// job (`claim` counts claims), so each job ends once. The schema is created and migrated by the tool.
public final class PostgresJobQueue: JobQueue, Service {
    let client: PostgresClient
    let logger: Logger
    let depth: Int
    let keep: Int
    let lease: Duration
    let draining = Flag()

    /// `url`: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]`.
    public init(url: String, depth: Int, keep: Int = 256, lease: Duration = .seconds(30), logger: Logger) throws(RestoreError) {
        client = PostgresClient(configuration: try Self.configuration(url), backgroundLogger: logger)
        self.logger = logger
        self.depth = max(depth, 0)
        self.keep = max(keep, 1)
        self.lease = lease
    }

    static func configuration(_ url: String) throws(RestoreError) -> PostgresClient.Configuration {
        guard let c = URLComponents(string: url), c.scheme == "postgres" || c.scheme == "postgresql", let host = c.host, !host.isEmpty else {
            throw RestoreError("--queue \(url): a PostgreSQL URL, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        }
        let database = c.path.hasPrefix("/") ? String(c.path.dropFirst()) : c.path
        let mode = c.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        let tls: PostgresClient.Configuration.TLS
        switch mode {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(.makeClientConfiguration())
        case "require": tls = .require(.makeClientConfiguration())
        default: throw RestoreError("--queue: sslmode=\(mode): disable, prefer or require")
        }
        return PostgresClient.Configuration(host: host, port: c.port ?? 5432, username: c.user ?? "postgres",
                                            password: c.password?.removingPercentEncoding, database: database.isEmpty ? nil : database, tls: tls)
    }

    /// The connection pool: the first service of its group, so the last shut down (after the
    /// servers and the engine have used it for their last writes).
    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.client.run() }
    }

    // MARK: schema

    /// Each step once, in order, under an advisory lock (many servers may start at once).
    static let migrations: [String] = [
        """
        CREATE TABLE diffbir_jobs (
            id uuid PRIMARY KEY,
            state text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
            parameters text NOT NULL,
            input bytea,
            result bytea,
            submitted timestamptz NOT NULL DEFAULT now(),
            started timestamptz,
            finished timestamptz,
            deadline timestamptz,
            stage text,
            done integer NOT NULL DEFAULT 0,
            total integer NOT NULL DEFAULT 0,
            error text,
            error_status integer,
            result_bytes integer,
            output_width integer,
            output_height integer,
            seconds text,
            worker text,
            attempts integer NOT NULL DEFAULT 0,
            claim bigint NOT NULL DEFAULT 0,
            lease_until timestamptz,
            cancel_requested boolean NOT NULL DEFAULT false
        )
        """,
        "CREATE INDEX diffbir_jobs_waiting ON diffbir_jobs (submitted) WHERE state IN ('queued', 'running')",
        "CREATE INDEX diffbir_jobs_finished ON diffbir_jobs (finished) WHERE finished IS NOT NULL",
    ]

    /// Creates or brings up to date the tables; returns the schema version.
    @discardableResult
    public func migrate() async throws -> Int {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(7243001)", logger: logger)
            try await connection.query("CREATE TABLE IF NOT EXISTS diffbir_schema (version integer NOT NULL)", logger: logger)
            var version = 0
            for try await v in try await connection.query("SELECT version FROM diffbir_schema", logger: logger).decode(Int.self) { version = v }
            if version == 0 { try await connection.query("INSERT INTO diffbir_schema VALUES (0)", logger: logger) }
            for (k, sql) in Self.migrations.enumerated() where k >= version {
                try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
            }
            let now = Self.migrations.count
            try await connection.query("UPDATE diffbir_schema SET version = \(now)", logger: logger)
            return now
        }
    }

    // MARK: the API's side

    public func submit(input: [UInt8], parameters: RestoreParameters, deadline: Date?) async throws -> JobRecord {
        if draining.isSet { throw SubmitRefusal.draining }
        let record = JobRecord(id: UUID().uuidString.lowercased(), parameters: parameters, deadline: deadline)
        let id = UUID(uuidString: record.id) ?? UUID()
        let json = RestoreAPI.text(parameters.json)
        let bytes = ByteBuffer(bytes: input)
        var inserted = false
        let rows = try await client.query("""
            INSERT INTO diffbir_jobs (id, state, parameters, input, submitted, deadline)
            SELECT \(id), 'queued', \(json), \(bytes), \(record.submitted), \(deadline)
            WHERE (SELECT count(*) FROM diffbir_jobs WHERE state = 'queued') < \(depth)
            RETURNING id
            """, logger: logger)
        for try await _ in rows.decode(UUID.self) { inserted = true }
        if !inserted {
            let queued = try await queuedCount()
            var mean = 1.0
            for try await m in try await client.query("""
                SELECT coalesce(avg(extract(epoch FROM finished - started)), 1)::float8 FROM
                  (SELECT finished, started FROM diffbir_jobs WHERE state = 'succeeded' ORDER BY finished DESC LIMIT 20) AS recent
                """, logger: logger).decode(Double.self) { mean = m }
            throw SubmitRefusal.queueFull(queued: queued, retryAfter: max(1, Int((mean * Double(queued + 1)).rounded(.up))))
        }
        return record
    }

    static let columns = """
        id, state, parameters, submitted, started, finished, deadline, stage, done, total, error, error_status,
        result_bytes, output_width, output_height, seconds, worker, attempts
        """

    public func record(_ id: String) async throws -> JobRecord? {
        guard let uuid = UUID(uuidString: id) else { return nil }
        let rows = try await client.query("SELECT \(unescaped: Self.columns) FROM diffbir_jobs WHERE id = \(uuid)", logger: logger)
        for try await row in rows.decode((UUID, String, String, Date, Date?, Date?, Date?, String?, Int, Int, String?, Int?, Int?, Int?, Int?, String?, String?, Int).self) {
            var r = JobRecord(id: row.0.uuidString.lowercased(), parameters: Self.parameters(row.2), submitted: row.3, deadline: row.6)
            r.state = JobRecord.State(rawValue: row.1) ?? .failed
            r.started = row.4
            r.finished = row.5
            r.stage = row.7
            r.done = row.8
            r.total = row.9
            r.error = row.10
            r.errorStatus = row.11
            r.resultBytes = row.12
            r.outputWidth = row.13
            r.outputHeight = row.14
            if let s = row.15, let o = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Double] { r.seconds = o }
            r.worker = row.16
            r.attempts = row.17
            return r
        }
        return nil
    }

    static func parameters(_ json: String) -> RestoreParameters {
        guard let o = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return RestoreParameters() }
        let fields = o.compactMap { (k, v) in RestoreParameters.fieldText(v).map { (k, $0) } }
        return (try? RestoreParameters(fields: fields)) ?? RestoreParameters()
    }

    public func result(_ id: String) async throws -> [UInt8]? {
        guard let uuid = UUID(uuidString: id) else { return nil }
        for try await b in try await client.query("SELECT result FROM diffbir_jobs WHERE id = \(uuid) AND state = 'succeeded'", logger: logger).decode(ByteBuffer?.self) {
            return b.map { Array(buffer: $0) }
        }
        return nil
    }

    public func cancel(_ id: String) async throws -> JobRecord? {
        guard let uuid = UUID(uuidString: id) else { return nil }
        // Queued (or running under a lease that ran out): cancelled now. Running: asked to stop.
        try await client.query("""
            UPDATE diffbir_jobs SET state = 'cancelled', finished = now(), input = NULL, error = 'cancelled before it started', error_status = 409
            WHERE id = \(uuid) AND (state = 'queued' OR (state = 'running' AND lease_until < now()))
            """, logger: logger)
        try await client.query("UPDATE diffbir_jobs SET cancel_requested = true WHERE id = \(uuid) AND state = 'running'", logger: logger)
        return try await record(id)
    }

    public func queuedCount() async throws -> Int {
        for try await n in try await client.query("SELECT count(*)::int8 FROM diffbir_jobs WHERE state = 'queued'", logger: logger).decode(Int.self) { return n }
        return 0
    }

    public func drain() async { draining.set() }

    /// Draining only: whether the table is full is decided when the job is inserted (one statement).
    public func fullness() async throws -> SubmitRefusal? { draining.isSet ? .draining : nil }

    /// Results stay in the table (any API server may be asked for them) until `keep` newer jobs end.
    public func delivered(_ id: String) async {}

    // MARK: the workers' side

    public func claim(worker: String) async throws -> ClaimedJob? {
        let seconds = Double(lease.components.seconds) + Double(lease.components.attoseconds) / 1e18
        let rows = try await client.query("""
            UPDATE diffbir_jobs SET state = 'running', started = now(), worker = \(worker), attempts = attempts + 1, claim = claim + 1,
                   lease_until = now() + make_interval(secs => \(seconds)), stage = NULL, done = 0, total = 0
            WHERE id = (SELECT id FROM diffbir_jobs
                        WHERE (state = 'queued' OR (state = 'running' AND lease_until < now())) AND NOT cancel_requested
                        ORDER BY submitted FOR UPDATE SKIP LOCKED LIMIT 1)
            RETURNING id, parameters, input, submitted, started, deadline, claim, attempts
            """, logger: logger)
        for try await row in rows.decode((UUID, String, ByteBuffer?, Date, Date?, Date?, Int, Int).self) {
            var r = JobRecord(id: row.0.uuidString.lowercased(), parameters: Self.parameters(row.1), submitted: row.3, deadline: row.5)
            r.state = .running
            r.started = row.4
            r.worker = worker
            r.attempts = row.7
            return ClaimedJob(record: r, input: row.2.map { Array(buffer: $0) } ?? [], claim: UInt64(row.6))
        }
        // Cancellations asked of jobs whose worker died: ended here.
        try await client.query("""
            UPDATE diffbir_jobs SET state = 'cancelled', finished = now(), input = NULL, error = 'cancelled', error_status = 409
            WHERE state = 'running' AND lease_until < now() AND cancel_requested
            """, logger: logger)
        return nil
    }

    public func progress(_ job: ClaimedJob, stage: String, done: Int, total: Int) async throws -> Bool {
        guard let uuid = UUID(uuidString: job.record.id) else { return false }
        let seconds = Double(lease.components.seconds) + Double(lease.components.attoseconds) / 1e18
        let rows = try await client.query("""
            UPDATE diffbir_jobs SET stage = \(stage.isEmpty ? nil : stage), done = \(done), total = \(total),
                   lease_until = now() + make_interval(secs => \(seconds))
            WHERE id = \(uuid) AND claim = \(Int(job.claim)) AND state = 'running'
            RETURNING cancel_requested
            """, logger: logger)
        for try await cancel in rows.decode(Bool.self) { return !cancel }
        return false  // the claim was lost (the lease ran out and another worker took the job)
    }

    public func finish(_ job: ClaimedJob, _ outcome: Result<RestoreOutcome, JobFailure>) async throws {
        guard let uuid = UUID(uuidString: job.record.id) else { return }
        let claim = Int(job.claim)
        switch outcome {
        case .success(let o):
            let seconds = RestoreAPI.text(Dictionary(o.seconds.map { ($0.stage, $0.seconds) }, uniquingKeysWith: +))
            try await client.query("""
                UPDATE diffbir_jobs SET state = 'succeeded', finished = now(), result = \(ByteBuffer(bytes: o.bytes)), input = NULL,
                       result_bytes = \(o.bytes.count), output_width = \(o.outputSize.width), output_height = \(o.outputSize.height),
                       seconds = \(seconds), lease_until = NULL
                WHERE id = \(uuid) AND claim = \(claim) AND state = 'running'
                """, logger: logger)
        case .failure(let f):
            let state = f.kind == .cancelled ? "cancelled" : "failed"
            try await client.query("""
                UPDATE diffbir_jobs SET state = \(state), finished = now(), input = NULL, error = \(f.message), error_status = \(f.status), lease_until = NULL
                WHERE id = \(uuid) AND claim = \(claim) AND state = 'running'
                """, logger: logger)
        }
        // Finished jobs beyond the last `keep` are forgotten.
        try await client.query("""
            DELETE FROM diffbir_jobs WHERE id IN (SELECT id FROM diffbir_jobs WHERE finished IS NOT NULL ORDER BY finished DESC OFFSET \(keep))
            """, logger: logger)
    }
}

/// A flag set once, read from any thread (a class: a local `Atomic` captured by closures crashes
/// the 6.3 optimiser).
public final class Flag: Sendable {
    let value: Atomic<Bool>
    public init(_ initial: Bool = false) { value = Atomic(initial) }
    public var isSet: Bool { value.load(ordering: .acquiring) }
    public func set() { value.store(true, ordering: .releasing) }
}

/// An error in one line for a log. `PSQLError`'s description is deliberately free of detail, and its
/// debug description carries the query's bindings (for a submit, the whole input image): this keeps
/// the error's code, the server's message and SQLSTATE, and the underlying cause.
func describeForLog(_ error: any Error) -> String {
    guard let e = error as? PSQLError else { return "\(error)" }
    var line = "PostgreSQL \(e.code)"
    if let message = e.serverInfo?[.message] { line += ": \(message)" }
    if let state = e.serverInfo?[.sqlState] { line += " (SQLSTATE \(state))" }
    if let cause = e.underlying { line += ": \(cause)" }
    return line
}
