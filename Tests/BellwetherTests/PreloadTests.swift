import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Bellwether

/// `--preload`: what is accepted as a Python command and a module list, the
/// fork server's answers, and a fork server's failures as failed boots.
@Suite("Preload")
struct PreloadTests {
    @Test func interpreterNamesArePythonsAndOnlyThem() {
        for name in ["python", "python3", "python3.11", "/usr/bin/python3.12", "/venv/bin/python", "pypy3"] {
            #expect(PythonPreload.isInterpreterName(name), "\(name)")
        }
        for name in ["gunicorn", "ipython", "python-config", "python3-dev", "/usr/bin/sh", "pythonw.exe", ""] {
            #expect(!PythonPreload.isInterpreterName(name), "\(name)")
        }
    }

    @Test func moduleListsAreCommaSeparatedAFileOrNone() throws {
        let source = SettingSource.flag("--preload")
        #expect(try PythonPreload.moduleList("flask, sqlalchemy ,a.b_c", source: source, directory: "/")
            == ["flask", "sqlalchemy", "a.b_c"])
        #expect(try PythonPreload.moduleList("-", source: source, directory: "/") == [])
        for bad in ["x-y", "flask,", ",", "1abc", "a..b", ".a", "a.", "fl ask", "é"] {
            #expect(throws: BellwetherError.self, "\(bad)") {
                try PythonPreload.moduleList(bad, source: source, directory: "/")
            }
        }
        let directory = try scratch()
        defer { _ = system("rm -rf '\(directory)'") }
        try write("# libraries\nflask\n\n  flask_apscheduler  # the scheduler\napscheduler.schedulers.background\n",
                  to: directory + "/modules.txt")
        #expect(try PythonPreload.moduleList("@modules.txt", source: source, directory: directory)
            == ["flask", "flask_apscheduler", "apscheduler.schedulers.background"])
        do {
            _ = try PythonPreload.moduleList("@missing.txt", source: source, directory: directory)
            Issue.record("a missing file was accepted")
        } catch {
            #expect(error.exitCode == .usage && error.message.contains("missing.txt"), "\(error.message)")
        }
    }

    @Test func pythonCommandsAreResolvedToAnInterpreterAndWhatItRuns() throws {
        let directory = try scratch()
        defer { _ = system("rm -rf '\(directory)'") }
        let bin = directory + "/bin"
        mkdir(bin, 0o755)
        try write("#!/bin/sh\nexit 0\n", to: bin + "/python3", mode: 0o755)
        try write("#!/usr/bin/env python3\nprint()\n", to: bin + "/gunicorn", mode: 0o755)
        try write("#!\(bin)/python3\nprint()\n", to: bin + "/direct", mode: 0o755)
        try write("#!/bin/sh\necho\n", to: bin + "/shell", mode: 0o755)
        try write("#!/usr/bin/env python3 -u\nprint()\n", to: bin + "/withoption", mode: 0o755)
        let source = SettingSource.flag("--preload")
        func resolve(_ command: [String]) throws(BellwetherError) -> PythonPreload {
            let executable = command[0].hasPrefix("/") ? command[0] : bin + "/" + command[0]
            return try PythonPreload.resolve("flask", source: source, command: command, executable: executable,
                                             path: bin, directory: directory)
        }
        let script = try resolve(["python3", "app.py", "--port", "1"])
        #expect(script.interpreter == bin + "/python3" && script.app == [directory + "/app.py", "--port", "1"])
        #expect(try resolve(["python3", "-m", "myapp", "x"]).app == ["-m", "myapp", "x"])
        let console = try resolve(["gunicorn", "-w", "1", "app:app"])
        #expect(console.interpreter == bin + "/python3", "#!/usr/bin/env python3 is found in the workers' PATH")
        #expect(console.app == [bin + "/gunicorn", "-w", "1", "app:app"] && console.modules == ["flask"])
        #expect(try resolve([bin + "/direct"]).interpreter == bin + "/python3")
        for refused in [["shell"], ["withoption"], ["python3"], ["python3", "-u", "app.py"], ["python3", "-c", "1"],
                        ["/bin/true"]] {
            do {
                _ = try resolve(refused)
                Issue.record("\(refused) was accepted")
            } catch {
                #expect(error.exitCode == .usage, "\(refused): \(error.message)")
                #expect(!error.message.contains("\n"))
            }
        }
    }

    @Test func theForkServerIsFoundBesideTheBinaryAndShownWithoutDotDot() {
        #expect(ForkServers.withoutDotDot("/usr/bin/../share/bellwether/forkserver.py")
            == "/usr/share/bellwether/forkserver.py")
        #expect(ForkServers.withoutDotDot("/r/.build/x86_64/debug/../../../share/./forkserver.py")
            == "/r/share/forkserver.py")
        #expect(ForkServers.withoutDotDot("/a/b") == "/a/b")
    }

    @Test func theForkServersAnswersAreRead() {
        #expect(FlatJSON.parse(#"{"ref": 3, "pid": 1234}"#) == ["ref": .int(3), "pid": .int(1234)])
        #expect(FlatJSON.parse(#"{"ref":7,"error":"cannot fork: \"no\" \u00e9\n"}"#)
            == ["ref": .int(7), "error": .string("cannot fork: \"no\" é\n")])
        #expect(FlatJSON.parse(#"{"ready": 5, "failure": null, "gc_frozen": 40123, "ok": true}"#)
            == ["ready": .int(5), "failure": .null, "gc_frozen": .int(40123), "ok": .bool(true)])
        #expect(FlatJSON.parse("{}") == [:])
        for malformed in ["", "{", #"{"ref": }"#, #"{"ref" 3}"#, #"{"ref": 3"#, "[1]", #"{"a": "unterminated}"#,
                          #"{"a": 1,}"#] {
            #expect(FlatJSON.parse(malformed) == nil, "\(malformed)")
        }
    }

    @Test func aForkServerThatCannotForkFailsTheFirstStart() {
        var world = SimulatedWorld(plan: Plan(workers: 2, bootAttempts: 3), seed: 3)
        world.spawnFailureRate = 1
        world.spawnFailuresAreFailedBoots = true
        world.send(.start)
        world.quiesce()
        #expect(world.exitStatus == 3, "\(world.logged("spawn_failed").count) spawn failures")
        #expect(world.logged("failed_start").count == 1)
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func spawnsThatFailOtherwiseNeverFailTheStart() {
        var world = SimulatedWorld(plan: Plan(workers: 2, bootAttempts: 3), seed: 3)
        world.spawnFailureRate = 1
        world.send(.start)
        world.advance(to: world.now + .seconds(60))
        #expect(world.exitStatus == nil && !world.core.isStopping, "posix_spawn failing with EAGAIN passes")
        #expect(world.logged("spawn_failed").count > 10)
    }

    @Test func aReloadWhoseForkServerCannotForkIsAbandoned() {
        var world = SimulatedWorld.started(Plan(workers: 2, bootAttempts: 1), seed: 5)
        let serving = Set(world.alive.filter { $0.value.role == .worker }.keys)
        world.spawnFailureRate = 1
        world.spawnFailuresAreFailedBoots = true
        world.send(.reload(Plan(workers: 2, bootAttempts: 1)))
        #expect(world.core.generation == 0, "abandoned")
        #expect(world.logged("reload_failed").first?.message.contains("could not be forked") == true,
                "\(world.logged("reload_failed"))")
        world.spawnFailureRate = 0
        world.quiesce()
        #expect(!world.core.isStopping && world.exitStatus == nil)
        #expect(serving.isSubset(of: Set(world.alive.keys)), "the first generation kept serving")
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    private func scratch() throws -> String {
        var template = Array("/tmp/bellwether-preload-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw PreloadTestError.scratch }
        return String(cString: made)
    }

    private func write(_ text: String, to path: String, mode: mode_t = 0o644) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { throw PreloadTestError.write(path) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else { throw PreloadTestError.write(path) }
        chmod(path, mode)
    }
}

enum PreloadTestError: Error {
    case scratch
    case write(String)
}
