import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Tests that act as other users: --user/--group/--umask, and a master whose
/// user is out of processes; and --reload-nice, which needs CAP_SYS_NICE to
/// restore a priority. They need root; scripts/test (which CI runs as
/// root) sets BELLWETHER_REQUIRE_ROOT=1 so that they fail rather than skip.
let runningAsRoot = getuid() == 0 || ProcessInfo.processInfo.environment["BELLWETHER_REQUIRE_ROOT"] == "1"

@Suite("Privilege drop and process limits", .serialized, .ownThread, .timeLimit(.minutes(2)),
       .enabled(if: runningAsRoot, "needs root (scripts/test runs it as root)"))
struct PrivilegeTests {
    /// "Uid:", "Gid:", "Groups:", "Umask:" … of /proc/PID/status.
    static func status(_ pid: Int32) -> [String: String] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...]
                .split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
        }
        return fields
    }

    /// The nice value of a process (field 19 of /proc/PID/stat).
    static func nice(_ pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 16 ? Int(fields[16]) : nil
    }

    /// --reload-nice: a reload's replacement boots at nice +10 beside the
    /// worker it replaces and is restored once ready; the new scheduler
    /// (spawned once the old one is gone, while a stand-in serves its slot)
    /// and the first generation boot at the master's priority.
    @Test func aReloadsReplacementBootsAtALowerPriorityUntilReady() {
        let supervisor = Supervisor(["-w", "3", "--ready", "notify"], worker: ["--notify", "--boot-ms", "2500"],
                                    name: "nice")
        #expect(Harness.wait(20) { supervisor.logText().contains("generation 0 is ready") }, "\(supervisor.logText())")
        let base = Self.nice(supervisor.pid)
        #expect(base != nil)
        #expect(supervisor.live().allSatisfy { Self.nice($0.pid) == base }, "the first generation: the master's")
        supervisor.signal(SIGHUP)
        var booting: WorkerRecord?
        #expect(Harness.wait(10) {
            // Not slot 0's stand-in, which is retired (and foregrounded) as soon as the new scheduler is ready.
            booting = supervisor.live().first { $0.generation == 1 && !$0.isScheduler && $0.slot != 0 }
            return booting != nil
        }, "\(supervisor.logText())")
        guard let booting, let base else { return }
        #expect(Harness.wait(2) { Self.nice(booting.pid) == base + 10 },
                "a replacement boots at nice +10 (\(String(describing: Self.nice(booting.pid))))")
        var scheduler: WorkerRecord?
        #expect(Harness.wait(10) {
            scheduler = supervisor.live().first { $0.generation == 1 && $0.isScheduler }
            return scheduler != nil
        })
        if let scheduler { #expect(Self.nice(scheduler.pid) == base, "the scheduler's replacement does not") }
        #expect(Harness.wait(10) { supervisor.logText().contains("(pid \(booting.pid)) is ready") })
        #expect(Harness.wait(2) { Self.nice(booting.pid) == base }, "restored once ready: \(String(describing: Self.nice(booting.pid)))")
        #expect(Harness.wait(20) { supervisor.settled(workers: 3, generation: 1) }, "\(supervisor.logText())")
        #expect(supervisor.live().allSatisfy { Self.nice($0.pid) == base }, "every worker of the new generation")
        #expect(supervisor.stop() == 0)
    }

    static let asUid4244 = ["/usr/bin/setpriv", "--reuid=4244", "--regid=4244", "--clear-groups"]

    /// A scratch directory any user may write (the workers record there).
    static func sharedScratch(_ name: String) -> String {
        let directory = Harness.scratch(name)
        chmod(directory, 0o1777)
        return directory
    }

    @Test func workersRunAsTheUserAndGroupWithTheUmaskTheMasterStaysRoot() {
        let directory = Self.sharedScratch("user")
        let supervisor = Supervisor(["-w", "2", "--user", "nobody", "--group", "nogroup", "--umask", "027"],
                                    directory: directory, name: "user")
        #expect(Harness.wait { supervisor.settled(workers: 2) }, "\(supervisor.logText())")
        for worker in supervisor.live() {
            let fields = Self.status(worker.pid)
            #expect(fields["Uid"] == "65534 65534 65534 65534", "\(worker.role): \(fields)")
            #expect(fields["Gid"] == "65534 65534 65534 65534", "\(worker.role): \(fields)")
            #expect(fields["Groups"] == "65534", "\(worker.role): \(fields)")
            #expect(fields["Umask"] == "0027", "\(worker.role): \(fields)")
        }
        #expect(Self.status(supervisor.pid)["Uid"] == "0 0 0 0", "the master keeps its privileges")
        // The master still signals them: a reload replaces both, a stop ends them.
        supervisor.signal(SIGHUP)
        #expect(Harness.wait(20) { supervisor.settled(workers: 2, generation: 1) }, "\(supervisor.logText())")
        let workers = supervisor.live().map(\.pid)
        #expect(workers.allSatisfy { Self.status($0)["Uid"] == "65534 65534 65534 65534" })
        #expect(supervisor.stop() == 0)
        #expect(workers.allSatisfy { !Harness.isAlive($0) })
        #expect(supervisor.overlaps().isEmpty)
    }

    /// A uid and gid with no entry in the databases, as numbers. The death
    /// signal still holds after the switch (a change of uid clears it, so the
    /// shim asks for it after): a SIGKILLed master takes its workers along.
    @Test func aUidAndGidWithoutEntriesAreUsedAsGivenAndDieWithTheMaster() {
        let directory = Self.sharedScratch("uid")
        let supervisor = Supervisor(["-w", "2", "-u", "4242", "-g", "4343"], directory: directory, name: "uid")
        #expect(Harness.wait { supervisor.settled(workers: 2) }, "\(supervisor.logText())")
        let workers = supervisor.live().map(\.pid)
        let fields = Self.status(workers.first ?? -1)
        #expect(fields["Uid"] == "4242 4242 4242 4242", "\(fields)")
        #expect(fields["Gid"] == "4343 4343 4343 4343", "\(fields)")
        #expect(fields["Groups"] == "4343", "\(fields)")
        supervisor.signal(SIGKILL)
        #expect(supervisor.waitForExit() == 128 + SIGKILL)
        #expect(Harness.wait(5) { workers.allSatisfy { !Harness.isAlive($0) } }, "workers outlived the master")
    }

    /// Without root there is nothing to switch to: one line, EX_NOPERM.
    @Test func aMasterNotRunningAsRootRefusesUser() {
        let result = Harness.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                  Harness.bellwether, "--user", "nobody", "--check-config", "true"])
        #expect(result.status == 77, "\(result)")
        #expect(result.stderr == "bellwether: --user: running workers as another user or group needs a master "
            + "running as root (this one runs as uid 65534)\n", "\(result.stderr)")
    }

    /// What the workers' user can reach: `closed` (0700, root's) holds an
    /// executable script `app` and a directory `open` (0755); `public`
    /// (0755) holds a world-executable `app`, a script `ownerOnly` (0744) and
    /// a script `viaClosed` whose interpreter is `closed/app`.
    struct Reach {
        let closed: String
        let open: String
        let publicDirectory: String

        init() {
            let root = Harness.scratch("reach")
            chmod(root, 0o755)
            closed = root + "/closed"
            open = closed + "/open"
            publicDirectory = root + "/public"
            for (directory, mode) in [(closed, 0o700), (open, 0o755), (publicDirectory, 0o755)] {
                mkdir(directory, 0o755)
                chmod(directory, mode_t(mode))
            }
            for (path, text, mode) in [(closed + "/app", "#!/bin/sh\n", 0o755),
                                       (publicDirectory + "/app", "#!/bin/sh\n", 0o755),
                                       (publicDirectory + "/ownerOnly", "#!/bin/sh\n", 0o744),
                                       (publicDirectory + "/viaClosed", "#!\(closed)/app\n", 0o755)] {
                try! text.write(toFile: path, atomically: false, encoding: .utf8)
                chmod(path, mode_t(mode))
            }
        }
    }

    static let reach = Reach()

    struct ReachCase: CustomTestStringConvertible, Sendable {
        var name: String
        var arguments: [String]
        var path: String? = nil
        var status: Int32
        /// The whole of stderr, or for status 0 a line of stdout.
        var output: String
        var testDescription: String { name }
    }

    static let reachCases: [ReachCase] = {
        let r = reach
        return [
            ReachCase(name: "a command under a directory the user cannot search",
                      arguments: ["--user", "nobody", r.closed + "/app"], status: 126,
                      output: "bellwether: \(r.closed)/app: user nobody cannot execute it "
                          + "(search permission denied on \(r.closed))\n"),
            ReachCase(name: "a command the user has no execute bit on",
                      arguments: ["--user", "nobody", r.publicDirectory + "/ownerOnly"], status: 126,
                      output: "bellwether: \(r.publicDirectory)/ownerOnly: user nobody cannot execute it "
                          + "(execute permission denied on \(r.publicDirectory)/ownerOnly)\n"),
            ReachCase(name: "a script whose interpreter the user cannot reach",
                      arguments: ["--user", "nobody", r.publicDirectory + "/viaClosed"], status: 126,
                      output: "bellwether: \(r.publicDirectory)/viaClosed: user nobody cannot execute it (its "
                          + "interpreter \(r.closed)/app: search permission denied on \(r.closed))\n"),
            ReachCase(name: "a --chdir the user cannot enter",
                      arguments: ["--user", "nobody", "--chdir", r.open, "true"], status: 126,
                      output: "bellwether: --chdir: \(r.open): user nobody cannot enter it "
                          + "(search permission denied on \(r.closed))\n"),
            ReachCase(name: "found only where the user cannot search", arguments: ["--user", "nobody", "app"],
                      path: r.closed, status: 127,
                      output: "bellwether: app: command not found in the workers' PATH for user nobody "
                          + "(\(r.closed)/app: search permission denied on \(r.closed))\n"),
            ReachCase(name: "a PATH directory the user cannot search is passed over",
                      arguments: ["--user", "nobody", "app"], path: r.closed + ":" + r.publicDirectory, status: 0,
                      output: "command = \(r.publicDirectory)/app"),
            ReachCase(name: "a world-executable command", arguments: ["--user", "nobody", r.publicDirectory + "/app"],
                      status: 0, output: "command = \(r.publicDirectory)/app"),
            ReachCase(name: "without --user, root's reach", arguments: [r.closed + "/app"], status: 0,
                      output: "command = \(r.closed)/app"),
            ReachCase(name: "--group alone keeps root's uid", arguments: ["--group", "nogroup", r.closed + "/app"],
                      status: 0, output: "command = \(r.closed)/app"),
        ]
    }()

    /// --user: COMMAND, a `#!` script's interpreter and --chdir are checked
    /// as that user, whom the root master's own access() would not speak for.
    @Test(arguments: reachCases)
    func checkConfigJudgesTheCommandAndChdirAsTheUser(_ testCase: ReachCase) {
        let result = Harness.run([Harness.bellwether, "--check-config"] + testCase.arguments,
                                 environment: testCase.path.map { ["PATH": $0] } ?? [:])
        #expect(result.status == testCase.status, "\(result)")
        if testCase.status == 0 {
            #expect(result.stdout.split(separator: "\n").contains { $0 == testCase.output }, "\(result.stdout)")
        } else {
            #expect(result.stderr == testCase.output)
        }
    }

    /// The master refuses at start what its workers could not execute,
    /// rather than restarting them with status 126 for ever.
    @Test func aMasterWhoseUserCannotExecuteTheCommandExitsAtOnce() {
        let directory = Harness.scratch("unreachable")
        let result = Harness.run([Harness.bellwether, "-w", "1", "--user", "nobody", "--lease",
                                  "file:" + directory + "/scheduler.lock", Self.reach.closed + "/app"], timeout: 10)
        #expect(result.status == 126, "\(result)")
        #expect(result.stderr == "bellwether: \(Self.reach.closed)/app: user nobody cannot execute it "
            + "(search permission denied on \(Self.reach.closed))\n")
        #expect(!result.stderr.contains("spawned"))
    }

    /// A reload to a config the workers' user cannot work with is logged and
    /// the current configuration kept.
    @Test func aReloadToAChdirTheUserCannotEnterIsRejected() throws {
        let directory = Self.sharedScratch("reachreload")
        let config = directory + "/b.conf"
        try "workers = 1\n".write(toFile: config, atomically: true, encoding: .utf8)
        let supervisor = Supervisor(["-c", config, "--user", "nobody"], directory: directory, name: "reachreload")
        #expect(Harness.wait { supervisor.settled(workers: 1, generation: 0) }, "\(supervisor.logText())")
        try "workers = 2\nchdir = \(Self.reach.open)\n".write(toFile: config, atomically: true, encoding: .utf8)
        supervisor.signal(SIGHUP)
        #expect(Harness.wait(20) { supervisor.settled(workers: 1, generation: 1) }, "\(supervisor.logText())")
        #expect(supervisor.logText().contains("reload: \(config):2: \(Self.reach.open): user nobody cannot enter it "
            + "(search permission denied on \(Self.reach.closed)); keeping the current configuration"),
                "\(supervisor.logText())")
        #expect(supervisor.stop() == 0)
    }

    /// A master whose user may not start more processes (RLIMIT_NPROC):
    /// posix_spawn fails with EAGAIN, which is logged and retried with
    /// back-off — the master neither stops nor spins — and once the limit is
    /// raised every slot fills.
    @Test func outOfProcessesTheMasterBacksOffAndRecovers() {
        let directory = Self.sharedScratch("nproc")
        // A uid of its own, so that no other test's processes count against the limit.
        let supervisor = Supervisor(["-w", "4"], directory: directory, name: "nproc",
                                    prefix: ["/usr/bin/prlimit", "--nproc=3:100"] + Self.asUid4244)
        #expect(Harness.wait { supervisor.logText().contains("Resource temporarily unavailable") },
                "\(supervisor.logText())")
        let cpuBefore = ControlTests.cpuTicks(supervisor.pid)
        usleep(3_000_000)
        let spent = ControlTests.cpuTicks(supervisor.pid) - cpuBefore
        #expect(spent < 50, "the master spent \(spent) ticks of CPU in 3 s while out of processes")
        #expect(supervisor.isRunning(), "\(supervisor.logText())")
        let failures = supervisor.logText().components(separatedBy: "could not spawn").count - 1
        #expect((1...20).contains(failures), "spawn failures logged: \(failures)")
        #expect(supervisor.live().count < 4)

        // Raised by its own user (root here may lack CAP_SYS_RESOURCE, which
        // changing another user's limits needs), within the hard limit.
        let raise = Harness.run(Self.asUid4244 + ["/usr/bin/prlimit", "--pid", "\(supervisor.pid)", "--nproc=100"])
        #expect(raise.status == 0, "\(raise)")
        #expect(Harness.wait(25) { supervisor.settled(workers: 4) }, "\(supervisor.logText())")
        #expect(supervisor.stop() == 0)
        #expect(supervisor.overlaps().isEmpty)
    }
}
