#if canImport(Glibc)
import Glibc
#endif

/// A network lease's store under test, as the partition scenarios
/// (`PartitionScenarios`) use it: a server on a loopback port that the
/// supervisors reach through fault proxies, and that a scenario freezes and
/// restarts. Redis conforms below; a PostgreSQL fixture conforms the same way
/// and runs the same scenarios.
protocol LeaseStore: AnyObject {
    /// The `--lease` URL scheme, for the scenarios' report lines.
    var scheme: String { get }
    /// Where the server listens: what each proxy forwards to.
    var port: Int { get }
    /// The server's own URL, without a proxy.
    var url: String { get }
    /// Whether an acknowledged write survives `restart()`.
    var persistent: Bool { get }
    /// The `--lease` value for a supervisor that reaches the store at
    /// 127.0.0.1:`port` (a proxy's), for the lease named `key`.
    func leaseURL(port: Int, key: String) -> String
    /// Stops answering without closing anything (SIGSTOP to every process of
    /// the server): connections are still accepted, and requests wait in flight.
    func freeze()
    /// SIGKILL (what was in flight is lost) and a start on the same port,
    /// returning once the server answers.
    func restart()
}

extension RedisServer: LeaseStore {
    var scheme: String { "redis" }

    func leaseURL(port: Int, key: String) -> String { "redis://127.0.0.1:\(port)?key=\(key)" }

    func restart() {
        stop()
        start()
    }
}
