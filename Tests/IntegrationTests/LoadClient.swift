import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What the test worker's HTTP client mode counted.
struct ClientReport {
    var requests = 0
    var failures = 0
    var refused = 0
    /// The longest wait for an answer, in milliseconds.
    var slowest = 0
    var generations: Set<Int> = []
    var pids: Set<Int32> = []

    init(output: String) {
        for part in output.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            let values = pair[1].split(separator: ",")
            switch pair[0] {
            case "requests": requests = Int(pair[1]) ?? 0
            case "failures": failures = Int(pair[1]) ?? 0
            case "refused": refused = Int(pair[1]) ?? 0
            case "slowest_ms": slowest = Int(pair[1]) ?? 0
            case "generations": generations = Set(values.compactMap { Int($0) })
            case "pids": pids = Set(values.compactMap { Int32($0) })
            default: break
            }
        }
    }
}

/// A client loop running in the background: requests one after another,
/// for `seconds` or until `stop()`, `gap` microseconds apart. A request
/// every millisecond or so keeps every handover under a steady stream of
/// requests; unpaced, the client and the workers it kept busy took a third
/// of the integration tests' CPU time.
final class LoadClient {
    let pid: Int32
    let output: String
    let seconds: Double
    private var report: ClientReport?

    init(_ target: String, seconds: Double = 120, gap: Int = 1_000) {
        let directory = Harness.scratch("client")
        output = directory + "/out"
        self.seconds = seconds
        pid = Harness.spawn([Harness.testWorker, "--client", target, "--seconds", String(seconds),
                             "--gap-us", String(gap)],
                            environment: [:], stdout: output, stderr: directory + "/err")
    }

    deinit { if report == nil { _ = stop() } }

    /// The workers that have answered so far, with their generations.
    func servedBy() -> [(pid: Int32, generation: Int)] {
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.hasPrefix("served-by ") }.compactMap { line in
            let words = line.split(separator: " ")
            guard words.count == 3, let pid = Int32(words[1].dropFirst(4)), let generation = Int(words[2].dropFirst(11))
            else { return nil }
            return (pid, generation)
        }
    }

    func hasServed(generation: Int) -> Bool { servedBy().contains { $0.generation == generation } }

    /// Waits for the run to end by itself.
    func finish() -> ClientReport {
        if let report { return report }
        Harness.wait(seconds + 20) { Harness.reap(pid) != nil }
        let report = ClientReport(output: (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
        self.report = report
        return report
    }

    /// Ends the run after the request in hand.
    func stop() -> ClientReport {
        if report == nil { kill(pid, SIGTERM) }
        return finish()
    }

    static func run(_ target: String, seconds: Double) -> ClientReport {
        LoadClient(target, seconds: seconds).finish()
    }
}
