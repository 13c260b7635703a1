import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A sample of hostile input against the real binary, the in-process corpus
/// (BellwetherTests/HostileInputTests.swift) in the form only a real process
/// gets: raw bytes in argv and environ, ill-formed UTF-8 included, and
/// arguments near the kernel's limits. `--check-config` comes first in every
/// run, so a valid configuration exits 0 without starting a worker; anything
/// else must be one line on stderr and a documented exit status, within the
/// time limit of each run.
///
/// NUL bytes cannot be passed: argv and environ are NUL-terminated strings,
/// so the kernel ends an argument at its first NUL. The in-process corpus
/// covers NUL in arguments and environment values, and this sample in config
/// files, where a real process can meet it.
@Suite("Hostile input against the binary", .ownThreadInTheBackground, .timeLimit(.minutes(5)))
struct HostileInputBinaryTests {
    static let seed: UInt64 = ProcessInfo.processInfo.environment["HOSTILE_SEED"].flatMap { UInt64($0) }
        ?? 0x6877_6f73_746c_6521
    static let randomCases = 200
    /// A run that takes longer has hung: --check-config does no waiting. The
    /// largest case takes 0.6 s alone, but the whole suite runs databases,
    /// proxies and masters beside it on two cores: the bound is a liveness
    /// check, not a speed one.
    static let timeLimit = 30.0
    /// What parsing and resolving can end in: EXIT STATUS in the manual.
    static let documented: Set<Int32> = [0, 64, 77, 78, 126, 127]

    @Test func eachRunPrintsItsConfigurationOrOneErrorLine() throws {
        let directory = Harness.scratch("hostile")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = directory + "/hostile.conf"
        let cases = Self.regressions(config: config)
            + (0..<Self.randomCases).map { BinaryCorpus.make($0, seed: Self.seed, config: config) }
        var statuses: [Int32: Int] = [:]
        var failures = 0
        for (index, hostile) in cases.enumerated() {
            if let bytes = hostile.config { #expect(RawProcess.write(bytes, to: config)) }
            let run = RawProcess.run(hostile.argv, environment: hostile.environment, directory: directory,
                                     timeout: Self.timeLimit)
            statuses[run.status, default: 0] += 1
            let problems = Self.problems(run, hostile)
            failures += problems.isEmpty ? 0 : 1
            if !problems.isEmpty && failures <= 20 {
                Issue.record(Comment(rawValue: "case \(index) (HOSTILE_SEED=\(Self.seed)): "
                    + problems.joined(separator: "; ") + "\n  \(hostile.summary)\n  stderr: "
                    + String(decoding: run.stderr.prefix(400), as: UTF8.self)))
            }
        }
        print("hostile input against the binary (HOSTILE_SEED=\(Self.seed)): \(cases.count) runs, exit statuses "
            + statuses.keys.sorted().map { "\($0): \(statuses[$0]!)" }.joined(separator: ", "))
        #expect(failures == 0)
        #expect(cases.count >= 200)
        #expect(statuses[0, default: 0] >= 10 && statuses[64, default: 0] >= 50 && statuses[78, default: 0] >= 10,
                "a sample that is all refusals, or all acceptances, tries little")
    }

    static func problems(_ run: RawProcess.Result, _ hostile: BinaryCase) -> [String] {
        var problems: [String] = []
        if run.timedOut { return ["no exit within \(timeLimit) s"] }
        if !documented.contains(run.status) { problems.append("exit status \(run.status)") }
        if let expected = hostile.expected, !expected.contains(run.status) {
            problems.append("exit status \(run.status), expected \(expected.sorted())")
        }
        if run.status == 0 {
            if !run.stdout.starts(with: Array("configuration OK\n".utf8)) { problems.append("no \"configuration OK\"") }
            if !run.stderr.isEmpty { problems.append("stderr on success") }
        } else {
            let lines = run.stderr.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            if lines.count != 2 || lines[1].count != 0 { problems.append("\(lines.count - 1) lines on stderr") }
            if !run.stderr.starts(with: Array("bellwether: ".utf8)) { problems.append("no \"bellwether: \" prefix") }
            if run.stderr.count > 4096 { problems.append("\(run.stderr.count) bytes on stderr") }
            if String(validating: run.stderr, as: UTF8.self) == nil { problems.append("stderr is not UTF-8") }
            if !run.stdout.isEmpty { problems.append("stdout on failure") }
        }
        if let text = hostile.mentions, !run.stdout.contains(text) && !run.stderr.contains(text) {
            problems.append("output lacks \(String(reflecting: String(decoding: text, as: UTF8.self)))")
        }
        return problems
    }

    /// The inputs that found bugs, as a real process gets them.
    static func regressions(config: String) -> [BinaryCase] {
        func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
        let bellwether = bytes(Harness.bellwether)
        func run(_ arguments: [[UInt8]], environment: [[UInt8]] = [], config: [UInt8]? = nil, expected: Set<Int32>,
                 mentions: String? = nil) -> BinaryCase {
            BinaryCase(argv: [bellwether, bytes("--check-config")] + arguments, environment: environment,
                       config: config, expected: expected, mentions: mentions.map(bytes))
        }
        let path = bytes(config)
        return [
            // CRLF: "\r\n" is one Swift Character; the lines were not split.
            run([bytes("-c"), path, bytes("/bin/true")], config: bytes("# comment\r\nworkers = 3\r\n"), expected: [0],
                mentions: "\nworkers = 3\n"),
            // Past 1 MiB the file was cut short without a word.
            run([bytes("-c"), path, bytes("/bin/true")],
                config: [UInt8](repeating: UInt8(ascii: "#"), count: 1 << 20) + bytes("\nworkers = 3\n"),
                expected: [78], mentions: "File too large"),
            run([bytes("-c"), path, bytes("/bin/true")], config: bytes("pidfile = /tmp/a") + [0] + bytes("b\n"),
                expected: [78], mentions: "\\u0000"),
            // Fifty thousand entries took half a minute, one `set` at a time.
            run([bytes("-c"), path, bytes("/bin/true")],
                config: bytes((0..<50_000).map { "env = K\($0)=1\n" }.joined()), expected: [0]),
            run([bytes("--=pidfile"), bytes("/bin/true")], expected: [64], mentions: "unknown option --=pidfile"),
            run([bytes("-c"), [], bytes("/bin/true")], expected: [64], mentions: "expected a file path"),
            run([bytes("--"), []], expected: [64], mentions: "no COMMAND"),
            run([bytes("--chdir"), bytes("/no\nwhere"), bytes("/bin/true")], expected: [64], mentions: "/no\\u000awhere"),
            run([bytes("-w"), [UInt8](repeating: UInt8(ascii: "9"), count: 100_000), bytes("/bin/true")],
                expected: [64], mentions: "(100000 bytes)"),
            // Ill-formed UTF-8 comes in repaired, as U+FFFD.
            run([bytes("-w"), [0xff] + bytes("4"), bytes("/bin/true")], expected: [64], mentions: "\u{FFFD}4"),
            run([bytes("caf") + [0xe9]], expected: [127], mentions: "caf\u{FFFD}:"),
            // An empty value counts as unset; an entry without "=" is no variable.
            run([bytes("/bin/true")], environment: [bytes("WORKERS_COUNT="), [0xc0, 0x80]], expected: [0]),
            run([bytes("/bin/true")], environment: [bytes("WORKERS_COUNT=") + [0xc0, 0x80]], expected: [64],
                mentions: "WORKERS_COUNT"),
            run([[UInt8]](repeating: bytes("--"), count: 20_000) + [bytes("/bin/true")], expected: [127],
                mentions: "--: command not found"),
            // LISTEN_FDS addressed to the master, and absurd: a loop of 2^31 before.
            BinaryCase(argv: [bytes("/bin/sh"), bytes("-c"),
                              bytes("LISTEN_PID=$$ LISTEN_FDS=2147483647 exec \"$0\" --check-config /bin/true"),
                              bellwether], environment: [], expected: [0]),
        ]
    }
}

/// One run of the binary: argv and environ as bytes, and a config file.
struct BinaryCase {
    var argv: [[UInt8]]
    var environment: [[UInt8]]
    var config: [UInt8]?
    /// The statuses this case may end in, where the generator knows them.
    var expected: Set<Int32>?
    /// Text the output must hold, where the generator knows it.
    var mentions: [UInt8]?

    var summary: String {
        func short(_ bytes: [UInt8]) -> String {
            String(reflecting: String(decoding: bytes.prefix(60), as: UTF8.self))
                + (bytes.count > 60 ? "…(\(bytes.count) bytes)" : "")
        }
        return "argv [\(argv.dropFirst().prefix(12).map(short).joined(separator: ", "))"
            + (argv.count > 13 ? ", …\(argv.count) in all]" : "]")
            + " env [\(environment.map(short).joined(separator: ", "))]"
            + (config.map { " config \(short($0))" } ?? "")
    }
}

/// A small generator of raw byte input. xorshift64* keeps it reproducible
/// from the seed alone.
enum BinaryCorpus {
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            return state &* 0x2545_f491_4f6c_dd1d
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
        mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
    }

    static let options = ["--workers", "-w", "--bind", "-b", "--graceful-timeout", "--timezone", "-e", "--role-env",
                          "--lease", "--ready-timeout", "--log-format", "--chdir", "--backlog", "--bind-mode",
                          "--lease-ttl", "--umask", "--scheduler-bind", "-p"]
    static let environmentNames = ["WORKERS_COUNT", "BELLWETHER_WORKERS", "BELLWETHER_GRACEFUL_TIMEOUT",
                                   "BELLWETHER_BIND", "BELLWETHER_TIMEZONE", "BELLWETHER_LOG_FORMAT",
                                   "BELLWETHER_ROLE_ENV", "BELLWETHER_NO_SCHEDULER", "BELLWETHER_LEASE", "TZDIR"]
    static let values = ["", "0", "1", "4096", "4097", "-1", "+2", "9223372036854775807", "9223372036854775808",
                         "-9223372036854775809", "1e308", "nan", "inf", "-0", "0x10", " 3", "2.5", "86400", "86401",
                         "127.0.0.1:8000", ":65536", "[::1]:80", "unix:/tmp/s", "fd://3", "UTC", "../etc/passwd",
                         "json", "exec", "A=1", "WORKER_ID=1", "file:/tmp/x.lock", "redis://h:0", "true", "/", "--"]
    /// Lone continuation, overlong, surrogate, past U+10FFFF, truncated.
    static let illFormed: [[UInt8]] = [[0xff], [0x80], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80],
                                       [0xe2, 0x82], [0xe9]]

    static func value(_ random: inout Random) -> [UInt8] {
        var bytes = Array(random.pick(values).utf8)
        switch random.below(10) {
        case 0, 1: bytes.insert(contentsOf: random.pick(illFormed), at: random.below(bytes.count + 1))
        // Under the kernel's 128 KiB for one argument.
        case 2: bytes += [UInt8](repeating: random.pick(Array("9a/-".utf8)), count: random.pick([4096, 100_000]))
        default: break
        }
        return bytes
    }

    static func make(_ index: Int, seed: UInt64, config: String) -> BinaryCase {
        var random = Random(state: (seed ^ UInt64(index + 1) &* 0x9e37_79b9_7f4a_7c15) | 1)
        var arguments: [[UInt8]] = []
        var environment: [[UInt8]] = []
        var file: [UInt8]?
        for _ in 0..<random.below(4) {
            let option = random.pick(options)
            switch random.below(3) {
            case 0 where option.hasPrefix("--"): arguments.append(Array("\(option)=".utf8) + value(&random))
            case 1 where !option.hasPrefix("--"): arguments.append(Array(option.utf8) + value(&random))
            default: arguments += [Array(option.utf8), value(&random)]
            }
            if random.below(10) == 0, arguments.last!.count < 1000 {
                arguments += [[UInt8]](repeating: arguments.last!, count: 50)
            }
        }
        for _ in 0..<random.below(3) {
            var name = Array(random.pick(environmentNames).utf8)
            if random.below(10) == 0 { name += random.pick(illFormed) }
            environment.append(name + [UInt8(ascii: "=")] + value(&random))
        }
        if random.below(4) == 0 {
            var lines: [[UInt8]] = []
            for _ in 0..<random.below(6) {
                let key = random.pick(["workers", "graceful_timeout", "bind", "env", "workerz", "config", "", "# x"])
                lines.append(Array("\(key)\(random.pick([" = ", "=", " "]))".utf8) + value(&random))
            }
            if random.below(5) == 0 { lines.append([0x77, 0x00, 0x3d, 0x31]) }
            file = Array(lines.joined(separator: Array(random.pick(["\n", "\r\n"]).utf8)))
            arguments = [Array("-c".utf8), Array(config.utf8)] + arguments
        }
        if random.below(10) == 0 { arguments += [[UInt8]](repeating: Array("--".utf8), count: random.pick([2, 1000])) }
        switch random.below(10) {
        case 0: arguments.append(Array("/bin/tr".utf8) + random.pick(illFormed) + Array("ue".utf8))
        case 1: arguments.append(value(&random))
        default: arguments += [Array("--".utf8), Array("/bin/true".utf8)] + (0..<random.below(3)).map { _ in value(&random) }
        }
        return BinaryCase(argv: [Array(Harness.bellwether.utf8), Array("--check-config".utf8)] + arguments,
                          environment: environment, config: file)
    }
}

/// posix_spawn with argv and environ as raw bytes, which `[String]` cannot
/// carry when they are not UTF-8; output to files, a hard time limit.
enum RawProcess {
    struct Result {
        var status: Int32
        var stdout: [UInt8]
        var stderr: [UInt8]
        var timedOut: Bool
    }

    static func run(_ argv: [[UInt8]], environment: [[UInt8]], directory: String, timeout: Double) -> Result {
        let out = directory + "/out", err = directory + "/err"
        let environ = [Array("PATH=/usr/local/bin:/usr/bin:/bin".utf8)] + environment
        let pid = Harness.spawnBytes(argv, environment: environ, stdout: out, stderr: err)
        guard pid > 0 else { return Result(status: pid, stdout: [], stderr: [], timedOut: false) }
        let (status, timedOut) = Harness.finish(pid, timeout: timeout)
        return Result(status: status, stdout: ChaosOS.readBytes(out) ?? [], stderr: ChaosOS.readBytes(err) ?? [],
                      timedOut: timedOut)
    }

    static func write(_ bytes: [UInt8], to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }
}
