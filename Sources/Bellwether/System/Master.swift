#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// The system shell around `SupervisorCore`: one single-threaded loop that
/// waits with a deadline, drains signals, reaps, ticks, and performs the
/// core's actions. It turns syscalls into events and actions into syscalls
/// and decides nothing itself.
final class Master {
    private var core: SupervisorCore
    private var configuration: Configuration
    private let loader: SettingsLoader
    private var logger: Logger
    private let signals: SignalSource
    private let token: SchedulerToken
    private let spawner: Spawner
    private let pidfile: Pidfile?
    private let environment: [String]
    private let directory: String
    private var refs: [Int32: WorkerRef] = [:]
    private var queue: [Event] = []
    private var exitStatus: Int32?

    /// Sets up the process (signals, descriptors, token, pidfile) or throws.
    init(configuration: Configuration, loader: SettingsLoader, environment: [String], directory: String)
        throws(BellwetherError)
    {
        self.configuration = configuration
        self.loader = loader
        self.environment = environment
        self.directory = directory
        self.logger = Logger(format: configuration.settings.logFormat)
        self.core = SupervisorCore(plan: configuration.plan)

        // Inherited dispositions and descriptors are not ours to pass on: a
        // SIGCHLD ignored by our parent would make waitpid fail.
        _ = bw_signal_disposition(SIGCHLD, 0)
        _ = bw_signal_disposition(SIGPIPE, 1)
        _ = bw_cloexec_from(3)
        _ = bw_set_child_subreaper()
        do { signals = try SignalSource() } catch { throw .system(call: error.call, errno: error.errno) }

        spawner = Spawner(shim: Spawner.locateShim(), masterPID: getpid())
        guard access(spawner.shim, X_OK) == 0 else { throw .shimMissing(path: spawner.shim) }
        token = SchedulerToken(path: configuration.tokenPath)
        try token.prepare()
        pidfile = configuration.settings.pidfile.map { Pidfile(path: $0) }
        try pidfile?.write()
    }

    func run() -> Int32 {
        let plan = configuration.plan
        logger.write(LogRecord(.info, "starting",
            "bellwether \(Version.current) starting: \(plan.workers) workers, "
                + (plan.scheduler ? "scheduler token \(token.path)" : "no scheduler")
                + ", command \(configuration.launch.executable)",
            [.init("workers", .int(plan.workers)), .init("token", .string(token.path)),
             .init("command", .string(configuration.launch.executable))]))
        queue.append(.start)
        process()
        while exitStatus == nil {
            let now = Sys.monotonicNow()
            let deadline = core.nextDeadline(after: now)
            Sys.waitReadable(signals.fd, timeout: deadline.map { $0 - now })
            for signal in signals.drain() { receive(signal) }
            reap()
            if let deadline, Sys.monotonicNow() >= deadline { queue.append(.tick) }
            process()
        }
        pidfile?.remove()
        token.release()
        return exitStatus ?? 0
    }

    private func receive(_ signal: Signal) {
        switch signal {
        case .hangup: reload()
        case .terminate: queue.append(.stop(quick: false))
        case .interrupt, .quit: queue.append(.stop(quick: true))
        case .ttyInput: queue.append(.addWorker)
        case .ttyOutput: queue.append(.removeWorker)
        case .user1: queue.append(.forward(.user1))
        default: break  // CHLD: the reap that follows every wake-up handles it
        }
    }

    /// Re-reads the config file. A bad one is logged and the current
    /// configuration kept; a new generation starts either way, since a
    /// reload's first purpose is new application code.
    private func reload() {
        guard !core.isStopping else { return }
        do throws(BellwetherError) {
            let settings = try loader.load()
            configuration = try Configuration.resolve(settings, environment: environment, directory: directory)
            logger.format = settings.logFormat
        } catch {
            logger.write(LogRecord(.error, "reload_config_rejected",
                "reload: \(error.message); keeping the current configuration",
                [.init("error", .string(error.message))]))
        }
        queue.append(.reload(configuration.plan))
    }

    private func reap() {
        while let (pid, status) = Sys.reapOne() {
            // Unknown pids are orphans adopted as subreaper: reaping them is all.
            if let ref = refs.removeValue(forKey: pid) { queue.append(.exited(ref, status)) }
        }
    }

    private func process() {
        while !queue.isEmpty {
            let event = queue.removeFirst()
            for action in core.handle(event, at: Sys.monotonicNow()) { perform(action) }
        }
    }

    private func perform(_ action: Action) {
        switch action {
        case .spawn(let order):
            let handsToken = order.role == .scheduler
            if handsToken && token.fd < 0 {
                queue.append(.spawnFailed(order.ref, reason: "scheduler token not held"))
                return
            }
            switch spawner.spawn(order, launch: configuration.launch, token: handsToken ? token.fd : nil) {
            case .success(let pid):
                refs[pid] = order.ref
                if handsToken { token.release() }
                queue.append(.spawned(order.ref, pid: pid))
            case .failure(let error):
                queue.append(.spawnFailed(order.ref, reason: error.description))
            }
        case .signal(let pid, let signal):
            Sys.send(signal, to: pid)
        case .killGroup(let pid):
            Sys.send(.kill, to: -pid)
        case .acquireToken:
            queue.append(.token(token.acquire(logger: logger)))
        case .releaseToken:
            token.release()
        case .log(let record):
            logger.write(record)
        case .exit(let status):
            exitStatus = status
        }
    }
}
