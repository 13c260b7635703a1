public enum LogFormat: String, Hashable, Sendable { case text, json }

/// Where the workers' stdout and stderr go: straight to the master's own
/// (`inherit`), or through the master, each line labelled with the worker's
/// slot, role and pid (`prefix`), or as one JSON log object (`json`).
public enum WorkerOutput: String, Hashable, Sendable { case inherit, prefix, json }

/// When a new worker counts as ready: once it has stayed up for a short
/// boot grace (`exec`), or once it has sent READY=1 (`notify`).
public enum Readiness: String, Hashable, Sendable { case exec, notify }

/// Settings as given, before validation against the system: the merge of
/// flags, environment, config file and defaults (highest first).
public struct Settings: Hashable, Sendable {
    /// nil: the number of online CPUs.
    public var workers: Int?
    public var roleEnv = "WORKER_ROLE"
    public var scheduler = true
    public var gracefulTimeout: Duration = .seconds(30)
    /// `--env` entries in the order given; a later entry for a key wins.
    public var env: [EnvEntry] = []
    public var chdir: String?
    public var pidfile: String?
    /// nil: master-PID.ctl in the runtime directory.
    public var controlSocket: String?
    public var timezone: String?
    public var config: String?
    public var checkConfig = false
    public var logFormat = LogFormat.text
    public var workerOutput = WorkerOutput.inherit
    /// `--lease file:PATH`: the scheduler token's path.
    public var lease: String?
    /// `--lease redis://…` or `--lease postgres://…`.
    public var networkLease: LeaseStoreAddress?
    public var leaseTimings = LeaseTimings()
    /// --bind addresses; a layer that sets any replaces the lower layers' list.
    public var binds: [BindAddress] = []
    var bindsLayer: Int?
    /// `binds` as a set, so that each of thousands of lines costs one lookup.
    var bindsSeen: Set<BindAddress> = []
    public var bindMode: Int?
    public var backlog = 2048
    public var schedulerBind: BindAddress?
    /// --metrics-bind: where `GET /metrics` is served; bound at start only.
    public var metricsBind: BindAddress?
    public var ready = Readiness.exec
    public var readyTimeout: Duration = .seconds(60)
    /// --boot-attempts: failed boots of a slot in a row that end a first start; 0: never.
    public var bootAttempts = Plan.defaultBootAttempts
    /// The watchdog timeout (--timeout); zero: no watchdog.
    public var watchdog: Duration = .zero
    /// --user, --group: names or numbers, looked up by `Credentials.resolve`.
    public var user: String?
    public var group: String?
    /// --umask for the workers; nil: the master's.
    public var umask: Int?
    /// --reload-nice: how much lower a reload's replacement boots; 0: not at all.
    public var reloadNice = 10
    /// --no-aslr: workers start without address-space randomization.
    public var noASLR = false
    /// --max-worker-age: recycle a worker older than this; zero: never.
    public var maxWorkerAge: Duration = .zero
    /// --max-worker-age-jitter; nil: a tenth of `maxWorkerAge`.
    public var maxWorkerAgeJitter: Duration?
    /// --preload: the fork server's modules ("a,b", "@FILE" or "-"); nil: no fork server.
    public var preload: String?
    /// --max-worker-memory, in bytes: recycle a worker whose tree uses more; zero: never.
    public var maxWorkerMemory = 0
    /// --watch paths in the order given, and the --watch-include and
    /// --watch-exclude globs added to `WatchFilter`'s defaults.
    public var watch: [WatchEntry] = []
    public var watchInclude: [String] = []
    public var watchExclude: [String] = []
    public var command: [String] = []

    /// Sources of the settings validated later, for error messages.
    var sources: [String: SettingSource] = [:]

    public init() {}

    func source(_ option: String) -> SettingSource { sources[option] ?? .flag("--\(option)") }
}

public struct EnvEntry: Hashable, Sendable {
    public var key: String
    public var value: String
    public var source: SettingSource
}

/// A --watch path as given, with where it was given.
public struct WatchEntry: Hashable, Sendable {
    public var path: String
    public var source: SettingSource
}
