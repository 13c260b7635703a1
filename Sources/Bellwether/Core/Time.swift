/// A point on the monotonic clock, in nanoseconds. The core never reads a
/// clock: every event carries the `Instant` at which the shell observed it.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static let zero = Instant(nanoseconds: 0)

    public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    public static func + (lhs: Instant, rhs: Duration) -> Instant {
        Instant(nanoseconds: lhs.nanoseconds &+ rhs.nanoseconds)
    }

    public static func - (lhs: Instant, rhs: Instant) -> Duration {
        .nanoseconds(lhs.nanoseconds - rhs.nanoseconds)
    }

    public var description: String { "\(Double(nanoseconds) / 1e9)s" }
}

extension Duration {
    /// The duration in whole nanoseconds (saturating at the Int64 range).
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return scaled &+ attoseconds / 1_000_000_000
    }

    /// The duration in seconds, for logs and JSON.
    public var seconds: Double { Double(nanoseconds) / 1e9 }

    /// "0.25s", "30s": short and exact enough for a log line.
    public var shortDescription: String {
        let ms = nanoseconds / 1_000_000
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        var text = "\(Double(ms) / 1000)"
        while text.hasSuffix("0") { text.removeLast() }
        return text + "s"
    }
}
