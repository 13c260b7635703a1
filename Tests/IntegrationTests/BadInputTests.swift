import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Every bad input gets one line on stderr that names the problem, the
/// documented exit status, and no crash trace.
@Suite("Bad input", .ownThreadInTheBackground, .timeLimit(.minutes(2)))
struct BadInputTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var arguments: [String]
        var environment: [String: String] = [:]
        var status: Int32
        var mentions: String
        var testDescription: String { name }
    }

    static let directory = Harness.scratch("badinput")

    /// A file in the scratch directory with this content; its path.
    static func fixture(_ name: String, _ content: String) -> String {
        let path = directory + "/" + name
        try! content.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static let malformedConfig = fixture("malformed.conf", "workers = 2\nthis line has no equals sign\n")
    static let unknownKeyConfig = fixture("unknown.conf", "# comment\nworkerz = 2\n")
    static let badValueConfig = fixture("badvalue.conf", "graceful-timeout = soon\n")
    static let notExecutable: String = {
        let path = fixture("script.sh", "#!/bin/sh\n")
        chmod(path, 0o644)
        return path
    }()

    static let cases: [Case] = [
        Case(name: "workers 0", arguments: ["--workers", "0", "true"], status: 64, mentions: "--workers"),
        Case(name: "workers -1", arguments: ["-w", "-1", "true"], status: 64, mentions: "-w"),
        Case(name: "workers abc", arguments: ["--workers=abc", "true"], status: 64, mentions: "\"abc\""),
        Case(name: "workers huge", arguments: ["-w", "99999999999", "true"], status: 64, mentions: "99999999999"),
        Case(name: "WORKERS_COUNT=abc", arguments: ["true"], environment: ["WORKERS_COUNT": "abc"],
             status: 64, mentions: "WORKERS_COUNT"),
        Case(name: "BELLWETHER_GRACEFUL_TIMEOUT=x", arguments: ["true"],
             environment: ["BELLWETHER_GRACEFUL_TIMEOUT": "x"], status: 64, mentions: "BELLWETHER_GRACEFUL_TIMEOUT"),
        Case(name: "unknown flag", arguments: ["--frobnicate", "true"], status: 64, mentions: "--frobnicate"),
        Case(name: "missing value", arguments: ["--workers"], status: 64, mentions: "--workers"),
        Case(name: "missing command", arguments: ["-w", "2"], status: 64, mentions: "COMMAND"),
        Case(name: "missing --watch path", arguments: ["--watch", "/nonexistent/src", "true"], status: 64,
             mentions: "--watch: /nonexistent/src: No such file or directory"),
        Case(name: "empty --watch", arguments: ["--watch=", "true"], status: 64, mentions: "--watch"),
        Case(name: "empty --watch-exclude", arguments: ["--watch-exclude", "", "true"], status: 64,
             mentions: "--watch-exclude"),
        Case(name: "command not found", arguments: ["no-such-command-xyz"], status: 127, mentions: "no-such-command-xyz"),
        Case(name: "not executable", arguments: [notExecutable], status: 126, mentions: "permission denied"),
        Case(name: "a directory", arguments: ["/tmp"], status: 126, mentions: "is a directory"),
        Case(name: "bad timezone", arguments: ["--timezone", "Mars/Olympus", "true"], status: 64, mentions: "Mars/Olympus"),
        Case(name: "timezone escape", arguments: ["--timezone", "../../etc/passwd", "true"], status: 64,
             mentions: "unknown time zone"),
        Case(name: "unreadable config", arguments: ["-c", "/nonexistent/bellwether.conf", "true"], status: 78,
             mentions: "/nonexistent/bellwether.conf"),
        Case(name: "malformed config", arguments: ["--config", malformedConfig, "true"], status: 78,
             mentions: ":2:"),
        Case(name: "unknown config key", arguments: ["--config", unknownKeyConfig, "true"], status: 78,
             mentions: "workerz"),
        Case(name: "bad config value", arguments: ["--config", badValueConfig, "true"], status: 64,
             mentions: "badvalue.conf:1"),
        Case(name: "bad --env", arguments: ["-e", "NOEQUALS", "true"], status: 64, mentions: "KEY=VALUE"),
        Case(name: "bad --env key", arguments: ["-e", "1X=2", "true"], status: 64, mentions: "1X=2"),
        Case(name: "reserved --env", arguments: ["-e", "WORKER_ID=7", "true"], status: 64, mentions: "WORKER_ID"),
        Case(name: "negative graceful timeout", arguments: ["--graceful-timeout", "-3", "true"], status: 64,
             mentions: "--graceful-timeout"),
        Case(name: "bad log format", arguments: ["--log-format", "xml", "true"], status: 64, mentions: "text or json"),
        Case(name: "bad role env", arguments: ["--role-env", "A-B", "true"], status: 64, mentions: "--role-env"),
        Case(name: "missing chdir", arguments: ["--chdir", "/nonexistent-dir", "true"], status: 64,
             mentions: "/nonexistent-dir"),
        Case(name: "bad lease", arguments: ["--lease", "zookeeper://x", "true"], status: 64, mentions: "file:PATH"),
        Case(name: "malformed redis lease", arguments: ["--lease", "redis://u:secret@h:99999", "true"], status: 64,
             mentions: "PORT is 1-65535"),
        Case(name: "renew deadline under 3 R", arguments: ["--lease", "redis://127.0.0.1:1", "--lease-renew-interval",
             "4", "true"], status: 64, mentions: "must be at least 3 × --lease-renew-interval"),
        Case(name: "D + R not under L", arguments: ["--lease", "redis://127.0.0.1:1", "--lease-ttl", "11", "true"],
             status: 64, mentions: "must be less than --lease-ttl"),
        Case(name: "takeover delay under D + G", arguments: ["--lease", "redis://127.0.0.1:1",
             "--lease-takeover-delay", "14", "true"], status: 64, mentions: "must be at least --lease-renew-deadline"),
        Case(name: "zero renew interval", arguments: ["--lease-renew-interval", "0", "true"], status: 64,
             mentions: "--lease-renew-interval"),
        Case(name: "bad lease ttl", arguments: ["--lease-ttl", "soon", "true"], status: 64, mentions: "--lease-ttl"),
        Case(name: "redis lease without host", arguments: ["--lease", "redis://", "true"], status: 64,
             mentions: "redis://"),
        Case(name: "switch with value", arguments: ["--no-scheduler=yes", "true"], status: 64, mentions: "takes no value"),
        Case(name: "bind without port", arguments: ["-b", "127.0.0.1", "true"], status: 64, mentions: "HOST:PORT"),
        Case(name: "bind bad host", arguments: ["--bind", "999.1.1.1:80", "true"], status: 64, mentions: "999.1.1.1:80"),
        Case(name: "bind bad port", arguments: ["--bind=:70000", "true"], status: 64, mentions: ":70000"),
        Case(name: "metrics-bind from systemd", arguments: ["--metrics-bind", "fd://3", "true"], status: 64,
             mentions: "unix:PATH, got \"fd://3\""),
        Case(name: "unix path too long", arguments: ["-b", "unix:/" + String(repeating: "x", count: 120), "true"],
             status: 64, mentions: "at most 107 bytes"),
        Case(name: "fd:// with nothing inherited", arguments: ["-b", "fd://3", "true"], status: 64,
             mentions: "no socket inherited from systemd"),
        Case(name: "bad IPv6", arguments: ["-b", "[zz::1]:80", "true"], status: 64, mentions: "[zz::1]:80"),
        Case(name: "--env NOTIFY_SOCKET", arguments: ["-e", "NOTIFY_SOCKET=/x", "true"], status: 64,
             mentions: "NOTIFY_SOCKET"),
        Case(name: "ready timeout inside the boot grace", arguments: ["--ready-timeout", "0.5", "true"], status: 64,
             mentions: "boot grace"),
        Case(name: "bad ready", arguments: ["--ready", "soon", "true"], status: 64, mentions: "exec or notify"),
        Case(name: "zero ready timeout", arguments: ["--ready-timeout", "0", "true"], status: 64, mentions: "above 0"),
        Case(name: "bad backlog", arguments: ["--backlog", "0", "true"], status: 64, mentions: "--backlog"),
        Case(name: "negative boot attempts", arguments: ["--boot-attempts", "-1", "true"], status: 64,
             mentions: "--boot-attempts: expected a whole number from 0 to 10000"),
        Case(name: "reload nice out of range", arguments: ["--reload-nice", "20", "true"], status: 64,
             mentions: "--reload-nice"),
        Case(name: "bad bind mode", arguments: ["--bind-mode", "999", "true"], status: 64, mentions: "octal"),
        Case(name: "pidfile in missing dir", arguments: ["-p", "/nonexistent-dir/b.pid", "true"], status: 73,
             mentions: "pidfile"),
    ]

    @Test(arguments: cases)
    func badInputGetsOneLineAndItsExitStatus(_ testCase: Case) {
        let result = Harness.run([Harness.bellwether] + testCase.arguments, environment: testCase.environment)
        let lines = result.stderr.split(separator: "\n")
        #expect(result.status == testCase.status, "stderr: \(result.stderr)")
        #expect(lines.count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.hasPrefix("bellwether: "))
        #expect(result.stderr.contains(testCase.mentions), "stderr: \(result.stderr)")
        #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("Backtrace"))
    }

    /// The runtime directory holds the control socket and the default token:
    /// one that others can write, or that another user owns, is refused.
    @Test(arguments: ["open to others", "another user's"])
    func aRuntimeDirectoryNotThisUsersAloneIsRefused(_ flaw: String) {
        let runtime = Harness.scratch("runtime")
        mkdir(runtime + "/bellwether", 0o700)
        if flaw == "open to others" { chmod(runtime + "/bellwether", 0o777) } else {
            // Only root can give a directory away (see PrivilegeTests).
            guard getuid() == 0 else { #expect(!runningAsRoot, "needs root"); return }
            chown(runtime + "/bellwether", 65534, 65534)
        }
        let result = Harness.run([Harness.bellwether, "true"], environment: ["XDG_RUNTIME_DIR": runtime])
        #expect(result.status == 73)
        #expect(result.stderr.contains("runtime directory \(runtime)/bellwether must be a directory of this user's"))
    }

    @Test func helpAndVersionSucceed() {
        let help = Harness.run([Harness.bellwether, "--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("usage: bellwether"))
        for option in ["--workers", "--role-env", "--no-scheduler", "--graceful-timeout", "--env", "--chdir",
                       "--pidfile", "--timezone", "--config", "--check-config", "--log-format", "--lease", "--bind",
                       "--bind-mode", "--backlog", "--scheduler-bind", "--metrics-bind", "--ready", "--ready-timeout",
                       "--boot-attempts", "--timeout", "--lease-ttl", "--lease-renew-interval", "--lease-renew-deadline", "--lease-grace",
                       "--lease-takeover-delay"] {
            #expect(help.stdout.contains(option))
        }
        let version = Harness.run([Harness.bellwether, "--version"])
        #expect(version.status == 0)
        #expect(version.stdout.hasPrefix("bellwether "))
    }
}

/// README, the manual page and --help say the same thing.
@Suite("Documentation agrees with --help", .ownThreadInTheBackground)
struct DocumentationTests {
    @Test func everyOptionAndExitStatusIsDocumentedEverywhere() throws {
        let help = Harness.run([Harness.bellwether, "--help"]).stdout
        let readme = try String(contentsOfFile: Harness.packageRoot + "/README.md", encoding: .utf8)
        let manual = try String(contentsOfFile: Harness.packageRoot + "/man/bellwether.1", encoding: .utf8)
        let options = help.split(separator: "\n").filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("-") }
            .compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("--") }.map(String.init)
        }
        #expect(options.count >= 20)
        for option in options {
            #expect(readme.contains("`" + option), "README lacks \(option)")
            #expect(manual.contains("Fl \\" + option.dropFirst()), "manual lacks \(option)")
        }
        let statuses = help.split(separator: "\n").drop { !$0.hasPrefix("exit status") }.dropFirst()
            .compactMap { Int($0.split(separator: " ").first ?? "") }
        #expect(statuses == [0, 3, 64, 69, 71, 73, 77, 78, 126, 127])
        for status in statuses {
            #expect(readme.contains("| \(status) |"), "README lacks exit status \(status)")
            #expect(manual.contains(".It \(status)\n"), "manual lacks exit status \(status)")
        }
        for variable in ["WORKER_ROLE", "WORKERS_COUNT", "WORKER_ID", "WORKER_GENERATION", "LISTEN_FDS",
                         "NOTIFY_SOCKET", "WATCHDOG_USEC", "WORKER_FENCING_TOKEN", "WORKER_LEASE_HOLDER",
                         "BELLWETHER_LEASE_PASSWORD"] {
            #expect(help.contains(variable) && readme.contains(variable) && manual.contains(variable), "\(variable)")
        }
        for signal in ["HUP", "TERM", "INT", "QUIT", "TTIN", "TTOU", "USR1"] {
            #expect(help.contains(signal) && readme.contains(signal) && manual.contains(signal), "\(signal)")
        }
    }

    static func longFlags(_ text: String, prefix: String) -> Set<String> {
        var flags = Set<String>()
        var rest = Substring(text)
        while let range = rest.range(of: prefix) {
            let name = rest[range.upperBound...].prefix { $0.isLowercase || $0 == "-" }
            if name.first?.isLowercase == true { flags.insert("--" + name) }
            rest = rest[range.upperBound...]
        }
        return flags
    }

    /// Every long flag in --help is in the manual and every flag the manual
    /// names is in --help; the manual has every section a manual page should.
    @Test func helpAndManualNameTheSameFlags() throws {
        let help = Harness.run([Harness.bellwether, "--help"]).stdout
        let manual = try String(contentsOfFile: Harness.packageRoot + "/man/bellwether.1", encoding: .utf8)
        let inHelp = Self.longFlags(help, prefix: "--")
        let inManual = Self.longFlags(manual, prefix: "Fl \\-")
        #expect(inHelp.count >= 25)
        #expect(inHelp.subtracting(inManual).isEmpty, "missing from the manual: \(inHelp.subtracting(inManual).sorted())")
        #expect(inManual.subtracting(inHelp).isEmpty, "missing from --help: \(inManual.subtracting(inHelp).sorted())")
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT", "SIGNALS", "EXIT STATUS", "FILES",
                        "EXAMPLES", "SEE ALSO"] {
            #expect(manual.contains("\n.Sh \(section)\n"), "manual lacks \(section)")
        }
    }

    /// The manual renders without a warning (scripts/test installs groff).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/groff")
        || ProcessInfo.processInfo.environment["BELLWETHER_REQUIRE_GROFF"] == "1"))
    func theManualRendersWithoutWarnings() {
        let result = Harness.run(["/usr/bin/groff", "-ww", "-mdoc", "-Tutf8", Harness.packageRoot + "/man/bellwether.1"])
        #expect(result.status == 0)
        #expect(result.stderr.isEmpty, "\(result.stderr)")
        #expect(result.stdout.count > 10_000, "the whole page was rendered")
    }

    /// The sample config file names every setting a config file may hold and,
    /// as shipped, is valid.
    @Test func theSampleConfigFileIsCompleteAndValid() throws {
        let sample = try String(contentsOfFile: Harness.packageRoot + "/etc/bellwether.conf", encoding: .utf8)
        let help = Harness.run([Harness.bellwether, "--help"]).stdout
        let settable = Self.longFlags(help, prefix: "--").subtracting(["--help", "--version", "--check-config", "--config",
                                                                        "--json"])
        for flag in settable {
            let key = flag.dropFirst(2)
            #expect(sample.contains("\n\(key) = ") || sample.contains("\n# \(key) = "), "sample lacks \(key)")
        }
        let check = Harness.run([Harness.bellwether, "-c", Harness.packageRoot + "/etc/bellwether.conf", "--check-config", "true"])
        #expect(check.status == 0, "\(check.stderr)")
    }
}
