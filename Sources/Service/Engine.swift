import Dispatch
import Foundation
import Logging
import Pipeline
import Plan
import ServiceLifecycle
import Synchronization

/// How many jobs run at once and how much memory each may use, from the plan and `--max-memory`.
public struct Admission: Sendable, Equatable {
    /// Jobs that run at once (each with its own session: arena and packed weights).
    public var slots: Int
    /// Working memory one job may use (the mapped weights, shared, not counted).
    public var perJob: Int
    /// The plan's weights, mapped once.
    public var weights: Int
    /// The least working memory a job needs (a 64×64 input).
    public var smallestJob: Int

    /// `maxMemory`: the budget for the whole process (nil: the memory the machine has available);
    /// `wanted`: at most this many jobs at once (default: one per `threads` cores).
    public static func from(session: RestoreSession, maxMemory: Int?, wanted: Int?, threads: Int) throws(RestoreError) -> Admission {
        let weights = session.weightBytes
        let smallest = session.workingMemory(height: 64, width: 64)
        let cores = max(ProcessInfo.processInfo.activeProcessorCount, 1)
        let want = max(wanted ?? max(cores / max(threads, 1), 1), 1)
        let budget = maxMemory ?? SystemMemory.available() ?? (weights + want * smallest * 4)
        func gb(_ n: Int) -> String { String(format: "%.2f GB", Double(n) / 1e9) }
        guard budget >= weights + smallest else {
            throw RestoreError("--max-memory \(gb(budget)) is below the plan's weights (\(gb(weights))) plus one job's working memory (\(gb(smallest)) for a 64×64 input)")
        }
        let slots = min(want, (budget - weights) / smallest)
        return Admission(slots: slots, perJob: (budget - weights) / slots, weights: weights, smallestJob: smallest)
    }
}

/// A session and the thread it computes on.
final class Slot: @unchecked Sendable {
    let session: RestoreSession
    let queue: DispatchQueue
    init(_ session: RestoreSession, index: Int) {
        self.session = session
        queue = DispatchQueue(label: "diffbir.slot.\(index)")
    }

    /// Runs `body` on this slot's thread (the restore blocks it for seconds: never on Swift's
    /// cooperative pool or an event loop).
    func run<T: Sendable>(_ body: @escaping @Sendable (RestoreSession) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body(self.session) }) }
        }
    }
}

/// The state one running job shares between its compute thread and its heartbeat.
final class RunningJob: Sendable {
    struct Progress: Sendable { var stage = "", done = 0, total = 0, steps = 0 }
    let progress = Mutex(Progress())
    let stop = Flag()
}

/// Runs jobs from a queue on `slots` sessions of one plan: claims, decodes, restores, reports
/// progress (and renews the claim) every `heartbeat`, stores the result. On graceful shutdown it
/// stops claiming and lets the running jobs finish.
public final class Engine: Service, Sendable {
    let slots: [Slot]
    let queue: any JobQueue
    let metrics: ServiceMetrics
    let logger: Logger
    let admission: Admission
    let worker: String
    let heartbeat: Duration
    let idlePoll: Duration
    let warmedUp = Flag()

    /// Set when the queue can be used (its schema migrated); nil: at once.
    let queueReady: Flag?

    /// `sessions`: one per slot, all on the same plan.
    public init(sessions: [RestoreSession], queue: any JobQueue, admission: Admission, metrics: ServiceMetrics, logger: Logger,
                heartbeat: Duration = .milliseconds(200), idlePoll: Duration = .milliseconds(20), queueReady: Flag? = nil) {
        self.queueReady = queueReady
        slots = sessions.enumerated().map { Slot($1, index: $0) }
        self.queue = queue
        self.metrics = metrics
        self.logger = logger
        self.admission = admission
        self.heartbeat = heartbeat
        self.idlePoll = idlePoll
        worker = "\(ProcessInfo.processInfo.hostName):\(getpid())"
    }

    public var isReady: Bool { warmedUp.isSet }

    /// One restore of a small gray image on each session: the weights paged in and packed, the
    /// arena touched, before the service says it is ready.
    public func warmUp() async throws {
        for slot in slots {
            try await slot.run { session in
                let image = LoadedImage(width: 64, height: 64, rgb8: [UInt8](repeating: 128, count: 64 * 64 * 3), bitDepth: 8, rgb16: nil, alpha: nil)
                var p = RestoreParameters()
                if session.isDiffBIR { p.steps = 1 }
                _ = try session.restore(image, p)
            }
        }
        warmedUp.set()
    }

    public func run() async throws {
        if !isReady { try await warmUp() }
        while let gate = queueReady, !gate.isSet, !Task.isShuttingDownGracefully, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(50))
        }
        logger.info("ready", metadata: ["slots": "\(slots.count)", "per_job_bytes": "\(admission.perJob)", "weights_bytes": "\(admission.weights)"])
        await withTaskGroup(of: Void.self) { group in
            for slot in slots {
                group.addTask { await self.loop(slot) }
            }
        }
    }

    /// Claims and runs jobs until graceful shutdown.
    func loop(_ slot: Slot) async {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let job: ClaimedJob?
            do { job = try await queue.claim(worker: worker) } catch is CancellationError {
                break
            } catch {
                logger.error("claiming a job failed: \(describeForLog(error))")
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            guard let job else {
                try? await Task.sleep(for: idlePoll)
                continue
            }
            await execute(job, on: slot)
        }
    }

    func execute(_ job: ClaimedJob, on slot: Slot) async {
        let record = job.record
        var log = logger
        log[metadataKey: "job"] = "\(record.id)"
        if let started = record.started { metrics.wait.record(max(0, started.timeIntervalSince(record.submitted))) }
        metrics.running.increment()
        defer { metrics.running.decrement() }
        let deadline = record.deadline
        if let deadline, Date() > deadline {
            metrics.outcome(.failed)
            try? await queue.finish(job, .failure(JobFailure(.deadline, "the deadline passed before it started")))
            return
        }
        let running = RunningJob()
        let start = ContinuousClock.now
        // The heartbeat: progress to the queue (and the claim renewed), cancellation back.
        let beat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: heartbeat)
                let p = running.progress.withLock { $0 }
                let goOn = (try? await queue.progress(job, stage: p.stage, done: p.done, total: p.total)) ?? true
                if !goOn { running.stop.set() }
            }
        }
        defer { beat.cancel() }
        let budget = admission.perJob
        let result: Result<RestoreOutcome, JobFailure>
        do {
            let outcome = try await slot.run { session -> RestoreOutcome in
                session.isCancelled = {
                    running.stop.isSet || (deadline.map { Date() > $0 } ?? false)
                }
                let input: LoadedImage
                do {
                    input = try job.input.withUnsafeBytes { try InputImage.decode($0, name: "the request's image", maxDecodedBytes: max(budget / 16, 1)) }
                } catch { throw JobFailure(.badInput, "\(error)") }
                let need = session.workingMemory(height: input.height, width: input.width, upscale: job.record.parameters.upscale)
                if need > budget {
                    throw JobFailure(.badInput, String(format: "a %d×%d image needs %.2f GB of working memory with this plan; this server gives a job %.2f GB",
                                                       input.width, input.height, Double(need) / 1e9, Double(budget) / 1e9))
                }
                var lastStepTime = DispatchTime.now().uptimeNanoseconds
                do {
                    return try session.restore(input, job.record.parameters, memoryBudget: budget + session.weightBytes) { stage, done, total in
                        running.progress.withLock { $0.stage = stage; $0.done = done; $0.total = total }
                        if stage == "sampling" && done > 0 {
                            let now = DispatchTime.now().uptimeNanoseconds
                            self.metrics.step.record(Double(now - lastStepTime) / 1e9)
                            lastStepTime = now
                        } else if stage == "sampling" {
                            lastStepTime = DispatchTime.now().uptimeNanoseconds
                        }
                    }
                } catch is RestoreCancelled {
                    if let deadline, Date() > deadline { throw JobFailure(.deadline, "the deadline passed while it ran") }
                    throw JobFailure(.cancelled, "cancelled while it ran")
                } catch let e as RestoreError {
                    throw JobFailure(.badInput, e.description)
                }
            }
            result = .success(outcome)
        } catch let f as JobFailure {
            result = .failure(f)
        } catch {
            result = .failure(JobFailure(.internalError, "\(error)"))
        }
        let elapsed = start.duration(to: .now).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        metrics.run.record(seconds)
        switch result {
        case .success: metrics.outcome(.succeeded)
        case .failure(let f): metrics.outcome(f.kind == .cancelled ? .cancelled : .failed)
        }
        if case .failure(let f) = result { log.info("job ended: \(f.message)", metadata: ["status": "\(f.status)"]) }
        else { log.info("job done", metadata: ["seconds": "\(String(format: "%.2f", seconds))"]) }
        do { try await queue.finish(job, result) } catch { log.error("storing the result failed: \(describeForLog(error))") }
    }
}
