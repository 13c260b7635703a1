import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `--watch DIR`: a change to the app's files is one rolling reload, as SIGHUP's.
@Suite("--watch with real processes", .serialized, .ownThread, .timeLimit(.minutes(2)))
struct WatchTests {
    /// The masters' debounce, longer than the documented 0.2 s: on a loaded
    /// machine, fifty writes of this test may take longer than that.
    static let debounce = 0.5
    static let environment = ["BELLWETHER_TEST_TIMINGS": CoreTimings.short.environment.values.joined()
        + " watch-debounce=\(debounce)"]

    /// Writes in place, as an editor without backup copies does (Foundation
    /// writes a temporary file and renames it).
    static func save(_ path: String, _ text: String = "x = 1\n") {
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644)
        #expect(fd >= 0, "\(path): \(errno)")
        let bytes = Array(text.utf8)
        #expect(write(fd, bytes, bytes.count) == bytes.count)
        close(fd)
    }

    static func reloads(_ supervisor: Supervisor) -> Int {
        supervisor.logText().components(separatedBy: "reload started").count - 1
    }

    /// Waits for reload `n` to finish, then for three debounce windows more:
    /// exactly `n` reloads have started by then.
    static func expectReloads(_ n: Int, _ supervisor: Supervisor, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(Harness.wait(30) { supervisor.logText().contains("reload finished: generation \(n) ") },
                "\(supervisor.logText())", sourceLocation: sourceLocation)
        usleep(useconds_t(debounce * 3 * 1_000_000))
        #expect(reloads(supervisor) == n, "\(supervisor.logText())", sourceLocation: sourceLocation)
    }

    @Test func editsReloadOnceAndExcludedFilesNever() throws {
        let app = Harness.scratch("watch-app")
        defer { try? FileManager.default.removeItem(atPath: app) }
        for index in 0..<50 { Self.save(app + "/module\(index).py") }
        let supervisor = Supervisor(["-w", "2", "--watch", app], environment: Self.environment, name: "watch")
        #expect(Harness.wait { supervisor.logText().contains("generation 0 is ready") }, "\(supervisor.logText())")
        #expect(Self.reloads(supervisor) == 0)

        // One file saved: one reload, of every worker.
        Self.save(app + "/module0.py", "x = 2\n")
        Self.expectReloads(1, supervisor)
        #expect(Harness.wait { supervisor.settled(workers: 2, generation: 1) })

        // Fifty files at once, as a checkout writes them: still one reload.
        for index in 0..<50 { Self.save(app + "/module\(index).py", "x = 3\n") }
        Self.expectReloads(2, supervisor)

        // Byte code, editor swap and backup files, then one module: the
        // reload names that module alone, and no other reload happens.
        try FileManager.default.createDirectory(atPath: app + "/__pycache__", withIntermediateDirectories: true)
        Self.save(app + "/__pycache__/module0.cpython-311.pyc")
        Self.save(app + "/.module0.py.swp")
        Self.save(app + "/module0.py~")
        Self.save(app + "/notes.txt")
        Self.save(app + "/module1.py", "x = 4\n")
        Self.expectReloads(3, supervisor)
        #expect(supervisor.logText().contains("changed: \(app)/module1.py; reloading"), "\(supervisor.logText())")

        // A directory created now is watched too, and a file written in it before its watch was in place counts.
        try FileManager.default.createDirectory(atPath: app + "/package", withIntermediateDirectories: true)
        Self.save(app + "/package/__init__.py")
        Self.expectReloads(4, supervisor)
        Self.save(app + "/package/__init__.py", "y = 1\n")
        Self.expectReloads(5, supervisor)
        #expect(supervisor.logText().contains("changed: \(app)/package/__init__.py; reloading"))
        #expect(supervisor.overlaps().isEmpty)
        #expect(supervisor.stop() == 0)
    }

    /// A file named by --watch counts whatever its name, also after an
    /// editor replaced it by a rename.
    @Test func aNamedFileIsWatchedItself() throws {
        let app = Harness.scratch("watch-file")
        defer { try? FileManager.default.removeItem(atPath: app) }
        Self.save(app + "/settings.toml", "a = 1\n")
        Self.save(app + "/other.toml", "a = 1\n")
        let supervisor = Supervisor(["-w", "1", "--watch", app + "/settings.toml"], environment: Self.environment, name: "watchfile")
        #expect(Harness.wait { supervisor.logText().contains("generation 0 is ready") }, "\(supervisor.logText())")
        Self.save(app + "/settings.toml.new", "a = 2\n")
        #expect(rename(app + "/settings.toml.new", app + "/settings.toml") == 0)
        Self.expectReloads(1, supervisor)
        Self.save(app + "/settings.toml", "a = 3\n")
        Self.expectReloads(2, supervisor)
        #expect(supervisor.stop() == 0)
    }

    /// A save with a syntax error: the new generation cannot boot, the
    /// reload is abandoned and the old one keeps serving; the fix reloads.
    @Test func aBrokenSaveKeepsTheOldGenerationServing() throws {
        let app = Harness.scratch("watch-broken")
        defer { try? FileManager.default.removeItem(atPath: app) }
        Self.save(app + "/app.sh", "x=1\n")
        let log = Harness.scratch("watch-broken-log") + "/master.log"
        // The documented 1 s boot grace, not the short one: a shell that takes
        // longer than 0.2 s to reach the syntax error on a loaded machine
        // would count as ready, and the broken generation would win.
        let environment = ["BELLWETHER_TEST_TIMINGS": "stable-uptime=0.2 token-wait-grace=0.2 watch-debounce=\(Self.debounce)"]
        let master = Harness.spawn([Harness.bellwether, "-w", "1", "--no-scheduler", "--watch", app,
                                    "--watch-include", "*.sh", "--", "/bin/sh", "-c", ". \(app)/app.sh && exec sleep 600"],
                                   environment: environment, stdout: log, stderr: log)
        func text() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        #expect(Harness.wait { text().contains("generation 0 is ready") }, "\(text())")
        Self.save(app + "/app.sh", "if then fi\n")
        #expect(Harness.wait(30) { text().contains("generation 0 keeps serving") }, "\(text())")
        Self.save(app + "/app.sh", "x=2\n")
        #expect(Harness.wait(30) { text().contains("reload finished: generation 2 ") }, "\(text())")
        kill(master, SIGTERM)
        #expect(Harness.finish(master, timeout: 40).status == 0)
    }

    @Test func aMissingPathIsAnError() {
        let result = Harness.run([Harness.bellwether, "--watch", "/nonexistent/app", "--", "/bin/true"])
        #expect(result.status == 64)
        #expect(result.stderr == "bellwether: --watch: /nonexistent/app: No such file or directory\n")
    }

    /// inotify watches directories: 10,000 files under watch cost the idle
    /// master no wake-up at all.
    @Test func tenThousandWatchedFilesDoNotWakeTheMaster() throws {
        // On tmpfs where there is one: 10,000 files on a loaded disk take longer to write than the test.
        let shm = access("/dev/shm", W_OK) == 0
        let app = shm ? "/dev/shm/bellwether-it-watch-tree-\(getpid())" : Harness.scratch("watch-tree")
        defer { try? FileManager.default.removeItem(atPath: app) }
        for directory in 0..<100 {
            let path = app + "/package\(directory)"
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            for file in 0..<100 { Self.save(path + "/module\(file).py") }
        }
        let supervisor = Supervisor(["-w", "2", "--watch", app], environment: Self.environment, name: "watchidle")
        #expect(Harness.wait(30) {
            supervisor.logText().contains("generation 0 is ready") && IdleTests.sleepsInPoll(supervisor.pid)
        }, "\(supervisor.logText())")
        #expect(supervisor.logText().contains("(101 directories)"), "\(supervisor.logText())")
        let before = IdleTests.contextSwitches(supervisor.pid)
        sleep(3)
        let after = IdleTests.contextSwitches(supervisor.pid)
        #expect(before != nil && before == after,
                "wake-ups while idle: \(String(describing: before)) → \(String(describing: after))")
        #expect(Self.reloads(supervisor) == 0)
        #expect(supervisor.stop() == 0)
    }
}
