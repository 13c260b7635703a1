import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Listening sockets, readiness, zero-downtime reload, watchdog, systemd.
@Suite("Sockets and reload under load", .serialized, .ownThread, .timeLimit(.minutes(3)))
struct SocketTests {
    @Test func servesOneTCPPortAndAUnixSocketFromEveryWorker() throws {
        let directory = Harness.scratch("bind")
        let unixPath = directory + "/app.sock"
        // A stale socket file, left by a master that was killed, is replaced.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in unixPath.utf8.enumerated() { buffer[index] = byte }
        }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        close(stale)
        #expect(FileManager.default.fileExists(atPath: unixPath))
        let supervisor = Supervisor(["-w", "4", "-b", "127.0.0.1:0", "-b", "unix:" + unixPath, "--bind-mode", "660",
                                     "-b", "[::1]:0"],
                                    worker: ["--serve"], directory: directory, name: "bind")
        #expect(Harness.wait { supervisor.settled(workers: 4) }, "\(supervisor.logText())")
        let tcp = try #require(supervisor.listening(0))
        #expect(supervisor.listening(1) == "unix:" + unixPath)
        let ipv6 = try #require(supervisor.listening(2))
        #expect(ipv6.hasPrefix("[::1]:"))
        let overIPv6 = LoadClient.run(ipv6, seconds: 0.5)
        #expect(overIPv6.failures == 0 && overIPv6.requests > 0)
        let overTCP = LoadClient.run(tcp, seconds: 1.5)
        #expect(overTCP.failures == 0)
        #expect(overTCP.pids.count >= 2, "served by several workers: \(overTCP.pids)")
        let overUnix = LoadClient.run("unix:" + unixPath, seconds: 0.5)
        #expect(overUnix.failures == 0 && overUnix.requests > 0)
        var info = stat()
        #expect(stat(unixPath, &info) == 0 && info.st_mode & 0o777 == 0o660)
        for record in supervisor.live() {
            #expect(record.env["LISTEN_FDS"] == "3")
            #expect(record.env["LISTEN_PID"] == String(record.pid))
            #expect(record.env["LISTEN_FDNAMES"] == "bind:bind:bind")
            #expect(record.env["NOTIFY_SOCKET"]?.hasPrefix("@") == true, "an abstract, kernel-chosen name")
            let expected = record.isScheduler ? [0, 1, 2, 3, 4, 5, 6] : [0, 1, 2, 3, 4, 5]
            #expect(record.fds == expected, "sockets at 3, 4 and 5, then (the scheduler's) oracle; the guard keeps the token")
            // The sockets are the app's: a guard draining a tree after its master died keeps no port.
            #expect(!Harness.openFiles(record.guardPID).contains { $0.hasPrefix("socket:") }, "guard of \(record.pid)")
        }
        #expect(supervisor.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: unixPath), "the socket file we created is removed")
    }

    /// Ten reloads while a client sends requests one after another: none
    /// fails, and every generation serves. Each HUP follows as soon as the
    /// generation before has answered the client, so reloads overlap.
    func reloadUnderLoad(options: [String], worker: [String]) throws {
        let supervisor = Supervisor(["-w", "4", "-b", "127.0.0.1:0"] + options, worker: ["--serve"] + worker,
                                    timings: .short, name: "load")
        #expect(Harness.wait { supervisor.logText().contains("generation 0 is ready") }, "\(supervisor.logText())")
        let target = try #require(supervisor.listening(0))
        let client = LoadClient(target)
        #expect(Harness.wait { client.hasServed(generation: 0) })
        for generation in 1...10 {
            supervisor.signal(SIGHUP)
            #expect(Harness.wait(20) { client.hasServed(generation: generation) },
                    "generation \(generation) never answered: \(supervisor.logText().suffix(1200))")
        }
        #expect(Harness.wait(20) { supervisor.logText().contains("reload finished: generation 10") },
                "\(supervisor.logText().suffix(1200))")
        let report = client.stop()
        #expect(report.failures == 0, "failed or refused: \(report.failures) of \(report.requests)")
        #expect(report.requests > 0)
        #expect(report.generations == Set(0...10), "generations served: \(report.generations.sorted())")
        #expect(supervisor.overlaps().isEmpty)
        #expect(supervisor.stop() == 0)
    }

    @Test func tenReloadsUnderLoadRefuseNoRequest() throws {
        try reloadUnderLoad(options: [], worker: [])
    }

    @Test func tenReloadsUnderLoadWithNotifyReadinessAndSlowBoots() throws {
        try reloadUnderLoad(options: ["--ready", "notify"], worker: ["--notify", "--boot-ms", "600"])
    }

    /// With one worker, that worker is the scheduler. A reload hands its slot
    /// to a stand-in (role `worker`) that serves while the old scheduler goes
    /// and the new one boots: no request waits for a boot, no moment has
    /// nothing ready to serve, and the schedulers never overlap.
    @Test func aSingleWorkerReloadsWithoutAServingGap() throws {
        let directory = Harness.scratch("standin")
        let control = directory + "/master.ctl"
        let bootMs = 300
        let supervisor = Supervisor(["-w", "1", "-b", "127.0.0.1:0", "--ready", "notify", "-s", control],
                                    worker: ["--serve", "--notify", "--boot-ms", String(bootMs)],
                                    directory: directory, name: "standin")
        #expect(Harness.wait { supervisor.logText().contains("generation 0 is ready") }, "\(supervisor.logText())")
        let target = try #require(supervisor.listening(0))
        let client = LoadClient(target)
        var fewestServing = Int.max
        for generation in 1...2 {
            #expect(Harness.wait { client.hasServed(generation: generation - 1) })
            supervisor.signal(SIGHUP)
            #expect(Harness.wait {
                let rows = ChaosOS.status(socket: control)?["slots"] as? [[String: Any]] ?? []
                fewestServing = min(fewestServing, rows.filter { $0["state"] as? String == "ready" }.count)
                return supervisor.settled(workers: 1, generation: generation)
                    && supervisor.logText().contains("reload finished: generation \(generation)")
            }, "generation \(generation): \(supervisor.logText().suffix(1500))")
        }
        #expect(Harness.wait { client.hasServed(generation: 2) })
        let report = client.stop()
        let log = supervisor.logText()
        #expect(report.failures == 0, "failed or refused: \(report.failures) of \(report.requests)")
        #expect(report.slowest < bootMs, "a request waited \(report.slowest) ms, a boot's time: \(log.suffix(1500))")
        #expect(fewestServing >= 1, "a moment with no ready worker: \(log.suffix(1500))")
        #expect(report.generations == [0, 1, 2], "generations served: \(report.generations.sorted())")
        #expect(supervisor.overlaps().isEmpty)
        #expect(supervisor.stop() == 0)
    }

    @Test func aGenerationThatDiesAtBootIsAbandonedAndTheOldOneServes() throws {
        let directory = Harness.scratch("badreload")
        let config = directory + "/b.conf"
        try "workers = 3\n".write(toFile: config, atomically: true, encoding: .utf8)
        let supervisor = Supervisor(["-c", config, "-b", "127.0.0.1:0", "--ready", "notify"],
                                    worker: ["--serve", "--notify"], directory: directory, name: "badreload")
        #expect(Harness.wait { supervisor.logText().contains("generation 0 is ready") })
        let target = try #require(supervisor.listening(0))
        let client = LoadClient(target)
        #expect(Harness.wait { client.hasServed(generation: 0) })
        try "workers = 3\nenv = TESTWORKER_FAIL_AT_BOOT=1\n".write(toFile: config, atomically: true, encoding: .utf8)
        supervisor.signal(SIGHUP)
        #expect(Harness.wait { supervisor.logText().contains("reload to generation 1 failed") }, "\(supervisor.logText())")
        let report = client.stop()
        #expect(report.failures == 0 && report.requests > 0)
        #expect(report.generations == [0], "the old generation kept serving")
        #expect(supervisor.isRunning())
        #expect(Harness.wait { supervisor.settled(workers: 3, generation: 0) })
        // A fixed config reloads as usual, with a fresh generation number.
        try "workers = 3\n".write(toFile: config, atomically: true, encoding: .utf8)
        supervisor.signal(SIGHUP)
        #expect(Harness.wait { supervisor.settled(workers: 3, generation: 2) }, "\(supervisor.logText())")
        #expect(LoadClient.run(target, seconds: 0.3).generations == [2])
        #expect(supervisor.stop() == 0)
    }

    @Test func aWorkerThatStopsPingingTheWatchdogIsKilledAndReplaced() throws {
        let supervisor = Supervisor(["-w", "2", "--no-scheduler", "--timeout", "1"], worker: ["--watchdog-once"],
                                    name: "watchdog")
        #expect(Harness.wait { supervisor.live().count == 2 })
        let first = supervisor.live()
        let startedAt = Date()
        for record in first {
            #expect(record.env["WATCHDOG_USEC"] == "1000000")
            #expect(record.env["WATCHDOG_PID"] == String(record.pid))
        }
        // Pinged once at start, then silent: aborted after 1 s, replaced.
        #expect(Harness.wait(3) { first.allSatisfy { !Harness.isAlive($0.pid) } })
        #expect(Date().timeIntervalSince(startedAt) <= 2.0 + 0.3, "killed within timeout + 1 s")
        #expect(Harness.wait(2) { supervisor.live().count == 2 && Set(supervisor.live().map(\.pid)).isDisjoint(with: first.map(\.pid)) })
        #expect(supervisor.logText().contains("sent SIGABRT"))
        #expect(supervisor.stop() == 0)
    }

    @Test func theMasterTellsSystemdReadyReloadingReadyStopping() throws {
        let directory = Harness.scratch("systemd")
        let path = directory + "/notify"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0)
        var messages: [String] = []
        func collect() {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count <= 0 { return }
                messages.append(String(decoding: buffer[0..<count], as: UTF8.self))
            }
        }
        let supervisor = Supervisor(["-w", "2"], environment: ["NOTIFY_SOCKET": path], directory: directory,
                                    name: "systemd")
        #expect(Harness.wait { collect(); return messages.contains { $0.hasPrefix("READY=1") } }, "\(messages)")
        supervisor.signal(SIGHUP)
        #expect(Harness.wait { collect(); return messages.filter { $0.hasPrefix("READY=1") }.count == 2 })
        #expect(supervisor.stop() == 0)
        collect()
        let states = messages.compactMap { message -> String? in
            for state in ["MAINPID", "READY", "RELOADING", "STOPPING"] where message.hasPrefix(state + "=") { return state }
            return nil
        }
        #expect(states == ["MAINPID", "READY", "RELOADING", "READY", "STOPPING"], "\(messages)")
        #expect(messages.first { $0.hasPrefix("RELOADING=1") }?.contains("MONOTONIC_USEC=") == true)
        #expect(messages.first { $0.hasPrefix("MAINPID=") } == "MAINPID=\(supervisor.pid)")
        #expect(messages.first { $0.hasPrefix("READY=1") }?.contains("STATUS=2 workers ready") == true)
    }

    @Test func onlyTheSchedulerServesTheSchedulerSocketAndItSurvivesTheSchedulersDeath() throws {
        let supervisor = Supervisor(["-w", "3", "-b", "127.0.0.1:0", "--scheduler-bind", "127.0.0.1:0"],
                                    worker: ["--serve"], name: "schedbind")
        #expect(Harness.wait { supervisor.settled(workers: 3) && supervisor.listening(0, scheduler: true) != nil })
        let schedulerTarget = try #require(supervisor.listening(0, scheduler: true))
        let scheduler = try #require(supervisor.liveSchedulers().first)
        #expect(scheduler.env["LISTEN_FDS"] == "2")
        #expect(scheduler.env["LISTEN_FDNAMES"] == "bind:scheduler")
        #expect(supervisor.live().filter { !$0.isScheduler }.allSatisfy { $0.env["LISTEN_FDS"] == "1" })
        let first = LoadClient.run(schedulerTarget, seconds: 0.5)
        #expect(first.failures == 0 && first.pids == [scheduler.pid])
        let client = LoadClient(schedulerTarget)
        #expect(Harness.wait { !client.servedBy().isEmpty })
        kill(scheduler.pid, SIGKILL)
        #expect(Harness.wait { client.servedBy().contains { $0.pid != scheduler.pid } }, "\(supervisor.logText())")
        let report = client.stop()
        #expect(report.refused == 0, "no connection refused during the handover")
        #expect(report.failures <= 1, "at most the request in hand when SIGKILL hit: \(report.failures)")
        #expect(report.pids.count == 2 && report.pids.contains(scheduler.pid))
        #expect(supervisor.stop() == 0)
    }

    @Test func aSocketPassedTheSystemdWayIsServed() throws {
        // Bind a listening socket here, pass it as fd 3 with LISTEN_FDS=1 and
        // LISTEN_PID set to the master's own pid (a shell that execs it).
        // Close-on-exec, as every socket a test makes: the tests run side by
        // side, and no process another test starts may keep it. (The dup2
        // to descriptor 3 clears the flag there.)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(fd, 64) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let directory = Harness.scratch("activation")
        let log = directory + "/master.log"
        let command = "LISTEN_FDS=1 LISTEN_FDNAMES=web LISTEN_PID=$$ exec \(Harness.bellwether) -w 2 -b fd://3 "
            + "--lease file:\(directory)/token -- \(Harness.testWorker) --serve --record \(directory)"
        let master = Harness.spawn(["/bin/sh", "-c", command], stdout: log, stderr: log, passing: fd)
        close(fd)
        defer { Harness.signalAndReap(master, SIGTERM) }
        let report = LoadClient.run("127.0.0.1:\(port)", seconds: 1)
        #expect(report.failures == 0 && report.requests > 100, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        let records = WorkerRecord.all(in: directory)
        #expect(records.count == 2)
        #expect(records.allSatisfy { $0.env["LISTEN_FDS"] == "1" && $0.env["LISTEN_FDNAMES"] == "web" })
    }

    @Test func aReloadBindsNewAddressesAndClosesRemovedOnes() throws {
        let directory = Harness.scratch("rebind")
        let config = directory + "/b.conf"
        let first = directory + "/first.sock", second = directory + "/second.sock"
        try "workers = 2\nbind = unix:\(first)\n".write(toFile: config, atomically: true, encoding: .utf8)
        let supervisor = Supervisor(["-c", config], worker: ["--serve"], directory: directory, name: "rebind")
        #expect(Harness.wait { supervisor.settled(workers: 2, generation: 0) })
        #expect(LoadClient.run("unix:" + first, seconds: 0.3).failures == 0)
        try "workers = 2\nbind = unix:\(second)\n".write(toFile: config, atomically: true, encoding: .utf8)
        supervisor.signal(SIGHUP)
        #expect(Harness.wait { supervisor.settled(workers: 2, generation: 1) }, "\(supervisor.logText())")
        #expect(!FileManager.default.fileExists(atPath: first), "the removed address is closed and its file removed")
        let report = LoadClient.run("unix:" + second, seconds: 0.3)
        #expect(report.failures == 0 && report.generations == [1])
        #expect(supervisor.stop() == 0)
    }

    @Test func aPortInUseIsOneLineAndStatus69() throws {
        let holder = Supervisor(["-w", "1", "-b", "127.0.0.1:0"], worker: ["--serve"], name: "holder")
        #expect(Harness.wait { holder.listening(0) != nil })
        let taken = try #require(holder.listening(0))
        let result = Harness.run([Harness.bellwether, "-b", taken, "true"])
        #expect(result.status == 69)
        #expect(result.stderr == "bellwether: cannot listen on \(taken): Address already in use\n")
        #expect(holder.stop() == 0)
    }

    @Test func aLowPortWithoutPrivilegeIsOneLineAndStatus69() {
        // As root, drop to nobody for this run; unprivileged users get EACCES anyway.
        let drop = getuid() == 0 ? ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : []
        let result = Harness.run(drop + [Harness.bellwether, "-b", "127.0.0.1:80", "--lease", "file:/tmp/bw-lowport-\(getpid()).lock", "true"])
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.stderr == "bellwether: cannot listen on 127.0.0.1:80: Permission denied\n")
    }
}
