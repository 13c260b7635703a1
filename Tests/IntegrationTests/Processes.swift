import CBellwether
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What the tests see of a process: /proc, whether it is alive, its exit.
extension Harness {
    /// Polls `condition` every 20 ms until it holds or `timeout` passes.
    @discardableResult
    static func wait(_ timeout: Double = 10, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    /// How long `pid` has been running, in seconds (to the clock tick).
    static func age(_ pid: Int32) -> Double? {
        guard let stat = ProcStat(pid: pid),
              let uptime = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
              let now = Double(uptime.prefix { $0 != " " }) else { return nil }
        return now - Double(stat.startTime) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Alive and not a zombie (PID 1 here may never reap orphans).
    static func isAlive(_ pid: Int32) -> Bool { ProcStat(pid: pid).map { !$0.isDead } ?? false }

    /// The paths of the files a process has open.
    static func openFiles(_ pid: Int32) -> [String] {
        let directory = "/proc/\(pid)/fd"
        return ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).compactMap {
            try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + $0)
        }
    }

    /// A wait status as a shell reports it: the exit code, or 128 + the signal.
    static func exitCode(waitStatus status: Int32) -> Int32 {
        bw_wifsignaled(status) != 0 ? 128 + bw_wtermsig(status) : bw_wexitstatus(status)
    }

    /// Reaps our child `pid` if it has ended, and returns its exit code;
    /// nil while it runs.
    static func reap(_ pid: Int32) -> Int32? {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == pid ? exitCode(waitStatus: status) : nil
    }

    /// Sends `signal` to our child `pid` and waits, unbounded, for its exit code.
    @discardableResult
    static func signalAndReap(_ pid: Int32, _ signal: Int32 = SIGKILL) -> Int32 {
        kill(pid, signal)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return exitCode(waitStatus: status)
    }
}

/// The fields of /proc/PID/stat the tests use.
struct ProcStat {
    var state: Character
    var parent: Int32
    var session: Int32
    /// Clock ticks after boot: with the pid, it names one process even after
    /// the pid is reused.
    var startTime: UInt64

    init?(pid: Int32) {
        guard let text = ChaosOS.readText("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(close, offsetBy: 2)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let parent = Int32(fields[1]),
              let session = Int32(fields[3]), let startTime = UInt64(fields[19]) else { return nil }
        self.state = state
        self.parent = parent
        self.session = session
        self.startTime = startTime
    }

    /// A zombie has exited; PID 1 here may never reap it.
    var isDead: Bool { state == "Z" || state == "X" }
}
