import Foundation
import Testing
@testable import Bellwether
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The generator. Every case comes from (seed, index) alone.
enum HostileCorpus {
    static func make(_ index: Int, seed: UInt64, directory: String) -> HostileCase {
        var random = SplitMix(seed: seed ^ (UInt64(index) &* 0xd1b5_4a32_d192_ed03))
        let category: HostileCase.Category = switch index % 20 {
        case 0..<9: .arguments
        case 9..<13: .environment
        case 13..<18: .configFile
        default: .mixed
        }
        var hostile = HostileCase(category: category, configPath: directory + "/case.conf")
        switch category {
        case .arguments:
            hostile.arguments = arguments(&random, &hostile)
        case .environment:
            environment(&random, &hostile)
            hostile.arguments += random.percent(80) ? ["--", "/bin/true"] : arguments(&random, &hostile)
        case .configFile:
            configFile(&random, &hostile)
            if hostile.mustAccept {
                hostile.arguments = ["-c", hostile.configPath, "--", "/bin/true"]
            } else if random.percent(30) {
                hostile.environment.append("BELLWETHER_CONFIG=" + hostile.configPath)
                hostile.arguments = ["/bin/true"]
            } else {
                hostile.arguments = [random.pick(["-c", "--config"]), hostile.configPath, "true"]
            }
        case .mixed:
            // Every layer at once, each hostile less often, so that some
            // cases get through and the layers' precedence is put to the test.
            hostile.hostility = 5
            if random.percent(70) { wellFormed(&random, &hostile) } else { configFile(&random, &hostile) }
            hostile.mustAccept = false
            environment(&random, &hostile, most: 4)
            hostile.environment.append("BELLWETHER_CONFIG=" + hostile.configPath)
            hostile.arguments += arguments(&random, &hostile)
        }
        return hostile
    }

    /// Runs the case as Bellwether.main does, up to the point where the
    /// master would start.
    static func run(_ hostile: HostileCase, directory: String) -> HostileOutcome {
        do throws(BellwetherError) {
            let request = try SettingsLoader.request(arguments: hostile.arguments,
                                                     environment: Bellwether.dictionary(hostile.environment))
            switch request {
            case .help: return .help
            case .version: return .version
            case .run(let loader):
                return .configuration(try Configuration.resolve(try loader.load(), environment: hostile.environment,
                                                                directory: directory))
            }
        } catch {
            return .error(error)
        }
    }

    /// What `--workers TEXT` must give, from the manual ("1–4096"): the whole
    /// number TEXT spells in ASCII decimal digits (a leading "+" and leading
    /// zeros allowed, as Swift's `Int(_:)` reads them); nil: a refusal.
    static func workers(_ text: String) -> Int? {
        let digits = text.hasPrefix("+") ? text.utf8.dropFirst() : text.utf8[...]
        guard !digits.isEmpty, digits.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        let significant = digits.drop { $0 == 0x30 }
        guard significant.count <= 4 else { return nil }
        let value = significant.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        return (1...Plan.maximumWorkers).contains(value) ? value : nil
    }

    // MARK: Pieces

    static let numbers: [String] = [
        "0", "1", "2", "64", "4095", "4096", "4097", "65535", "65536", "86400", "86401", "-0", "-1", "+1", "+0",
        "+4096", "0004", String(repeating: "0", count: 300) + "7", "1_000", "1,5", "1.5", "0.5", ".5", "5.", ".", "..",
        "1..2", " 1", "1 ", "\t2", "3\n", String(Int.max), String(Int.min), "9223372036854775808",
        "-9223372036854775809", "18446744073709551615", "18446744073709551616", String(Int32.max), String(Int32.min),
        "2147483648", "4294967296", "1e308", "1e309", "-1e308", "1e-308", "4.9e-324", "1.7976931348623157e308",
        "0.0001", "0.001", "0.0009999", "86399.999999999", "86400.0000001", "nan", "NaN", "-nan", "inf", "-inf",
        "Infinity", "0x10", "0X1p3", "0o17", "0b101", "017", "1e3", "1E3", "\u{664}", "\u{FF14}", "\u{B2}", "\u{BD}",
        "1" + String(repeating: "0", count: 400), "0." + String(repeating: "0", count: 500) + "1",
    ]
    static let limits: Set<String> = [String(Int.max), String(Int.min), "9223372036854775808", "-9223372036854775809",
                                      "18446744073709551616", "2147483648", "1e308", "1e309", "4.9e-324"]

    static let words: [String] = [
        "true", "false", "yes", "no", "on", "off", "TRUE", "exec", "notify", "text", "json", "WORKER_ROLE", "A", "_",
        "A=B", "=", "==", "-", "--", "---", "-w", "--workers", "--help", "#", "#x", "'", "\"", "''", "\"\"", "'x\"",
        "\\", "%", "%zz", "@", "[", "]", "[::1]", ":", "::", "/", ".", "..", "~", "$HOME", "$(id)", "\u{FEFF}",
        "\u{301}", "e\u{301}", "\u{1F411}", "\u{202E}", "\u{2028}", "\u{85}", "\u{1B}[31m", "\r", "\r\n", "\n", " ",
        "\t", "a b", "status", "reload", "stop", "scale",
    ]
    static let addresses: [String] = [
        "127.0.0.1:8000", ":0", ":65535", ":65536", ":-1", "0.0.0.0:80", "localhost:80", "[::1]:80", "[::1]", "[::1",
        "[zz::1]:1", "[::ffff:1.2.3.4]:9", "1.2.3.4.5:1", "01.2.3.4:1", "256.0.0.0:1", "1.2.3:4", "unix:", "unix:/tmp/s",
        "unix:" + String(repeating: "x", count: 107), "unix:" + String(repeating: "x", count: 108), "unix:\u{1F411}",
        "fd://3", "fd://2", "fd://-1", "fd://4", "fd://2147483647", "fd://2147483648", "fd://" + String(Int.max),
        "fd://", "fd://x", "host:80", "127.0.0.1:" + String(Int.max),
    ]
    static let leases: [String] = [
        "postgres://h", "postgresql://u:p@h:5433/db?key=k&table=s.t", "postgres://h?sslmode=verify-full",
        "postgres://h?sslmode=bogus", "postgres://h?table=1x", "postgres://h?table=a.b.c", "postgres://h:0",
        "postgres://u@[::1]/d?application_name=x&connect_timeout=5", "postgres://h?password=p", "postgres://%zz@h",
        "file:", "file:/tmp/x.lock", "file:" + String(repeating: "/", count: 300), "redis://", "redis://h",
        "redis://h:0", "redis://h:65536", "redis://h:6379/0", "redis://[::1]:6379", "redis://[::1", "redis://[zz]:1",
        "redis://u:p@h/0?key=", "redis://u:p@h/0?key=k", "redis://%zz@h", "redis://%4@h", "redis://%@h",
        "redis://h/99999999999999999999", "redis://h/-1", "redis://h?key=a&key=b", "redis://h?foo=bar", "redis://:@h",
        "redis://@@@h", "redis://h?", "redis://h?&", "redis://u:p@", "redis://h:" + String(Int.max),
        "redis://h_h", "zookeeper://h", "REDIS://h", "rediss://h", "rediss://h?insecure=1", "rediss://h?insecure=2",
        "rediss://h?cacert=/etc/ssl/certs/ca-certificates.crt", "rediss://h?cacert=%00", "rediss://h?cacert=rel",
        "rediss://h?cacert=/x&insecure=1", "redis://h?insecure=1", "rediss://u:p@[::1]:1/2?key=k&cacert=/%E2%80%A8",
    ]
    static let zones = ["UTC", "Etc/UTC", "Europe/Paris", "../etc/passwd", "/etc/localtime", "Mars/Olympus", "UTC/",
                        "./UTC", "Etc//UTC", "zone.tab", "Europe", "posixrules"]
    static let paths = ["/", "/tmp", ".", "..", "/nonexistent/dir", "/dev/null", "/etc/passwd", "relative/dir",
                        "/" + String(repeating: "d/", count: 3000), String(repeating: "n", count: 300)]
    static let variables = ["A=1", "A_1=x=y", "a=", "=x", "1X=2", "A-B=1", "WORKER_ID=7", "WORKERS_COUNT=3",
                            "WORKER_ROLE=x", "LISTEN_FDS=1", "NOTIFY_SOCKET=/x", "TZ=UTC", "PATH=/nowhere",
                            "\u{C9}=1", "A", ""]
    static let roleNames = ["WORKER_ROLE", "ROLE", "_", "A1", "1A", "A-B", "WORKER_ID", "WORKERS_COUNT",
                            "WORKER_GENERATION", "WORKER_FENCING_TOKEN", "\u{C9}T\u{C9}", "A B"]
    static let secondsOptions: Set<String> = ["graceful-timeout", "ready-timeout", "timeout", "lease-ttl",
                                              "lease-renew-interval", "lease-renew-deadline", "lease-grace",
                                              "lease-takeover-delay"]
    /// Words in the place of an option that no option answers to.
    static let badOptions = ["--frobnicate", "--work", "--WORKERS", "--workers-count", "-x", "-W", "-hx", "---",
                             "---workers", "--=pidfile", "--=workers", "--=config", "--=", "--no-scheduler=yes",
                             "--check-config=1", "--help=1", "--\u{0}", "--workers\u{0}", "--\u{FFFD}", "-\u{FFFD}",
                             "--workers\u{301}=2", "-\u{1F411}", "--bind\u{2028}", "-" + String(repeating: "z", count: 1 << 16)]

    /// Bytes that are not UTF-8: a lone continuation, overlong forms, a
    /// surrogate, a code point past U+10FFFF, a truncated sequence.
    static let invalidUTF8: [[UInt8]] = [[0xff], [0xfe], [0x80], [0xbf], [0xc0, 0x80], [0xc1, 0xbf], [0xe2, 0x82],
                                        [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80],
                                        [0xf0, 0x9f, 0x90], [0xe9]]

    /// Values so long that they are shared rather than built for each case.
    static let huge: [String] = [
        String(repeating: "9", count: 1 << 20), String(repeating: "a", count: 1 << 20),
        "/" + String(repeating: "x/", count: 1 << 19), String(repeating: "\u{0}", count: 1 << 16),
        String(repeating: "-", count: 1 << 18), String(repeating: "e\u{301}", count: 1 << 16),
        String(repeating: "\n", count: 1 << 16), "1" + String(repeating: "0", count: 1 << 16),
        String(repeating: "\u{1F411}", count: 1 << 16), String(repeating: "=", count: 1 << 16),
    ]

    /// Whether `bytes` hold a NUL: memchr over contiguous bytes, which the
    /// generator's megabyte-long values have (a byte-by-byte search of them
    /// in a debug build was a third of the corpus's time).
    static func hasNUL<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> Bool {
        bytes.withContiguousStorageIfAvailable { buffer in
            buffer.baseAddress.map { memchr($0, 0, buffer.count) != nil } ?? false
        } ?? bytes.contains(0)
    }

    /// A hostile string, in the form CommandLine.arguments and environ give
    /// it to the binary: ill-formed UTF-8 comes in repaired with U+FFFD, the
    /// way `String(cString:)` reads it.
    static func text(_ random: inout SplitMix, _ hostile: inout HostileCase) -> String {
        var text: String
        switch random.below(100) {
        case 0..<10: text = ""; hostile.tags.insert(.empty)
        case 10..<12: text = random.pick(huge); hostile.tags.insert(.huge)
        case 12..<35: text = random.pick(numbers)
        case 35..<55: text = random.pick(words)
        case 55..<65: text = random.pick(random.percent(50) ? addresses : leases)
        case 65..<72: text = random.pick(random.pick([paths, zones, variables]))
        case 72..<85:
            var bytes = Array(random.pick(random.percent(50) ? words : numbers).utf8)
            for _ in 0...random.below(3) {
                bytes.insert(contentsOf: random.pick(invalidUTF8), at: random.below(bytes.count + 1))
            }
            text = String(decoding: bytes, as: UTF8.self)
            hostile.tags.insert(.invalidUTF8)
        default: text = random.pick(words) + random.pick(numbers) + random.pick(words)
        }
        if random.percent(8) && text.utf8.count > 4096 {
            text = "\u{0}" + text
        } else if random.percent(8) {
            var scalars = Array(text.unicodeScalars)
            scalars.insert("\u{0}", at: random.below(scalars.count + 1))
            text = String(String.UnicodeScalarView(scalars))
        }
        if hasNUL(text.utf8) { hostile.tags.insert(.nul) }
        if text.utf8.count < 30 && limits.contains(text) { hostile.tags.insert(.integerLimit) }
        return text
    }

    /// A value meant for `spec`: mostly of the right kind, often not.
    static func value(for spec: OptionSpec, _ random: inout SplitMix, _ hostile: inout HostileCase) -> String {
        if random.percent(hostile.hostility) { return text(&random, &hostile) }
        let value: String
        switch spec.long {
        case "workers", "backlog", "boot-attempts":
            value = random.percent(50) ? String(1 + random.below(random.pick([4, 64, 4096]))) : random.pick(numbers)
        case "bind-mode": value = random.pick(["660", "0", "777", "0777", "1000", "8", "-1", "+7", "0o22"] + numbers)
        case let long where secondsOptions.contains(long):
            value = random.percent(50) ? random.pick(["5", "2.5", "30", "0.25", "86400", "17"]) : random.pick(numbers)
        case "no-scheduler": value = random.pick(["true", "false", "1", "0", "yes", "no", "On", "maybe", ""])
        case "bind", "scheduler-bind": value = random.pick(addresses)
        case "metrics-bind":  // takes no fd://, so the valid ones are drawn more often
            value = random.percent(60) ? random.pick(["127.0.0.1:9100", ":0", "[::1]:9100"]) : random.pick(addresses)
        case "lease": value = random.pick(leases)
        case "timezone": value = random.pick(zones)
        case "env": value = random.pick(variables)
        case "role-env": value = random.pick(roleNames)
        case "ready": value = random.pick(["exec", "notify", "EXEC", "exec ", ""])
        case "umask": value = random.pick(["022", "0", "777", "0777", "1000", "8", "-1", "+7", "0o22"] + numbers)
        case "user", "group": value = random.pick(["root", "0", "nobody", "65534", "4294967295", "4294967296", "-1",
                                                   "no-such-user", "root:root", "+0"])
        case "log-format": value = random.pick(["text", "json", "xml", "JSON", ""])
        case "worker-output": value = random.pick(["inherit", "prefix", "json", "Prefix", "text", ""])
        case "max-worker-age", "max-worker-age-jitter":
            value = random.percent(80) ? random.pick(["3600", "86400", "2592000", "0", "0.5", "600"])
                : random.pick(["2592001", "1h", "-5"] + numbers)
        case "max-worker-memory":
            value = random.percent(80) ? random.pick(["512M", "2G", "1048576", "0", "64MiB", "1gb"])
                : random.pick(["1.5G", "3X", "G", "-1M", "9999999T", "512 M"] + numbers)
        case "preload":
            value = random.percent(80) ? random.pick(["flask", "flask,sqlalchemy", "-", "myapp.models", "@modules.txt"])
                : random.pick(["x-y", ",", "flask,", "1abc", "@", "@/no/such/file", "a..b", ""])
        case "watch-include", "watch-exclude": value = random.pick(["*.py", "*.html", "[a-z]*", "[!x]?", "[", "*", ""])
        default: value = random.pick(paths)
        }
        if value.utf8.count < 30 && limits.contains(value) { hostile.tags.insert(.integerLimit) }
        return value
    }

    // MARK: Argument vectors

    /// The options the corpus draws from: every option of the table.
    static let corpusOptions = OptionSpec.all

    static func arguments(_ random: inout SplitMix, _ hostile: inout HostileCase) -> [String] {
        // A case with a config file of its own names it once, so that it is read.
        let options = corpusOptions.filter {
            $0.long != "help" && $0.long != "version" && ($0.long != "config" || hostile.configBytes == nil)
        }
        var groups: [[String]] = []
        for _ in 0..<random.below(hostile.hostility < 30 ? 4 : 9) {
            let spec = random.pick(options)
            let value = value(for: spec, &random, &hostile)
            var group: [String]
            var given = value
            switch (random.below(4), spec.valueName, spec.short) {
            case (_, nil, _): group = ["--" + spec.long]; given = ""
            case (1, _, _): group = ["--\(spec.long)=\(value)"]
            case (2, _, let short?): group = ["-\(short)", value]
            case (3, _, let short?) where !value.isEmpty:
                group = ["-\(short)\(value)"]
                if value.hasPrefix("=") { given = String(value.dropFirst()) }
            default: group = ["--" + spec.long, value]
            }
            if spec.long == "workers" { hostile.lastWorkersFlag = given }
            if spec.long == "config" && given.isEmpty { hostile.refuse("-c \"\" names no file", statuses: [64]) }
            if random.percent(4) {
                let once = group
                for _ in 0...random.below(300) { group += once }
                hostile.tags.insert(.repeated)
            }
            groups.append(group)
        }
        if random.percent(12) {
            let bad = random.pick(badOptions)
            groups.insert([bad], at: random.below(groups.count + 1))
            hostile.refuse("\(String(reflecting: String(bad.prefix(40)))) is no option", statuses: [64], evenWithHelp: true)
            hostile.tags.insert(.badOption)
            if bad.utf8.count > 1_000 { hostile.tags.insert(.huge) }
        }
        if random.percent(2) {
            groups.insert([random.pick(["--help", "-h", "--version"])], at: random.below(groups.count + 1))
        }
        var arguments = Array(groups.joined())
        if random.percent(5) {
            // A value-taking option with nothing after it.
            arguments.append(random.pick(["--workers", "-w", "--bind", "-c", "--timezone", "-e"]))
            hostile.refuse("the last option lacks its value", statuses: [64], evenWithHelp: true)
            hostile.tags.insert(.missingValue)
            return arguments
        }
        var separators = random.percent(50) ? 1 : 0
        if random.percent(6) {
            separators = 1 + random.below(random.percent(20) ? 20_000 : 50)
            hostile.tags.insert(.manySeparators)
        }
        arguments += [String](repeating: "--", count: separators)
        // After the first "--", a second one is the COMMAND.
        let commandGiven = separators > 1
        switch random.below(100) {
        case 0..<8:
            if !commandGiven { hostile.refuse("no COMMAND was given", statuses: [64, 78]) }
            return arguments
        case 8..<10:
            arguments.append("")
            if !commandGiven { hostile.refuse("an empty COMMAND is no command", statuses: [64, 78]) }
            hostile.tags.insert(.empty)
        case 10..<25: arguments.append(text(&random, &hostile))
        default: arguments.append(random.pick(["/bin/true", "true", "./true", "/tmp"]))
        }
        for _ in 0..<random.below(4) { arguments.append(text(&random, &hostile)) }
        return arguments
    }

    // MARK: Environments

    static let environmentNames: [String] = OptionSpec.all.flatMap(\.environmentNames)
        + ["WORKERS_COUNT", "BELLWETHER_LEASE_PASSWORD", "BELLWETHER_HELP", "BELLWETHER_ENV", "BELLWETHER_CHECK_CONFIG",
           "BELLWETHER_", "bellwether_workers", "PATH", "TZDIR", "XDG_RUNTIME_DIR", "LISTEN_FDS", "LISTEN_FDNAMES"]

    /// Sets 1 to `most` variables that options read, and sometimes more.
    static func environment(_ random: inout SplitMix, _ hostile: inout HostileCase, most: Int = 6) {
        for _ in 0...random.below(most) {
            let name = random.pick(environmentNames)
            var value: String
            if let spec = OptionSpec.all.first(where: { $0.environmentNames.contains(name) }), name != "BELLWETHER_CONFIG" {
                value = self.value(for: spec, &random, &hostile)
            } else {
                value = text(&random, &hostile)
            }
            if name == "PATH", value.utf8.count > 4096 { value = String(repeating: ":", count: 4096) }
            hostile.environment.append(name + "=" + value)
        }
        if random.percent(10) {
            // systemd's socket activation, addressed to this very process.
            hostile.environment.append("LISTEN_PID=\(getpid())")
            hostile.environment.append("LISTEN_FDS=" + random.pick(["1", "0", "-1", "3", String(Int32.max),
                                                                   String(Int32.max - 2), "2147483648", "65536"]))
            if random.percent(50) { hostile.arguments.append(contentsOf: ["-b", random.pick(["fd://3", "fd://9"])]) }
            hostile.tags.insert(.systemdFDs)
        }
        if random.percent(5) {
            // Names and entries environ can hold but no option reads.
            hostile.environment.append(random.pick(["=x", "", "BELLWETHER_WORKERS", "BELLWETHER_WORKERS==3",
                                                    "\u{FFFD}=1", "WORKERS_COUNT\u{FFFD}=2"]))
        }
    }

    // MARK: Config files

    static let wellFormedLines: [String] = [
        "graceful-timeout = 5", "graceful_timeout = '2.5'", "no-scheduler = false", "log-format = json",
        "log_format=\"text\"", "env = A_1=x=y", "env=B=", "role-env = MY_ROLE", "ready = exec", "bind-mode = 660",
        "backlog = 128", "bind = 127.0.0.1:8000", "lease = file:/tmp/hostile.lock", "chdir = /", "pidfile = /tmp/x.pid",
        "# a comment", "#workers = 9", "", "   ", "\t", "\tgraceful-timeout\t=\t7\t", "timeout = 30",
    ]

    static func configFile(_ random: inout SplitMix, _ hostile: inout HostileCase) {
        switch random.below(20) {
        case 0..<2: wholeFile(&random, &hostile)
        case 2..<8: wellFormed(&random, &hostile)
        default: hostileLines(&random, &hostile)
        }
    }

    /// Valid lines only, in LF or CRLF: the file must be read as written.
    static func wellFormed(_ random: inout SplitMix, _ hostile: inout HostileCase) {
        let ending = random.pick(["\n", "\r\n", "\r\n", "\n"])
        var lines: [String] = []
        for _ in 0..<random.below(12) {
            if random.percent(25) {
                let count = String(1 + random.below(Plan.maximumWorkers))
                lines.append(random.pick(["workers = \(count)", "workers=\(count)", "workers = \"\(count)\"",
                                          " workers\t= '\(count)' "]))
                hostile.configWorkers = count
            } else {
                lines.append(random.pick(wellFormedLines))
            }
        }
        if random.percent(10) {
            // Ill-formed UTF-8 in a comment changes nothing.
            lines.insert(String(decoding: Array("# caf".utf8) + [0xe9], as: UTF8.self), at: random.below(lines.count + 1))
            hostile.tags.insert(.invalidUTF8)
        }
        var bytes = Array(lines.joined(separator: ending).utf8)
        if random.percent(70) { bytes += Array(ending.utf8) }
        if ending == "\r\n" && lines.count > 1 { hostile.tags.insert(.crlf) }
        hostile.configBytes = bytes
        hostile.mustAccept = true
        hostile.tags.insert(.wellFormed)
    }

    /// Files that are hostile as a whole.
    static func wholeFile(_ random: inout SplitMix, _ hostile: inout HostileCase) {
        let megabyte = 1 << 20
        switch random.below(8) {
        case 0: hostile.configBytes = []; hostile.tags.insert(.empty)
        case 1:
            hostile.configBytes = [UInt8](repeating: 0, count: 4096)
            hostile.refuse("the config file is NUL bytes", statuses: [64, 78])
            hostile.tags.insert(.nul)
        case 2: hostile.configBytes = (0..<4096).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        case 3: hostile.configBytes = Array("\u{FEFF}workers = 3\n".utf8)
        case 4: hostile.configBytes = Array(String(repeating: "\r", count: 10_000).utf8) + Array("workers = 3".utf8)
        case 5:
            hostile.configBytes = Array("# caf".utf8) + [0xe9, 0x0d, 0x0a, 0xff, 0xfe] + Array("\r\nworkers = 3\r\n".utf8)
            hostile.configWorkers = "3"
            hostile.tags.insert(.invalidUTF8)
        case 6:
            hostile.configBytes = Array("workers = 3\r\nworkers = 4\r\n".utf8)
            hostile.configWorkers = "4"
            hostile.tags.insert(.crlf)
        default:
            // The costly ones, a quarter as often each.
            switch random.below(4) {
            case 0:
                // More than the 1 MiB a config file may hold, the decisive line
                // last: read it, or refuse the file, but never stop short of it.
                let filler = Array("# padding padding padding padding padding padding padding padding\n".utf8)
                var bytes: [UInt8] = []
                while bytes.count < megabyte + 40_000 { bytes += filler }
                hostile.configBytes = bytes + Array("workers = 4095\n".utf8)
                hostile.configWorkers = "4095"
                hostile.tags.insert(.oversizedFile)
            case 1:
                hostile.configBytes = Array("workers = ".utf8) + [UInt8](repeating: 0x31, count: megabyte - 20)
                hostile.tags.insert(.longLine)
            case 2:
                hostile.configBytes = Array(String(repeating: "env = A=1\n", count: 50_000).utf8)
                hostile.tags.insert(.repeatedKey)
            default:
                // As many different entries as fit: each must cost the same,
                // not more the more there are.
                let line = random.percent(50) ? { (n: Int) in "env = K\(n)=1\n" } : { (n: Int) in "bind = unix:/tmp/s\(n)\n" }
                hostile.configBytes = Array((0..<50_000).map(line).joined().utf8)
                hostile.tags.insert(.manyEntries)
            }
        }
    }

    /// Lines good and bad, with their endings chosen one by one.
    static func hostileLines(_ random: inout SplitMix, _ hostile: inout HostileCase) {
        let keys = corpusOptions.map(\.long) + ["graceful_timeout", "WORKERS", "workerz", "", " ", "config",
                                                  "check-config", "help", "version", "no_scheduler", "lease-ttl "]
        var bytes: [UInt8] = []
        for _ in 0..<random.below(10) {
            var line: [UInt8]
            switch random.below(12) {
            case 0: line = Array(random.pick(wellFormedLines).utf8)
            case 1: line = Array(text(&random, &hostile).utf8)
            case 2: line = Array("\(random.pick(keys))".utf8)
            case 3: line = Array("= \(text(&random, &hostile))".utf8)
            case 4:
                line = Array("env = X=".utf8) + [UInt8](repeating: 0x78, count: 1 << 16)
                hostile.tags.insert(.longLine)
            case 5:
                let quote = random.pick(["\"", "'"])
                line = Array("\(random.pick(keys)) = \(quote)\(text(&random, &hostile))\(random.pick(["", quote, "\"", "'"]))".utf8)
            default:
                let key = random.pick(keys)
                let value = OptionSpec.named(key).map { self.value(for: $0, &random, &hostile) } ?? text(&random, &hostile)
                line = Array("\(key)\(random.pick([" = ", "=", " =", "\t=\t", " == "]))\(value)".utf8)
            }
            if random.percent(10) {
                line.insert(contentsOf: random.pick(invalidUTF8), at: random.below(line.count + 1))
                hostile.tags.insert(.invalidUTF8)
            }
            if random.percent(5) {
                line.insert(0, at: random.below(line.count + 1))
                hostile.tags.insert(.nul)
            }
            if hasNUL(line) { hostile.refuse("a config line holds a NUL byte", statuses: [64, 78]) }
            if random.percent(5) && line.count < 1_000 {
                let once = line + [0x0a]
                for _ in 0...random.below(1_000) { line += once }
                hostile.tags.insert(.repeatedKey)
            }
            let ending = random.pick(["\n", "\n", "\r\n", "\r", "\n\n", ""])
            if ending == "\r\n" { hostile.tags.insert(.crlf) }
            bytes += line + Array(ending.utf8)
        }
        hostile.configBytes = bytes
    }
}

