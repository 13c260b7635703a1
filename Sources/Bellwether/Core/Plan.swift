/// What the supervisor wants, as far as the core's decisions go: the parts of
/// the configuration that a reload may change. The command, environment and
/// other spawn details stay in the shell.
public struct Plan: Hashable, Sendable {
    /// N: the number of worker slots, 1...Plan.maximumWorkers.
    public var workers: Int
    /// Whether one worker is designated scheduler (`--no-scheduler` turns it off).
    public var scheduler: Bool
    /// How long a worker may take to exit after TERM before it is SIGKILLed.
    public var gracefulTimeout: Duration
    /// true: ready only after READY=1; false: ready after `Timings.bootGrace` up.
    public var notifyReadiness: Bool
    /// A worker not ready this long after its start is killed.
    public var readyTimeout: Duration
    /// Watchdog: a worker that pinged WATCHDOG=1 and then stays silent this
    /// long is aborted. Zero: no watchdog.
    public var watchdog: Duration
    /// Until a generation has been ready once, this many failed boots of one
    /// slot in a row are a failed start: the master stops and exits 3. Zero:
    /// never give up (the slot keeps backing off).
    public var bootAttempts: Int
    /// Recycling: a worker older than this (plus its share of
    /// `maxWorkerAgeJitter`) is replaced as a reload replaces it. Zero: never.
    public var maxWorkerAge: Duration = .zero
    /// Spreads the age limit over the workers, so that they never all go at once.
    public var maxWorkerAgeJitter: Duration = .zero
    /// Recycling: a worker whose process tree uses more memory than this, in
    /// bytes, is replaced. Zero: never.
    public var maxWorkerMemory: Int = 0

    public static let maximumWorkers = 4096
    public static let defaultBootAttempts = 5
    public static let maximumBootAttempts = 10_000

    public init(workers: Int, scheduler: Bool = true, gracefulTimeout: Duration = .seconds(30),
                notifyReadiness: Bool = false, readyTimeout: Duration = .seconds(60), watchdog: Duration = .zero,
                bootAttempts: Int = Plan.defaultBootAttempts) {
        self.workers = workers
        self.scheduler = scheduler
        self.gracefulTimeout = gracefulTimeout
        self.notifyReadiness = notifyReadiness
        self.readyTimeout = readyTimeout
        self.watchdog = watchdog
        self.bootAttempts = bootAttempts
    }
}

/// Fixed timings of the core. They are documented in the manual.
public struct Timings: Hashable, Sendable {
    /// A worker that lived at least this long resets its slot's back-off.
    public var stableUptime: Duration = .seconds(1)
    /// The delay after the second quick death in a row; it doubles after each.
    public var backoffBase: Duration = .milliseconds(100)
    public var backoffCap: Duration = .seconds(10)
    /// The grace of a quick stop (INT, QUIT) before SIGKILL.
    public var quickStopGrace: Duration = .seconds(1)
    /// How long the scheduler slot stays empty waiting for a busy token before
    /// it runs an ordinary worker (and is converted once the token frees).
    public var tokenWaitGrace: Duration = .seconds(1)
    public var tokenRetryFirst: Duration = .milliseconds(10)
    public var tokenRetryCap: Duration = .milliseconds(250)
    /// With exec readiness, a worker up this long counts as ready.
    public var bootGrace: Duration = .seconds(1)
    /// During a reload, how many replacements of still-serving workers boot at
    /// once; the scheduler's slot (its stand-in, then the scheduler) is not counted.
    public var reloadBatch = 1
    /// After SIGABRT from the watchdog, SIGKILL to the group this much later.
    public var abortGrace: Duration = .milliseconds(500)
    /// When a network lease is withdrawn: TERM to the scheduler, SIGKILL this
    /// much later (G, `--lease-grace`).
    public var leaseGrace: Duration = .seconds(5)
    /// The shell's: `--watch` reloads this long after the last change.
    public var watchDebounce: Duration = .milliseconds(200)
    /// The shell's: with `--max-worker-memory`, each worker's tree is
    /// measured this often (and never without a limit).
    public var memorySampleInterval: Duration = .seconds(5)

    public init() {}
}
