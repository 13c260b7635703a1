/// What the core tells the log, as values: the core decides what happened
/// and says nothing about how it reads. Every word of it — the sentence, the
/// event name and the JSON fields — is in `LogWords.swift`, so that the text
/// log, the JSON log and what `bellwether status` shows cannot drift apart.
extension SupervisorCore {
    enum Happening: Hashable, Sendable {
        // A worker's life.
        /// Its spawn succeeded; `pid` is its guard's.
        case spawned(Worker, pid: Int32)
        case spawnFailed(Worker, reason: String)
        /// Chosen for a planned replacement: a replacement boots, and it
        /// retires once that one is ready.
        case recycling(Worker, Worker.Recycling)
        case memoryLimitTooLow(Worker, bytes: Int, limit: Int)
        /// Reaped, `uptime` after it was spawned (or ordered, if it never was).
        case exited(Worker, ExitStatus, uptime: Duration)
        /// Its app exited; its guard ends what the app left behind.
        case appExited(Worker)
        case ready(Worker)
        /// Not ready within the ready timeout: killed.
        case readyTimeout(Worker, after: Duration)
        /// A ready timeout under `--ready notify` when no worker ever sent
        /// READY=1: the app may not speak sd_notify. Once per master.
        case neverNotified(Worker)
        /// No WATCHDOG=1 for `silence`: sent SIGABRT.
        case watchdogAbort(Worker, silence: Duration)
        /// It outlived its retire deadline: SIGKILL to its tree.
        case kill(Worker)
        /// Sent TERM.
        case retiring(Worker, Retirement)
        /// An ordinary worker serves slot 0 while the scheduler is handed over.
        case standIn(slot: Int, generation: Int)
        /// A slot's workers keep dying young: its next start waits `delay`.
        case backoff(slot: Int, failures: Int, within: Duration, delay: Duration)

        // Generations and the worker count.
        /// The first generation is ready.
        case generationReady(generation: Int, workers: Int)
        case reloadStarted(generation: Int, workers: Int)
        case reloadFinished(generation: Int, took: Duration)
        /// A reload is abandoned; the stable generation `serving` serves on.
        case reloadFailed(generation: Int, serving: Int, because: Setback)
        case failedStart(slot: Int, because: FailedStart)
        case resized(workers: Int)
        /// TTOU at one worker.
        case resizeRefused

        // The master's own stop.
        case stopping(quick: Bool, workers: Int, grace: Duration)
        case stopped(status: Int32)

        // The scheduler token.
        case tokenAcquired(waited: Duration)
        /// Held by someone else: `holder`'s pid, when it can be found.
        case tokenBusy(holder: Int32?)
        /// A process left of a worker whose guard died may still run what the
        /// scheduler ran: no scheduler until it is gone.
        case tokenStray(pid: Int32)
    }

    /// Why a running worker is sent TERM.
    enum Retirement: Hashable, Sendable {
        case stopping
        case leaseWithdrawn
        case schedulerHandover
        case slotRemoved
        case replaced(byGeneration: Int)
        case replacedByScheduler
        case recycled
    }

    /// Why a generation that is not ready yet will not become ready: a reload
    /// of it is abandoned.
    enum Setback: Hashable, Sendable {
        case exitedBeforeReady(Worker, ExitStatus)
        case notReady(Worker, after: Duration)
        case notForked(Worker, reason: String)
    }

    /// Why a first start failed.
    enum FailedStart: Hashable, Sendable {
        /// `count` workers of its slot in a row died before they were ready;
        /// `last`: how the last one ended, if it ran.
        case failedBoots(Worker, count: Int, last: ExitStatus?)
        /// No worker was ready within `timeout`; `silent`: the worker named
        /// when no worker ever sent READY=1 (the app may not speak sd_notify).
        case noneReady(within: Duration, silent: Worker?)
    }
}

extension [Action] {
    /// Logs `happening` in the words of `LogWords.swift`.
    mutating func log(_ happening: SupervisorCore.Happening) { append(.log(happening.record)) }
}

/// What the master's shell itself has to say: its start, what its workers
/// say on the notify socket, what the system refused. Worded in `LogWords`.
enum MasterHappening: Hashable, Sendable {
    case starting(workers: Int, token: String?, tokenPath: String, command: String)
    case lease(address: String, holder: String)
    /// /proc is another PID namespace's.
    case foreignProc
    case workerStatus(pid: Int32, status: String)
    /// One line a worker wrote, with `--worker-output json`.
    case workerOutput(slot: Int?, role: String, pid: Int32, stream: String, line: String)
    case workerStopping(pid: Int32)
    case stray(pid: Int32)
    /// The control socket's or the metrics listener's accept failed.
    case acceptFailed(socket: String, errno: Int32, error: String, pause: Duration)
    case reloadConfigRejected(reason: String)
    case reloadNiceOff(pid: Int32, error: String)
    case noASLR(error: String)
    case schedulerBindFailed(reason: String)
    case schedulerUnbound(address: String)
    case listening(address: String, name: String, scheduler: Bool)
    /// `--metrics-bind`, as bound (the real port of a :0).
    case metricsListening(address: String)
    case tokenError(path: String, reason: String)
    case watching(paths: [String], directories: Int, debounce: Duration)
    case watchLimit(path: String, watched: Int)
    case watchFailed(path: String, error: String)
    case watchChange(path: String, count: Int)
    /// --preload: a generation's fork server was spawned, or is gone.
    case forkServerStarted(generation: Int, pid: Int32, modules: [String])
    case forkServerExited(generation: Int, pid: Int32, status: String, failedOrders: Int)
}
