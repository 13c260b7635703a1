import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What one test worker recorded at start.
struct WorkerRecord {
    var pid: Int32
    var role: String
    var fds: [Int]
    var stdin: String
    var values: [String: String]
    var env: [String: String]

    init?(path: String) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        var values: [String: String] = [:]
        var env: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = String(line[..<equals])
            let value = String(line[line.index(after: equals)...])
            if key.hasPrefix("env.") { env[String(key.dropFirst(4))] = value } else { values[key] = value }
        }
        guard let pid = Int32(values["pid"] ?? "") else { return nil }
        self.pid = pid
        self.role = values["role"] ?? ""
        self.fds = (values["fds"] ?? "").split(separator: ",").compactMap { Int($0) }
        self.stdin = values["stdin"] ?? ""
        self.values = values
        self.env = env
    }

    var slot: Int { Int(env["WORKER_ID"] ?? "") ?? -1 }
    var generation: Int { Int(env["WORKER_GENERATION"] ?? "") ?? -1 }
    var isScheduler: Bool { role == "scheduler" }
    /// The worker's guard: the app's parent, which leads its process group.
    var guardPID: Int32 { Int32(values["ppid"] ?? "") ?? -1 }

    /// The records in `directory`, one `PID.rec` file a worker.
    static func all(in directory: String) -> [WorkerRecord] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".rec") }.compactMap { WorkerRecord(path: directory + "/" + $0) }
    }
}
