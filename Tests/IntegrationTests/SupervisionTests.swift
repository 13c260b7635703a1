import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Black-box tests: the real binary, real worker processes, real signals.
@Suite("Supervision with real processes", .serialized, .ownThread, .timeLimit(.minutes(3)))
struct SupervisionTests {
    @Test func fourWorkersOneSchedulerCleanEnvironment() throws {
        let supervisor = Supervisor(["-w", "4"], name: "four")
        #expect(Harness.wait { supervisor.settled(workers: 4) }, "\(supervisor.logText())")
        let live = supervisor.live()
        #expect(live.filter(\.isScheduler).count == 1)
        #expect(Set(live.map(\.slot)) == [0, 1, 2, 3])
        for record in live {
            #expect(record.env["WORKERS_COUNT"] == "4")
            #expect(record.env["WORKER_GENERATION"] == "0")
            #expect(record.env["WORKER_ROLE"] == (record.slot == 0 ? "scheduler" : "worker"))
            #expect(record.stdin == "/dev/null")
            #expect(record.values["SigBlk"] == "0000000000000000", "signal mask of \(record.pid)")
            #expect(record.values["SigIgn"] == "0000000000000000", "ignored signals of \(record.pid)")
            // Each worker's guard leads its process group, the app in it, and is the master's child.
            #expect(record.values["pgid"] == record.values["ppid"], "the app is in its guard's process group")
            #expect(ProcStat(pid: record.guardPID)?.parent == supervisor.pid)
            // Workers see only 0-2: the guard keeps the token and the master's
            // link. The scheduler has the oracle descriptor it opened itself.
            #expect(record.fds == (record.isScheduler ? [0, 1, 2, 3] : [0, 1, 2]), "fds of \(record.pid)")
            #expect(record.env.keys.allSatisfy { !$0.hasPrefix("BELLWETHER_") })
        }
        #expect(supervisor.stop() == 0)
    }

    @Test func schedulerKilledThirtyTimesIsReplacedOnceEachTime() {
        let supervisor = Supervisor(["-w", "4"], timings: .short, name: "kill30")
        #expect(Harness.wait { supervisor.settled(workers: 4) })
        var seen = Set<Int32>()
        for round in 0..<30 {
            let schedulers = supervisor.liveSchedulers()
            #expect(schedulers.count == 1, "round \(round)")
            guard let old = schedulers.first else { break }
            seen.insert(old.pid)
            // Let it live past the stable uptime, so that no back-off applies.
            #expect(Harness.wait { (Harness.age(old.pid) ?? 0) >= CoreTimings.stableUptime + 0.05 }, "round \(round)")
            kill(old.pid, SIGKILL)
            let replaced = Harness.wait {
                let now = supervisor.liveSchedulers()
                return now.count == 1 && now[0].pid != old.pid
            }
            #expect(replaced, "round \(round): \(supervisor.logText().suffix(800))")
            #expect(supervisor.liveSchedulers().count <= 1)
            #expect(supervisor.overlaps().isEmpty)
        }
        #expect(seen.count == 30)
        #expect(Harness.wait { supervisor.settled(workers: 4) })
        #expect(supervisor.overlaps().isEmpty)
        #expect(supervisor.stop() == 0)
    }

    @Test func tenReloadsAndAHangupStorm() {
        let supervisor = Supervisor(["-w", "3"], timings: .short, name: "reload")
        #expect(Harness.wait { supervisor.settled(workers: 3, generation: 0) })
        for generation in 1...10 {
            supervisor.signal(SIGHUP)
            #expect(Harness.wait { supervisor.settled(workers: 3, generation: generation) },
                    "generation \(generation): \(supervisor.logText().suffix(1200))")
            #expect(supervisor.liveSchedulers().count == 1)
        }
        for _ in 0..<20 { supervisor.signal(SIGHUP) }
        // Settled on the storm's last generation: by then every HUP has been read.
        var generation = 0
        #expect(Harness.wait(20) {
            generation = supervisor.lastGeneration()
            return generation > 10 && supervisor.settled(workers: 3, generation: generation)
        }, "\(supervisor.logText().suffix(1500))")
        // Every older generation has been retired, and it stays settled.
        usleep(500_000)
        #expect(supervisor.settled(workers: 3, generation: generation))
        #expect(supervisor.live().count == 3)
        #expect(supervisor.overlaps().isEmpty)
        #expect(supervisor.stop() == 0)
    }

    @Test func ttinAndTtouResizeAndKeepTheScheduler() {
        let supervisor = Supervisor(["-w", "2"], name: "resize")
        #expect(Harness.wait { supervisor.settled(workers: 2) })
        let scheduler = supervisor.liveSchedulers().first?.pid
        for count in 3...5 {
            supervisor.signal(SIGTTIN)
            #expect(Harness.wait { supervisor.settled(workers: count) }, "after TTIN: want \(count)")
        }
        // Settled after each TTOU means the master has read it: the next one is a signal of its own.
        for count in [4, 3, 2, 1] {
            supervisor.signal(SIGTTOU)
            #expect(Harness.wait { supervisor.settled(workers: count) }, "after TTOU: want \(count)")
        }
        supervisor.signal(SIGTTOU)
        #expect(Harness.wait { supervisor.logText().contains("TTOU ignored: already at 1 worker") },
                "\(supervisor.logText().suffix(800))")
        #expect(supervisor.live().count == 1)
        #expect(supervisor.liveSchedulers().first?.pid == scheduler)
        #expect(supervisor.stop() == 0)
    }

    @Test func termStopsEverythingAndRemovesThePidfile() throws {
        let directory = Harness.scratch("term")
        let pidfile = directory + "/master.pid"
        let supervisor = Supervisor(["-w", "3", "--pidfile", pidfile], directory: directory, name: "term")
        #expect(Harness.wait { supervisor.settled(workers: 3) })
        let pidText = try String(contentsOfFile: pidfile, encoding: .utf8)
        #expect(pidText == "\(supervisor.pid)\n")
        let workers = supervisor.live().map(\.pid)
        #expect(supervisor.stop() == 0)
        #expect(workers.allSatisfy { !Harness.isAlive($0) })
        #expect(!FileManager.default.fileExists(atPath: pidfile))
    }

    @Test func aWorkerThatIgnoresTermIsKilledAfterTheGracefulTimeout() {
        let supervisor = Supervisor(["-w", "2", "--graceful-timeout", "1.5"], worker: ["--ignore-term"],
                                    name: "ignoreterm")
        #expect(Harness.wait { supervisor.settled(workers: 2) })
        let workers = supervisor.live().map(\.pid)
        let start = Date()
        supervisor.signal(SIGTERM)
        usleep(800_000)
        #expect(workers.allSatisfy { Harness.isAlive($0) }, "still inside the graceful timeout")
        #expect(supervisor.waitForExit() == 0)
        #expect(Date().timeIntervalSince(start) >= 1.4)
        #expect(workers.allSatisfy { !Harness.isAlive($0) })
        #expect(supervisor.logText().contains("did not exit in time"))
    }

    @Test func aStragglerOfTheSchedulerIsKilledAndANewSchedulerStarts() throws {
        let supervisor = Supervisor(["-w", "2"], worker: ["--straggler"], name: "straggler")
        #expect(Harness.wait { supervisor.settled(workers: 2) })
        let old = try #require(supervisor.liveSchedulers().first)
        let stragglerText = try String(contentsOfFile: supervisor.directory + "/\(old.pid).straggler", encoding: .utf8)
        let straggler = try #require(Int32(stragglerText.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(Harness.isAlive(straggler))
        kill(old.pid, SIGKILL)
        #expect(Harness.wait { !Harness.isAlive(straggler) }, "the straggler is killed with its group")
        #expect(Harness.wait {
            let now = supervisor.liveSchedulers()
            return now.count == 1 && now[0].pid != old.pid
        }, "\(supervisor.logText().suffix(1000))")
        #expect(supervisor.overlaps().isEmpty)
        #expect(supervisor.stop() == 0)
    }

    @Test func usr1IsForwardedToEveryWorker() {
        let supervisor = Supervisor(["-w", "3"], name: "usr1")
        #expect(Harness.wait { supervisor.settled(workers: 3) })
        supervisor.signal(SIGUSR1)  // a worker's handler is in place once its record is
        let pids = Set(supervisor.live().map(\.pid))
        #expect(Harness.wait {
            let text = (try? String(contentsOfFile: supervisor.directory + "/usr1.log", encoding: .utf8)) ?? ""
            return Set(text.split(separator: "\n").compactMap { Int32($0) }) == pids
        })
        #expect(supervisor.stop() == 0)
    }

    @Test func aCommandThatAlwaysDiesBacksOffAndSaysSo() {
        // --boot-attempts 0: a first start that never gives up (else it would end with status 3).
        let supervisor = Supervisor(["-w", "1", "--no-scheduler", "--boot-attempts", "0"], worker: ["--exit-after", "0"],
                                    name: "crashloop")
        #expect(Harness.wait(8) { supervisor.logText().contains("next start in 0.4s") }, "\(supervisor.logText())")
        // Back-off, not a busy loop: a handful of starts in a few seconds.
        let starts = supervisor.logText().components(separatedBy: "spawned worker").count - 1
        #expect(starts < 12, "\(starts) starts")
        #expect(supervisor.stop() == 0)
    }
}

@Suite("Idle master", .serialized, .ownThread, .timeLimit(.minutes(1)))
struct IdleTests {
    static func contextSwitches(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        let line = status.split(separator: "\n").first { $0.hasPrefix("voluntary_ctxt_switches:") }
        return line.flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
    }

    static func sleepsInPoll(_ pid: Int32) -> Bool {
        (try? String(contentsOfFile: "/proc/\(pid)/wchan", encoding: .utf8))?.contains("poll") == true
    }

    /// A master with nothing to do sleeps in poll: no wake-ups at all.
    @Test func anIdleMasterDoesNotWakeUp() {
        let supervisor = Supervisor(["-w", "3"], timings: .short, name: "idle")
        #expect(Harness.wait { supervisor.settled(workers: 3) })
        // Past the boot grace every worker counts as ready, and nothing is left to wake up for:
        // once it has said so, the master goes back to sleep in poll.
        #expect(Harness.wait {
            supervisor.logText().contains("generation 0 is ready") && Self.sleepsInPoll(supervisor.pid)
        }, "\(supervisor.logText())")
        let before = Self.contextSwitches(supervisor.pid)
        sleep(2)
        let after = Self.contextSwitches(supervisor.pid)
        #expect(before != nil && before == after, "wake-ups while idle: \(String(describing: before)) → \(String(describing: after))")
        #expect(supervisor.stop() == 0)
    }

    /// Where the first mapping of a process (its executable) starts, and its personality.
    static func layout(_ pid: Int32) -> (start: String, personality: String)? {
        guard let maps = try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8),
              let personality = try? String(contentsOfFile: "/proc/\(pid)/personality", encoding: .utf8)
        else { return nil }
        return (String(maps.prefix { $0 != "-" }), personality.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// --no-aslr: every worker starts without address-space randomization, so
    /// all share one layout; without it each execve gets its own (on a kernel
    /// that randomizes).
    @Test(.enabled(if: (try? String(contentsOfFile: "/proc/sys/kernel/randomize_va_space", encoding: .utf8))?
        .hasPrefix("0") == false, "the kernel does not randomize"),
          .enabled(if: (try? String(contentsOfFile: "/proc/self/personality", encoding: .utf8))?
        .hasPrefix("00000000") == true, "the tests run without randomization themselves (setarch -R, a debugger)"))
    func noASLRGivesEveryWorkerOneLayout() {
        for noASLR in [true, false] {
            let supervisor = Supervisor(["-w", "3"] + (noASLR ? ["--no-aslr"] : []), name: "aslr")
            #expect(Harness.wait { supervisor.settled(workers: 3) }, "\(supervisor.logText())")
            let layouts = supervisor.live().compactMap { Self.layout($0.pid) }
            #expect(layouts.count == 3)
            if noASLR {
                #expect(layouts.allSatisfy { $0.personality == "00040000" }, "ADDR_NO_RANDOMIZE: \(layouts)")
                #expect(Set(layouts.map(\.start)).count == 1, "one layout: \(layouts)")
            } else {
                #expect(layouts.allSatisfy { $0.personality == "00000000" }, "\(layouts)")
                #expect(Set(layouts.map(\.start)).count == 3, "randomized: \(layouts)")
            }
            // The master carries the flag for its children; its own layout was set at its execve.
            #expect(Self.layout(supervisor.pid)?.personality == (noASLR ? "00040000" : "00000000"))
            #expect(supervisor.stop() == 0)
        }
    }
}
