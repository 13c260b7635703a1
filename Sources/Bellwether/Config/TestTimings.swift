/// BELLWETHER_TEST_TIMINGS: a hook for bellwether's own tests, not an option.
///
/// The core's fixed timings (`Timings`) are the ones the manual documents.
/// The black-box tests would spend most of their time waiting them out —
/// thirty scheduler kills, each after the 1-second stable uptime; reloads
/// that wait a 1-second boot grace per worker — so a test's master may run
/// the same decisions on shorter ones:
///
///     BELLWETHER_TEST_TIMINGS="stable-uptime=0.2 boot-grace=0.2 token-wait-grace=0.2"
///
/// It is left out of --help, the manual and the README on purpose: users have
/// no reason to set it. It is read here only, by the master at start, and
/// only when present; a name it does not know, or a value that is not a
/// number of seconds, is ignored. Like every BELLWETHER_ variable, it is not
/// passed on to the workers.
enum TestTimings {
    static let variable = "BELLWETHER_TEST_TIMINGS"

    /// The timings a test may shorten, by the name the variable gives them.
    static let settable: [(name: String, timing: WritableKeyPath<Timings, Duration> & Sendable)] = [
        ("stable-uptime", \.stableUptime),
        ("boot-grace", \.bootGrace),
        ("token-wait-grace", \.tokenWaitGrace),
        ("watch-debounce", \.watchDebounce),
        ("memory-interval", \.memorySampleInterval),
    ]

    /// `timings` with the entries of BELLWETHER_TEST_TIMINGS in `environment`
    /// applied; unchanged when it is absent.
    static func applied(to timings: Timings, environment: [String: String]) -> Timings {
        guard let text = environment[variable] else { return timings }
        var timings = timings
        for entry in text.split(whereSeparator: { $0 == " " || $0 == "," }) {
            let pair = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, let timing = settable.first(where: { $0.name == pair[0] })?.timing,
                  let value = try? Parse.seconds(pair[1], source: .environment(variable))
            else { continue }
            timings[keyPath: timing] = value
        }
        return timings
    }
}
