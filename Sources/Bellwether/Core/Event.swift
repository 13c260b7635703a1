/// What happened, as observed by the shell. Every event is handled at an
/// `Instant` that the shell passes along.
public enum Event: Hashable, Sendable {
    /// The master is up; spawn the first generation.
    case start
    /// The spawn ordered for this worker succeeded.
    case spawned(WorkerRef, pid: Int32)
    /// The spawn ordered for this worker failed before any process existed.
    /// `failedBoot`: a fork server could not fork it (it died, or never
    /// answered): a failed boot of its slot, as a worker that could not
    /// import would be, where a `posix_spawn` that failed is not.
    case spawnFailed(WorkerRef, reason: String, failedBoot: Bool = false)
    /// The worker was reaped.
    case exited(WorkerRef, ExitStatus)
    /// The worker's guard started the app with this pid (MAINPID=).
    case appStarted(WorkerRef, pid: Int32)
    /// The worker's app exited and its guard is ending what it left behind
    /// (X_BELLWETHER_APP_EXITED=1); the guard's own exit follows.
    case appExited(WorkerRef)
    /// The worker sent READY=1 on the notify socket.
    case ready(WorkerRef)
    /// The worker sent WATCHDOG=1.
    case watchdog(WorkerRef)
    /// The memory the worker's whole process tree uses, in bytes (sampled
    /// only with `Plan.maxWorkerMemory`).
    case memory(WorkerRef, bytes: Int)
    /// The worker's app asks for a planned replacement
    /// (X_BELLWETHER_RECYCLE=1): it serves on until its replacement is ready.
    case recycleAsked(WorkerRef)
    /// The answer to `Action.acquireToken`.
    case token(TokenAnswer)
    /// With a network lease: whether this supervisor may designate a
    /// scheduler. Withdrawn, the scheduler is retired within `Timings.leaseGrace`.
    case lease(permitted: Bool)
    /// SIGHUP with a valid new configuration.
    case reload(Plan)
    /// SIGTTIN / SIGTTOU.
    case addWorker
    case removeWorker
    /// `bellwether scale N`: N workers, within 1...Plan.maximumWorkers.
    case resize(Int)
    /// TERM (graceful) or INT/QUIT (quick).
    case stop(quick: Bool)
    /// A signal to pass on to every worker (USR1).
    case forward(Signal)
    /// A deadline the core asked for has come.
    case tick
}

public enum TokenAnswer: Hashable, Sendable {
    case acquired
    /// Someone else holds the token: an old scheduler's guard still ending its tree, or another
    /// supervisor sharing the lock file. `holder` is a pid, when it can be found.
    case busy(holder: Int32?)
    /// A process of a dead worker's tree (its guard was killed outright)
    /// is still alive: it may still run what the scheduler ran.
    case stray(Int32)
}
