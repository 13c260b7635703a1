import Foundation
import Testing
@testable import Bellwether
#if canImport(Glibc)
import Glibc
#endif

/// Invariant 6 of the design, "bad input is an error, not a crash", against a
/// generated corpus: argument vectors, environments and config files that are
/// empty, huge, laced with NUL bytes or invalid UTF-8, full of `--` and
/// repeated flags, with numbers at and past the integer limits. Each case goes
/// the way `bellwether` goes (Entry.swift): `SettingsLoader.request`, `load`,
/// `Configuration.resolve`. It must end in a configuration, `--help`/`--version`,
/// or one `BellwetherError` whose message is one bounded line and whose exit
/// status is the one the manual documents for it. A trap ends this process and
/// so fails the run; a hang is caught by the watchdog, which names the case.
@Suite("Hostile input")
struct HostileInputTests {
    /// The corpus is the same on every machine: a failure names a seed and a
    /// case number, the run prints its seed, `HOSTILE_SEED=…` explores other
    /// corpora, and `HOSTILE_CASES=…` runs longer than the default, which is
    /// sized for CI (`HOSTILE_CASES=11000` is the corpus this test once ran).
    static let seed: UInt64 = ProcessInfo.processInfo.environment["HOSTILE_SEED"].flatMap { UInt64($0) }
        ?? 0x6265_6c6c_7765_7468
    static let caseCount = max(ProcessInfo.processInfo.environment["HOSTILE_CASES"].flatMap { Int($0) } ?? 4_000,
                               minimumCases)
    /// Fewer would leave the smallest category with too few cases to mean much.
    static let minimumCases = 1_000
    /// The floors below were set for 11,000 cases and scale with the count.
    static func scaled(_ floorFor11000: Int) -> Int { max(1, floorFor11000 * caseCount / 11_000) }
    /// Longest message allowed: the fixed text of the longest message, plus
    /// three echoed values cut to `echoLimit`.
    static let messageLimit = 1_000

    @Test(.inTheBackground) func everyCaseEndsInAConfigurationOrOneDocumentedErrorLine() throws {
        let directory = try HostileScratch.directory()
        defer { HostileScratch.remove(directory) }
        let watchdog = HostileWatchdog()
        defer { watchdog.finish() }
        var tally = HostileTally()
        var failures: [String] = []
        for index in 0..<Self.caseCount {
            watchdog.enter("making case \(index) of seed \(Self.seed)")
            let hostile = HostileCorpus.make(index, seed: Self.seed, directory: directory)
            watchdog.enter("case \(index) of seed \(Self.seed): \(hostile.summary)")
            if let bytes = hostile.configBytes { try HostileScratch.write(bytes, to: hostile.configPath) }
            let outcome = HostileCorpus.run(hostile, directory: directory)
            if hostile.configBytes != nil { unlink(hostile.configPath) }
            tally.count(hostile, outcome)
            for problem in Self.problems(hostile, outcome) {
                tally.failures += 1
                guard failures.count < 20 else { continue }
                failures.append("case \(index) (HOSTILE_SEED=\(Self.seed)): \(problem)\n  \(hostile.summary)")
            }
        }
        print("HOSTILE_SEED=\(Self.seed) HOSTILE_CASES=\(Self.caseCount): " + tally.report)
        for failure in failures { Issue.record(Comment(rawValue: failure)) }
        #expect(tally.failures == 0, "\(tally.failures) failures, the first \(failures.count) above")
        #expect(tally.total >= Self.scaled(10_000))
        #expect(tally.workersChecked >= Self.scaled(500),
                "the precedence of --workers was checked \(tally.workersChecked) times")
        for category in HostileCase.Category.allCases {
            let cases = tally.cases[category, default: 0]
            #expect(cases >= Self.scaled(1_000), "\(category): \(cases) cases")
            // A corpus that every case fails early proves little; one that
            // nothing fails tries nothing.
            #expect(tally.accepted[category, default: 0] >= cases / 50, "\(category): \(tally.report)")
            #expect(tally.rejected[category, default: 0] >= cases / 5, "\(category): \(tally.report)")
        }
        for tag in HostileCase.Tag.allCases {
            #expect(tally.tags[tag, default: 0] >= Self.scaled(5), "tag \(tag): \(tally.tags[tag, default: 0]) cases")
        }
    }

    /// The exit statuses the manual's EXIT STATUS gives for what parsing and
    /// resolving can find: 64 for a bad flag, value, environment value or
    /// --env entry, a malformed address or lease timings; 78 for a config file
    /// that cannot be read or has a bad line; 126 and 127 for a COMMAND that
    /// cannot be executed (or a --chdir that --user cannot enter) or is not
    /// found. Binding, the pidfile, the token and
    /// Redis come later; an error of theirs out of `resolve` is itself a bug.
    static func documentedStatus(_ error: BellwetherError) -> Int32? {
        switch error {
        case .unknownOption, .missingValue, .unexpectedValue, .missingCommand, .invalidValue, .reservedVariable,
             .unknownTimezone, .directoryUnusable, .leaseTimings, .notInherited, .preloadRefused:
            64
        case .configUnreadable, .configSyntax, .configUnknownKey, .configKeyNotAllowed: 78
        case .notExecutable, .userCannotExecute, .userCannotEnter: 126
        case .commandNotFound, .commandOutOfReach: 127
        case .needsRoot: 77  // --user or --group, and this master is not root
        default: nil  // errors of the running master, or a kind this table does not know yet
        }
    }

    static func problems(_ hostile: HostileCase, _ outcome: HostileOutcome) -> [String] {
        var problems: [String] = []
        switch outcome {
        case .error(let error):
            let message = error.message
            if documentedStatus(error) != error.exitCode.rawValue {
                problems.append(String("exit status \(error.exitCode.rawValue) for \(error)".prefix(300)))
            }
            if message.isEmpty { problems.append("empty message") }
            if message.contains(where: \.isNewline) { problems.append("message of more than one line") }
            if message.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) }) {
                problems.append("control character in the message")
            }
            if message.unicodeScalars.count > messageLimit {
                problems.append("message of \(message.unicodeScalars.count) characters: \(message.prefix(120))…")
            }
            if message.hasPrefix("bellwether:") { problems.append("the message repeats the prefix") }
            if hostile.mustAccept { problems.append("refused a well-formed case: \(message.prefix(300))") }
            if let refusal = hostile.refusal, !refusal.statuses.contains(error.exitCode.rawValue) {
                problems.append("exit status \(error.exitCode.rawValue), though \(refusal.reason) "
                    + "(expected \(refusal.statuses.sorted())): \(message.prefix(300))")
            }
        case .configuration(let configuration):
            if let refusal = hostile.refusal { problems.append("accepted, though \(refusal.reason)") }
            if let wrong = workersMismatch(hostile, configuration) { problems.append(wrong) }
        case .help, .version:
            if let refusal = hostile.refusal, refusal.evenWithHelp {
                problems.append("help or version, though \(refusal.reason)")
            }
        }
        return problems
    }

    /// The text that decides the worker count: that of the highest layer that
    /// sets it, the last --workers flag, WORKERS_COUNT, BELLWETHER_WORKERS, the
    /// config file; nil where the generator does not know it.
    static func decidingWorkers(_ hostile: HostileCase) -> String? {
        let environment = Bellwether.dictionary(hostile.environment)
        return hostile.lastWorkersFlag
            ?? [environment["WORKERS_COUNT"], environment["BELLWETHER_WORKERS"]].compactMap { $0 }.first { !$0.isEmpty }
            ?? hostile.configWorkers
    }

    /// The worker count must be what the deciding text says.
    static func workersMismatch(_ hostile: HostileCase, _ configuration: Configuration) -> String? {
        guard let deciding = decidingWorkers(hostile) else { return nil }
        let expected = HostileCorpus.workers(deciding)
        if expected == configuration.plan.workers { return nil }
        return "workers \(configuration.plan.workers), expected \(expected.map(String.init) ?? "a refusal") "
            + "from \(String(reflecting: String(deciding.prefix(40))))"
    }
}

/// One generated input: what the binary would get as argv (without the
/// program name) and environ, and the config file some of them name.
struct HostileCase {
    enum Category: String, CaseIterable, Comparable {
        case arguments, environment, configFile, mixed
        static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    }

    /// Kinds of hostility, counted so that a change of the generator cannot
    /// quietly stop producing one.
    enum Tag: String, CaseIterable, Comparable {
        case empty, huge, nul, invalidUTF8, integerLimit, manySeparators, repeated, missingValue, badOption,
             crlf, longLine, repeatedKey, manyEntries, wellFormed, oversizedFile, systemdFDs
        static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    }

    var category: Category
    var arguments: [String] = []
    /// "KEY=VALUE", as Sys.environment() reads environ.
    var environment = ["PATH=/usr/local/bin:/usr/bin:/bin"]
    var configBytes: [UInt8]?
    var configPath: String
    var tags: Set<Tag> = []
    /// Set when the generator put in something that must be refused.
    var refusal: Refusal?
    var mustAccept = false
    /// How often, in percent, a value meant for an option is any hostile text.
    var hostility = 30
    var lastWorkersFlag: String?
    var configWorkers: String?

    struct Refusal {
        var reason: String
        /// The exit statuses the refusal may have: a bad option is found
        /// first (64); a missing COMMAND or a bad config line once the
        /// command line has been parsed (64 or 78).
        var statuses: Set<Int32>
        /// Refused even beside --help or --version, which otherwise come first.
        var evenWithHelp: Bool
    }

    /// Records a refusal; one that parsing finds outranks one found later.
    mutating func refuse(_ reason: String, statuses: Set<Int32>, evenWithHelp: Bool = false) {
        if refusal == nil || (evenWithHelp && refusal?.evenWithHelp == false) {
            refusal = Refusal(reason: reason, statuses: statuses, evenWithHelp: evenWithHelp)
        }
    }

    /// The case, short enough to print: long strings cut, bytes escaped.
    var summary: String {
        func short(_ text: String) -> String {
            let shown = String(reflecting: String(text.prefix(60)))
            return text.utf8.count > 60 ? shown + "…(\(text.utf8.count) bytes)" : shown
        }
        var parts = ["\(category)", "argv [\(arguments.prefix(12).map(short).joined(separator: ", "))"
            + (arguments.count > 12 ? ", …\(arguments.count) in all]" : "]")]
        parts.append("env [\(environment.dropFirst().map(short).joined(separator: ", "))]")
        if let configBytes {
            parts.append("config \(configBytes.count) bytes: \(short(String(decoding: configBytes.prefix(200), as: UTF8.self)))")
        }
        return parts.joined(separator: "; ")
    }
}

enum HostileOutcome {
    case configuration(Configuration)
    case help
    case version
    case error(BellwetherError)
}

/// Counts for the report and for the assertions.
struct HostileTally {
    var cases: [HostileCase.Category: Int] = [:]
    var accepted: [HostileCase.Category: Int] = [:]
    var rejected: [HostileCase.Category: Int] = [:]
    var helpOrVersion = 0
    var statuses: [Int32: Int] = [:]
    var tags: [HostileCase.Tag: Int] = [:]
    var longestMessage = 0
    var failures = 0
    /// Accepted cases whose worker count the layers decided and the test checked.
    var workersChecked = 0

    var total: Int { cases.values.reduce(0, +) }

    mutating func count(_ hostile: HostileCase, _ outcome: HostileOutcome) {
        cases[hostile.category, default: 0] += 1
        for tag in hostile.tags { tags[tag, default: 0] += 1 }
        switch outcome {
        case .configuration:
            accepted[hostile.category, default: 0] += 1
            if HostileInputTests.decidingWorkers(hostile) != nil { workersChecked += 1 }
        case .help, .version: helpOrVersion += 1
        case .error(let error):
            rejected[hostile.category, default: 0] += 1
            statuses[error.exitCode.rawValue, default: 0] += 1
            longestMessage = max(longestMessage, error.message.unicodeScalars.count)
        }
    }

    var report: String {
        let categories = cases.keys.sorted().map {
            "\($0) \(cases[$0]!) (accepted \(accepted[$0, default: 0]), refused \(rejected[$0, default: 0]))"
        }
        return "hostile input: \(total) cases: " + categories.joined(separator: ", ")
            + "; help/version \(helpOrVersion); exit statuses "
            + statuses.keys.sorted().map { "\($0): \(statuses[$0]!)" }.joined(separator: ", ")
            + "; longest message \(longestMessage); worker counts checked \(workersChecked); tags "
            + tags.keys.sorted().map { "\($0.rawValue) \(tags[$0]!)" }.joined(separator: ", ")
    }
}

/// Names the case that stopped making progress, so that a hang fails the run
/// with the input that caused it instead of stalling it.
final class HostileWatchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var current = ""
    private var progress = 0
    private var finished = false

    init(secondsWithoutProgress limit: Int = 120) {
        Thread.detachNewThread { [self] in
            var seen = -1
            var still = 0
            while true {
                sleep(1)
                let (progress, current, finished) = lock.withLock { (self.progress, self.current, self.finished) }
                if finished { return }
                still = progress == seen ? still + 1 : 0
                seen = progress
                if still >= limit {
                    print("hostile input: no progress for \(limit) s in \(current)")
                    fflush(nil)
                    abort()
                }
            }
        }
    }

    func enter(_ label: String) { lock.withLock { current = label; progress += 1 } }
    func finish() { lock.withLock { finished = true } }
}

/// A private scratch directory, and files written there with O_CLOEXEC.
enum HostileScratch {
    struct Failed: Error { var what: String }

    static func directory() throws -> String {
        var template = Array((NSTemporaryDirectory() + "bellwether-hostile-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw Failed(what: "mkdtemp: \(errno)") }
        return String(cString: made)
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failed(what: "open \(path): \(errno)") }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            guard written > 0 else { throw Failed(what: "write \(path): \(errno)") }
            offset += written
        }
    }

    static func remove(_ directory: String) {
        unlink(directory + "/case.conf")
        rmdir(directory)
    }
}
