import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A first generation that never becomes ready ends the master with status 3
/// and one line that says why, so that a service manager sees it.
@Suite("Failed start with real processes", .serialized, .ownThread, .timeLimit(.minutes(2)))
struct FailedStartBinaryTests {
    static let crash = ["TESTWORKER_FAIL_AT_BOOT": "1"]

    static func failedStartLines(_ supervisor: Supervisor) -> [Substring] {
        supervisor.logText().split(separator: "\n").filter { $0.contains("failed start:") }
    }

    @Test func anAppThatCrashesAtBootEndsTheMasterWithStatus3() throws {
        let supervisor = Supervisor(["-w", "2", "-b", "127.0.0.1:0"], environment: Self.crash, name: "crashboot")
        #expect(supervisor.waitForExit(20) == 3, "\(supervisor.logText().suffix(1500))")
        let lines = Self.failedStartLines(supervisor)
        #expect(lines.count == 1, "\(supervisor.logText().suffix(1500))")
        #expect(lines.first?.contains("error: failed start: ") == true)
        #expect(lines.first?.hasSuffix(" failed to boot 5 times in a row (last: exit status 1); stopping, exit status 3")
            == true, "\(lines)")
        // Gone with its master, the port refuses rather than holding connections nobody answers.
        let target = try #require(supervisor.listening(0))
        let report = LoadClient.run(target, seconds: 0.2)
        #expect(report.requests > 0 && report.refused == report.requests, "\(report)")
    }

    @Test func bootAttemptsComeFromTheEnvironmentAboveTheConfigFile() throws {
        let directory = Harness.scratch("bootattempts")
        let config = directory + "/b.conf"
        try "boot-attempts = 2\n".write(toFile: config, atomically: true, encoding: .utf8)
        let fromFile = Supervisor(["-w", "1", "-c", config], environment: Self.crash, directory: directory,
                                  name: "file")
        #expect(fromFile.waitForExit(20) == 3, "\(fromFile.logText().suffix(1500))")
        #expect(Self.failedStartLines(fromFile).first?.contains("failed to boot 2 times in a row") == true,
                "\(fromFile.logText().suffix(1500))")
        let fromEnvironment = Supervisor(["-w", "1", "-c", config],
                                         environment: Self.crash.merging(["BELLWETHER_BOOT_ATTEMPTS": "3"]) { $1 },
                                         directory: directory, name: "env")
        #expect(fromEnvironment.waitForExit(20) == 3, "\(fromEnvironment.logText().suffix(1500))")
        #expect(Self.failedStartLines(fromEnvironment).first?.contains("failed to boot 3 times in a row") == true,
                "\(fromEnvironment.logText().suffix(1500))")
    }

    @Test func anAppThatNeverSendsReadyUnderReadyNotifyIsAFailedStartWithAHint() {
        let supervisor = Supervisor(["-w", "2", "--ready", "notify", "--ready-timeout", "1.5"], name: "nonotify")
        #expect(supervisor.waitForExit(20) == 3, "\(supervisor.logText().suffix(1500))")
        let log = supervisor.logText()
        let hint = "never sent READY=1; does the app support sd_notify? use --ready exec"
        #expect(log.components(separatedBy: hint).count == 2, "the hint, once: \(log.suffix(1500))")
        let lines = Self.failedStartLines(supervisor)
        #expect(lines.count == 1)
        #expect(lines.first?.contains("failed start: no worker was ready within 1.5s (--ready-timeout): pid ") == true,
                "\(lines)")
        #expect(lines.first?.contains(hint) == true)
        #expect(supervisor.records().count == 2, "both workers ran: \(log.suffix(1500))")
        #expect(supervisor.live().isEmpty, "and were stopped")
    }

    @Test func statusShowsASlotBackingOffWithRestartsLastExitAndNextAttempt() {
        let directory = Harness.scratch("backoffstatus")
        let socket = directory + "/control"
        let supervisor = Supervisor(["-w", "2", "--boot-attempts", "0", "-s", socket], environment: Self.crash,
                                    directory: directory, name: "backoff")
        var row: [String: Any]?
        let seen = Harness.wait(15) {
            let report = ControlTests.status(["-s", socket])
            row = ControlTests.slots(report).first { $0["slot"] as? Int == 1 && $0["state"] as? String == "backoff" }
            return row.map { ($0["restarts"] as? Int ?? 0) >= 3 } ?? false
        }
        #expect(seen, "\(supervisor.logText().suffix(1500))")
        #expect(row?["pid"] is NSNull)
        #expect(row?["role"] as? String == "worker")
        #expect(row?["last_exit"] as? String == "exit status 1", "\(String(describing: row))")
        #expect((row?["next_attempt"] as? Double).map { $0 > 0 && $0 <= 10 } == true, "\(String(describing: row))")
        var text = ""
        #expect(Harness.wait(15) {
            text = Harness.run([Harness.bellwether, "status", "-s", socket]).stdout
            return text.contains("backoff, next attempt in ")
        }, "\(text)")
        #expect(supervisor.isRunning(), "--boot-attempts 0: it never gives up")
        #expect(supervisor.stop() == 0)
    }
}
