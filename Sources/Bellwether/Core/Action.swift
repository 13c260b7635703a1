/// What the core wants done. The shell performs actions in order and reports
/// their outcomes as events.
public enum Action: Hashable, Sendable {
    /// Spawn a worker; answer with `.spawned` or `.spawnFailed`. When
    /// `order.role` is `.scheduler` the shell hands the held token to the
    /// child and, on success, closes its own copy.
    case spawn(SpawnOrder)
    /// Send a signal to one worker (its process-group leader).
    case signal(pid: Int32, Signal)
    /// SIGKILL a worker's whole process tree: its guard kills every process
    /// below it, then exits.
    case killGroup(pid: Int32)
    /// A replacement spawned in the background is ready, or its predecessor
    /// is gone: give its process group the master's CPU priority again.
    case foreground(pid: Int32)
    /// Try to take the scheduler token; answer with `.token(...)`.
    case acquireToken
    /// Give up a token the master holds but has not passed on.
    case releaseToken
    case log(LogRecord)
    /// Tell the master's own supervisor (systemd) about a state change.
    case announce(Announcement)
    /// Every worker is gone after a stop: exit with this status.
    case exit(Int32)
}

public struct SpawnOrder: Hashable, Sendable {
    public var ref: WorkerRef
    public var slot: Int
    public var role: Role
    public var generation: Int
    public var workersCount: Int
    /// A reload's replacement (not the scheduler) while the slot's old worker serves: it
    /// boots at a lower CPU priority (`--reload-nice`) until `.foreground`.
    public var background = false
}

/// What the master tells systemd, when it runs as a notify service.
public enum Announcement: Hashable, Sendable {
    /// The first generation is ready, or a reload is over (done or failed).
    case ready(status: String)
    case reloading
    case stopping
    case status(String)
}
