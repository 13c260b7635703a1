/// The timings of a network lease, with the rules that make it safe.
///
/// - L (`ttl`): the key's expiry, set at acquisition and at every renewal.
/// - R (`renewInterval`): how often the holder renews (and others try to acquire).
/// - D (`renewDeadline`): the holder steps down once D has passed since the
///   send time of its last renewal that counted. D ≥ 3R leaves room for two
///   failed attempts; D + R < L means the step-down starts while the key is
///   still ours.
/// - G (`grace`): TERM to the scheduler, SIGKILL G later, then the reap.
/// - H (`takeoverDelay`): a new holder waits H after acquiring before it
///   starts a scheduler, unless the previous holder released cleanly. If the
///   key vanished under a live holder (a Redis restart without persistence,
///   FLUSHALL), that holder's scheduler is gone within D + G, so H ≥ D + G.
public struct LeaseTimings: Hashable, Sendable {
    public var ttl: Duration = .seconds(15)
    public var renewInterval: Duration = .seconds(2)
    public var renewDeadline: Duration = .seconds(10)
    public var grace: Duration = .seconds(5)
    public var takeoverDelay: Duration = .seconds(17)

    public init() {}

    /// The first rule these timings break, as the user's words; nil if none.
    public var brokenRule: String? {
        let (l, r, d, g, h) = (ttl, renewInterval, renewDeadline, grace, takeoverDelay)
        func s(_ value: Duration) -> String { value.shortDescription }
        if r <= .zero { return "--lease-renew-interval must be above 0" }
        if d < r * 3 {
            return "--lease-renew-deadline (\(s(d))) must be at least 3 × --lease-renew-interval (\(s(r)))"
        }
        if d + r >= l {
            return "--lease-renew-deadline + --lease-renew-interval (\(s(d + r))) must be less than --lease-ttl (\(s(l)))"
        }
        if h < d + g {
            return "--lease-takeover-delay (\(s(h))) must be at least --lease-renew-deadline + --lease-grace (\(s(d + g)))"
        }
        return nil
    }
}
