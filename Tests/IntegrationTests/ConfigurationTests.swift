import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Precedence and reload of settings, seen through --check-config and real workers.
@Suite("Configuration", .serialized, .ownThread, .timeLimit(.minutes(2)))
struct ConfigurationTests {
    func check(_ arguments: [String], environment: [String: String] = [:]) -> [String: String] {
        let result = Harness.run([Harness.bellwether, "--check-config"] + arguments + ["true"],
                                 environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        var values: [String: String] = [:]
        for line in result.stdout.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { values[parts[0]] = parts[1] }
        }
        return values
    }

    @Test func flagsBeatEnvironmentBeatsConfigBeatsDefaults() throws {
        let directory = Harness.scratch("precedence")
        let config = directory + "/b.conf"
        try "workers = 2\ngraceful_timeout = 7\nlog-format = \"json\"\n".write(toFile: config, atomically: true,
                                                                           encoding: .utf8)
        #expect(check(["-c", config])["workers"] == "2")
        #expect(check(["-c", config])["graceful-timeout"] == "7s")
        #expect(check(["-c", config])["log-format"] == "json")
        #expect(check(["-c", config], environment: ["WORKERS_COUNT": "3"])["workers"] == "3")
        #expect(check([], environment: ["BELLWETHER_CONFIG": config])["workers"] == "2")
        #expect(check(["-c", config, "-w", "4"], environment: ["WORKERS_COUNT": "3"])["workers"] == "4")
        #expect(check(["--graceful-timeout", "0.5"], environment: ["BELLWETHER_GRACEFUL_TIMEOUT": "9"])[
            "graceful-timeout"] == "0.5s")
        let cpus = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        #expect(check([])["workers"] == String(cpus))
    }

    @Test func reloadRereadsTheConfigAndKeepsTheOldOneWhenBad() throws {
        let directory = Harness.scratch("reloadconfig")
        let config = directory + "/b.conf"
        try "workers = 2\nenv = COLOR=red\n".write(toFile: config, atomically: true, encoding: .utf8)
        let supervisor = Supervisor(["-c", config, "--timezone", "Europe/Paris"], directory: directory,
                                    name: "reloadconfig")
        #expect(Harness.wait { supervisor.settled(workers: 2, generation: 0) })
        #expect(supervisor.live().allSatisfy { $0.env["COLOR"] == "red" && $0.env["TZ"] == "Europe/Paris" })

        try "workers = 3\nenv = COLOR=blue\n".write(toFile: config, atomically: true, encoding: .utf8)
        supervisor.signal(SIGHUP)
        #expect(Harness.wait { supervisor.settled(workers: 3, generation: 1) }, "\(supervisor.logText())")
        #expect(supervisor.live().allSatisfy { $0.env["COLOR"] == "blue" && $0.env["WORKERS_COUNT"] == "3" })

        try "workers = many\n".write(toFile: config, atomically: true, encoding: .utf8)
        supervisor.signal(SIGHUP)
        #expect(Harness.wait { supervisor.settled(workers: 3, generation: 2) }, "\(supervisor.logText())")
        #expect(supervisor.live().allSatisfy { $0.env["COLOR"] == "blue" })
        #expect(supervisor.logText().contains("keeping the current configuration"))
        #expect(supervisor.stop() == 0)
    }

    @Test func jsonLogLinesAreJSON() throws {
        let supervisor = Supervisor(["-w", "2", "--log-format", "json"], name: "json")
        #expect(Harness.wait { supervisor.settled(workers: 2) })
        #expect(supervisor.stop() == 0)
        let lines = supervisor.logText().split(separator: "\n")
        #expect(lines.count >= 4)
        var events: [String] = []
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["message"] is String, "\(line)")
            if let event = object?["event"] as? String { events.append(event) }
        }
        #expect(events.contains("spawned") && events.contains("exited") && events.contains("stopping"))
    }

    @Test func roleEnvRenamesTheRoleVariable() {
        let supervisor = Supervisor(["-w", "2", "--role-env", "APP_ROLE"], worker: ["--role-env", "APP_ROLE"],
                                    name: "roleenv")
        #expect(Harness.wait { supervisor.live().count == 2 })
        let live = supervisor.live()
        #expect(live.filter { $0.env["APP_ROLE"] == "scheduler" }.count == 1)
        #expect(live.allSatisfy { $0.env["WORKER_ROLE"] == nil })
        #expect(supervisor.stop() == 0)
    }
}
