import Foundation
import Prometheus

/// The service's Prometheus metrics (`GET /metrics`), in a registry of its own.
public final class ServiceMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let queueDepth: Gauge
    let running: Gauge
    let wait: ValueHistogram
    let run: ValueHistogram
    let step: ValueHistogram
    let rss: Gauge
    let peakRSS: Gauge
    let arena: Gauge
    let weights: Gauge
    let slots: Gauge
    let outcomes: [JobRecord.State: Counter]
    let rejected: [Int: Counter]

    public init() {
        let seconds: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000]
        queueDepth = registry.makeGauge(descriptor: Self.name("queue", "depth", "Jobs waiting to run."))
        running = registry.makeGauge(descriptor: Self.name("jobs", "running", "Jobs running now."))
        wait = registry.makeValueHistogram(descriptor: Self.name("job_wait", "seconds", "Time from submission to start."), buckets: seconds)
        run = registry.makeValueHistogram(descriptor: Self.name("job_run", "seconds", "Time from start to result."), buckets: seconds)
        step = registry.makeValueHistogram(descriptor: Self.name("step", "seconds", "Time of one sampling step (ControlNet + UNet, all tiles)."),
                                           buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25])
        rss = registry.makeGauge(descriptor: Self.name("resident_memory", "bytes", "Resident set size of the process."))
        peakRSS = registry.makeGauge(descriptor: Self.name("peak_resident_memory", "bytes", "Peak resident set size of the process."))
        arena = registry.makeGauge(descriptor: Self.name("job_memory", "bytes", "Working memory one job may use (arena, images); the weights apart."))
        weights = registry.makeGauge(descriptor: Self.name("weights", "bytes", "Bytes of the plan's weights, mapped once."))
        slots = registry.makeGauge(descriptor: Self.name("job", "slots", "Jobs that may run at once (from --max-memory and the plan)."))
        var o: [JobRecord.State: Counter] = [:]
        for s in [JobRecord.State.succeeded, .failed, .cancelled] {
            o[s] = registry.makeCounter(descriptor: Self.name("jobs", "total", "Jobs finished, by outcome."), labels: [("outcome", s.rawValue)])
        }
        outcomes = o
        var r: [Int: Counter] = [:]
        for code in [400, 401, 404, 409, 413, 415, 429, 503, 504] {
            r[code] = registry.makeCounter(descriptor: Self.name("requests_refused", "total", "Requests answered with an error, by status."),
                                           labels: [("status", "\(code)")])
        }
        rejected = r
    }

    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "diffbir", metricName: metric, unitName: unit, helpText: help)
    }

    func outcome(_ state: JobRecord.State) { outcomes[state]?.increment() }
    func refused(_ status: Int) { rejected[status]?.increment() }

    /// The registry's text, with the memory gauges read now.
    public func emit() -> [UInt8] {
        let (now, peak) = Self.memory()
        rss.set(Double(now))
        peakRSS.set(Double(peak))
        return registry.emitToBuffer()
    }

    /// (VmRSS, VmHWM) of /proc/self/status, in bytes.
    public static func memory() -> (Int, Int) {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
        var rss = 0, hwm = 0
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2, let kb = Int(parts[1]) else { continue }
            if parts[0] == "VmRSS:" { rss = kb * 1024 } else if parts[0] == "VmHWM:" { hwm = kb * 1024 }
        }
        return (rss, hwm)
    }
}
