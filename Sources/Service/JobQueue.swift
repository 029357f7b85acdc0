import Foundation
import Pipeline

/// Why a job was not accepted.
public enum SubmitRefusal: Error, Sendable, Equatable {
    /// `queued` jobs wait already (the queue's depth); try again after about `retryAfter` seconds.
    case queueFull(queued: Int, retryAfter: Int)
    /// The service is draining (SIGTERM): no new jobs.
    case draining
}

/// A job handed to a worker: its input, parameters, and the claim's token (a lease for the
/// PostgreSQL queue: results from a claim that lost its lease are dropped).
public struct ClaimedJob: Sendable {
    public var record: JobRecord
    public var input: [UInt8]
    public var claim: UInt64
}

/// Where jobs wait and results are kept: in this process (`MemoryJobQueue`) or in PostgreSQL
/// (`PostgresJobQueue`), shared by API servers and workers on many machines.
public protocol JobQueue: Sendable {
    // The API's side.
    func submit(input: [UInt8], parameters: RestoreParameters, deadline: Date?) async throws -> JobRecord
    func record(_ id: String) async throws -> JobRecord?
    /// The encoded image of a job that succeeded.
    func result(_ id: String) async throws -> [UInt8]?
    /// Cancels a queued job at once, a running one between two steps; nil when no such job.
    func cancel(_ id: String) async throws -> JobRecord?
    /// The image was handed to the client that waited for it (`?wait=true`): a queue that keeps
    /// images in memory drops it now, so memory stays flat however many jobs pass.
    func delivered(_ id: String) async
    /// Why a job would be refused now (full, draining), or nil.
    func fullness() async throws -> SubmitRefusal?
    /// Jobs waiting (not running).
    func queuedCount() async throws -> Int
    /// No new jobs from now on.
    func drain() async

    // The workers' side.
    /// The next job to run, oldest first; nil when there is none now.
    func claim(worker: String) async throws -> ClaimedJob?
    /// Progress of a claimed job; returns whether it should go on (false: cancelled, or the claim lost).
    func progress(_ job: ClaimedJob, stage: String, done: Int, total: Int) async throws -> Bool
    /// The end of a claimed job: written once (a second completion of the same job is ignored).
    func finish(_ job: ClaimedJob, _ outcome: Result<RestoreOutcome, JobFailure>) async throws
}

/// How a job failed: a message and the HTTP status that describes it.
public struct JobFailure: Error, Sendable {
    public enum Kind: Sendable { case badInput, deadline, cancelled, internalError }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var status: Int {
        switch kind {
        case .badInput: return 400
        case .deadline: return 504
        case .cancelled: return 409
        case .internalError: return 500
        }
    }
}

/// Jobs in this process: a bounded FIFO of inputs, and the last `keep` finished jobs with their
/// images (older ones are forgotten, so memory stays flat however many jobs pass).
public actor MemoryJobQueue: JobQueue {
    let depth: Int
    let keep: Int
    var jobs: [String: JobRecord] = [:]
    var inputs: [String: [UInt8]] = [:]
    var results: [String: [UInt8]] = [:]
    var waiting: [String] = []
    var finishedOrder: [String] = []
    var cancelRequested: Set<String> = []
    var delivered: Set<String> = []
    var draining = false
    var claims: UInt64 = 0
    /// Mean run time of the last jobs, for Retry-After.
    var meanRunSeconds = 1.0

    public init(depth: Int, keep: Int = 256) {
        self.depth = max(depth, 0)
        self.keep = max(keep, 1)
    }

    public func fullness() -> SubmitRefusal? {
        if draining { return .draining }
        guard waiting.count < depth else {
            return .queueFull(queued: waiting.count, retryAfter: max(1, Int((meanRunSeconds * Double(waiting.count + 1)).rounded(.up))))
        }
        return nil
    }

    public func submit(input: [UInt8], parameters: RestoreParameters, deadline: Date?) throws -> JobRecord {
        if let refusal = fullness() { throw refusal }
        let record = JobRecord(id: UUID().uuidString.lowercased(), parameters: parameters, deadline: deadline)
        jobs[record.id] = record
        inputs[record.id] = input
        waiting.append(record.id)
        return record
    }

    public func record(_ id: String) -> JobRecord? { jobs[id] }
    public func result(_ id: String) -> [UInt8]? { results[id] }
    public func queuedCount() -> Int { waiting.count }
    public func delivered(_ id: String) {
        results[id] = nil
        delivered.insert(id)
    }
    /// Whether a job's image went to a client that waited for it (and is no longer kept).
    public func wasDelivered(_ id: String) -> Bool { delivered.contains(id) }
    public func drain() { draining = true }

    public func cancel(_ id: String) -> JobRecord? {
        guard var r = jobs[id] else { return nil }
        switch r.state {
        case .queued:
            waiting.removeAll { $0 == id }
            inputs[id] = nil
            r.state = .cancelled
            r.finished = Date()
            r.error = "cancelled before it started"
            jobs[id] = r
            retire(id)
        case .running:
            cancelRequested.insert(id)
        default: break
        }
        return jobs[id]
    }

    public func claim(worker: String) -> ClaimedJob? {
        while !waiting.isEmpty {
            let id = waiting.removeFirst()
            guard var r = jobs[id], let input = inputs.removeValue(forKey: id) else { continue }
            r.state = .running
            r.started = Date()
            r.worker = worker
            r.attempts += 1
            jobs[id] = r
            claims += 1
            return ClaimedJob(record: r, input: input, claim: claims)
        }
        return nil
    }

    public func progress(_ job: ClaimedJob, stage: String, done: Int, total: Int) -> Bool {
        guard var r = jobs[job.record.id], r.state == .running else { return false }
        r.stage = stage
        r.done = done
        r.total = total
        jobs[job.record.id] = r
        return !cancelRequested.contains(job.record.id)
    }

    public func finish(_ job: ClaimedJob, _ outcome: Result<RestoreOutcome, JobFailure>) {
        let id = job.record.id
        guard var r = jobs[id], r.state == .running else { return }
        cancelRequested.remove(id)
        r.finished = Date()
        switch outcome {
        case .success(let o):
            r.state = .succeeded
            r.resultBytes = o.bytes.count
            r.outputWidth = o.outputSize.width
            r.outputHeight = o.outputSize.height
            r.seconds = Dictionary(o.seconds.map { ($0.stage, $0.seconds) }, uniquingKeysWith: +)
            results[id] = o.bytes
            if let started = r.started, let finished = r.finished {
                meanRunSeconds = 0.8 * meanRunSeconds + 0.2 * finished.timeIntervalSince(started)
            }
        case .failure(let f):
            r.state = f.kind == .cancelled ? .cancelled : .failed
            r.error = f.message
            r.errorStatus = f.status
        }
        jobs[id] = r
        retire(id)
    }

    /// Keeps the last `keep` finished jobs.
    func retire(_ id: String) {
        finishedOrder.append(id)
        while finishedOrder.count > keep {
            let old = finishedOrder.removeFirst()
            jobs[old] = nil
            results[old] = nil
            delivered.remove(old)
        }
    }
}
