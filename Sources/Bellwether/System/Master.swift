#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The system shell around `Supervision`: one single-threaded loop that
/// waits with a deadline, drains signals, reaps, ticks, and performs the
/// cores' actions. It turns system calls (all through `Sys`) into events and
/// actions into system calls, and decides nothing itself.
final class Master {
    private var supervision: Supervision
    private var core: SupervisorCore { supervision.supervisor }
    private var configuration: Configuration
    private let loader: SettingsLoader
    private var logger: Logger
    private let signals: SignalSource
    private let token: SchedulerToken
    private let spawner: Spawner
    /// `--preload`: the generations' fork servers.
    private let forkServers: ForkServers
    private let pidfile: Pidfile?
    private let listeners: Listeners
    private let notifySocket: WorkerNotifySocket
    /// A pipe whose write end only the master holds: every guard gets the
    /// read end, and its end of file tells them the master is gone.
    private let link: (read: Int32, write: Int32)
    private let systemd: SystemdNotifier
    private var nextWatchdogPing: Instant?
    /// The launch of every generation still running or to fall back to.
    private var launches: [Int: Launch] = [:]
    private let environment: [String]
    private let directory: String
    private var refs: [Int32: WorkerRef] = [:]
    /// Children that are no guard's: strays of a dead tree, and foreign orphans.
    private var orphans = Orphans()
    /// /proc shows this process's own PID namespace: read once, it does not change.
    private let procIsOurs: Bool
    private var bootPriority = BootPriority()
    private var addressLayout = AddressLayout()
    private var queue: [Supervision.Input] = []
    /// The `.exit` status: 0 after TERM, INT or QUIT, 3 after a failed start.
    private var exitStatus: Int32?
    /// The scheduler socket's wanted state last made true (`core.schedulerSocketWanted`).
    private var schedulerSocketWanted = false
    /// `--lease redis://…`: the connection of the lease that decides whether
    /// this master designates a scheduler.
    private let lease: NetworkLease?
    /// `bellwether status|reload|stop|scale` reach the master here.
    private let control: ControlSocket
    /// `--metrics-bind`: `GET /metrics`, answered from the cores' state.
    private let metrics: MetricsListener?
    /// `--worker-output prefix|json`: the workers' stdout and stderr pipes.
    private let outputs: WorkerOutputs
    /// `--watch`: changes to the app's files, as reloads.
    private let watcher: Watcher?
    private let startedAt = Sys.monotonicNow()
    /// With `--max-worker-memory`: when the workers' trees are next measured.
    private var nextMemorySample: Instant?
    private let memorySampleInterval: Duration

    /// Sets up the process (signals, descriptors, token, pidfile) or throws.
    init(configuration: Configuration, loader: SettingsLoader, environment: [String], directory: String)
        throws(BellwetherError)
    {
        self.configuration = configuration
        self.loader = loader
        #if os(Linux)
        procIsOurs = Sys.procIsOurs()
        #else
        procIsOurs = true
        #endif
        self.environment = environment
        self.directory = directory
        self.logger = Logger(format: configuration.settings.logFormat)
        outputs = WorkerOutputs(logger: logger)
        let timings = TestTimings.applied(to: Timings(), environment: Bellwether.dictionary(environment))
        let lease = configuration.networkLease.map { NetworkLease(address: $0, timings: configuration.settings.leaseTimings) }
        self.lease = lease
        memorySampleInterval = timings.memorySampleInterval
        supervision = Supervision(plan: configuration.plan, timings: timings,
                                  lease: lease.map { LeaseCore(holder: $0.holder, timings: $0.timings) })

        // Inherited dispositions and descriptors are not ours to pass on: a
        // SIGCHLD ignored by our parent would make waitpid fail.
        Sys.calls.setSignalDisposition(SIGCHLD, ignore: false)
        Sys.calls.setSignalDisposition(SIGPIPE, ignore: true)
        Sys.calls.closeOnExec(from: 3)
        Sys.calls.becomeChildSubreaper()
        do {
            signals = try SignalSource()
            notifySocket = try WorkerNotifySocket()
            link = try Sys.calls.pipe(nonBlockingWrite: false).get()
        } catch { throw .system(call: error.call, errno: error.errno) }
        systemd = SystemdNotifier(environment: Bellwether.dictionary(environment))

        spawner = Spawner(masterPID: Sys.calls.processID())
        guard Sys.calls.isAccessible(spawner.shim, X_OK) else { throw .shimMissing(path: spawner.shim) }
        forkServers = ForkServers(shim: spawner.shim, masterPID: spawner.masterPID,
                                  masterEnvironment: Bellwether.dictionary(environment), logger: logger,
                                  outputs: outputs)
        if configuration.launch.preload != nil && forkServers.script == nil {
            throw .forkServerMissing(path: ForkServers.installedPath(nextTo: spawner.shim))
        }
        // The pidfile first: a second master of the same pidfile names the
        // running one, rather than failing on its busy port.
        let settings = configuration.settings
        let pidfile = settings.pidfile.map { Pidfile(path: $0) }
        self.pidfile = pidfile
        try pidfile?.write()
        listeners = Listeners(logger: logger, backlog: settings.backlog, mode: settings.bindMode)
        token = SchedulerToken(path: configuration.tokenPath, privateDirectory: settings.lease == nil)
        var madeControl: ControlSocket?
        do {
            try lease?.checkCredentials()
            try token.prepare()
            try listeners.update(settings.binds, schedulerAddress: settings.schedulerBind, backlog: settings.backlog,
                                 mode: settings.bindMode, inherited: configuration.inherited)
            watcher = configuration.watch.isEmpty ? nil
                : try Watcher(targets: configuration.watch, filter: configuration.watchFilter,
                              debounce: timings.watchDebounce, logger: logger)
            let control = try ControlSocket(path: configuration.controlSocket,
                                            privateDirectory: settings.controlSocket == nil)
            madeControl = control
            metrics = try settings.metricsBind.map { address throws(BellwetherError) in
                try MetricsListener(address: address, backlog: 64)
            }
            self.control = control
        } catch {
            madeControl?.close()
            listeners.closeAll()
            pidfile?.remove()
            throw error
        }
    }

    func run() -> Int32 {
        let plan = configuration.plan
        control.onAcceptFailure = { [logger] code in
            logger.write(.acceptFailed(socket: "control socket", errno: code, error: describe(code),
                                       pause: RequestServer.acceptPause))
        }
        metrics?.onAcceptFailure = { [logger] code in
            logger.write(.acceptFailed(socket: "metrics listener", errno: code, error: describe(code),
                                       pause: RequestServer.acceptPause))
        }
        logger.write(.starting(workers: plan.workers, token: plan.scheduler ? token.path : nil, tokenPath: token.path,
                               command: configuration.launch.executable))
        if let metrics { logger.write(.metricsListening(address: metrics.shown)) }
        systemd.send("MAINPID=\(Sys.calls.processID())")
        nextWatchdogPing = systemd.watchdogInterval.map { Sys.monotonicNow() + $0 }
        if !procIsOurs { logger.write(.foreignProc) }
        if let lease {
            logger.write(.lease(address: "\(lease.address)", holder: lease.holder))
        }
        if let watcher {
            logger.write(.watching(paths: configuration.watch.map(\.path), directories: watcher.watchedDirectories,
                                   debounce: watcher.debounce))
        }
        queue.append(.supervisor(.start))
        process()
        // After the last worker, a lease holder still releases the key.
        while exitStatus == nil {
            let now = Sys.monotonicNow()
            let deadline = supervision.nextDeadline(after: now)
            // A reload may set or clear the limit: the timer follows it.
            if core.plan.maxWorkerMemory == 0 { nextMemorySample = nil }
            else if nextMemorySample == nil { nextMemorySample = now + memorySampleInterval }
            let wake = [deadline, nextWatchdogPing, lease?.nextDeadline, control.nextDeadline, metrics?.nextDeadline,
                        watcher?.deadline, nextMemorySample, forkServers.deadline]
                .compactMap { $0 }.min()
            var watched: [(fd: Int32, events: Int16)] = [(signals.fd, Int16(POLLIN)), (notifySocket.fd, Int16(POLLIN))]
            let leaseIndex = lease?.pollEntry.map { entry in
                watched.append(entry)
                return watched.count - 1
            }
            let watcherIndex = watcher.map { watcher in
                watched.append(watcher.pollEntry)
                return watched.count - 1
            }
            let controlIndex = watched.count
            watched += control.pollEntries
            let metricsIndex = watched.count
            watched += metrics?.pollEntries ?? []
            let outputIndex = watched.count
            watched += outputs.pollEntries
            let forkServerIndex = watched.count
            watched += forkServers.pollEntries
            let revents = Sys.wait(watched, timeout: wake.map { $0 - now })
            for signal in signals.drain() { receive(signal) }
            if revents[forkServerIndex...].contains(where: { $0 != 0 }) { collectForkServerAnswers() }
            for message in notifySocket.drain() { receive(message.fields, from: message.pid) }
            reap()
            let after = Sys.monotonicNow()
            if let lease {
                if let leaseIndex, revents[leaseIndex] != 0, let event = lease.ready(revents[leaseIndex], at: after) {
                    queue.append(.lease(event))
                }
                queue.append(.lease(lease.expire(at: after) ?? .tick))
            }
            control.serve(Array(revents[controlIndex..<metricsIndex]), at: after, answer: answer)
            metrics?.serve(Array(revents[metricsIndex..<outputIndex]), at: after) {
                MetricsReport(core: core, lease: MetricsReport.lease(of: supervision, store: lease?.address.kind, at: after), masterUptime: after - startedAt,
                              usage: MetricsListener.ownUsage(), now: after).text
            }
            outputs.serve(Array(revents[outputIndex..<forkServerIndex]))
            if let watcher {
                if let watcherIndex, revents[watcherIndex] != 0 { watcher.drain(at: after) }
                // While stopping, a change is read and let go.
                if let (path, count) = watcher.due(at: after), supervision.changeRefusal == nil {
                    logger.write(.watchChange(path: path, count: count))
                    reload()
                }
            }
            if let deadline, after >= deadline { queue.append(.supervisor(.tick)) }
            if let due = forkServers.deadline, after >= due { forkServers.expire(at: after) }
            if let sample = nextMemorySample, after >= sample {
                measureTrees()
                nextMemorySample = after + memorySampleInterval
            }
            if let ping = nextWatchdogPing, after >= ping, let interval = systemd.watchdogInterval {
                systemd.send("WATCHDOG=1")
                nextWatchdogPing = after + interval
            }
            process()
            forkServers.retain(core.generationsInUse)  // evaluated only while a fork server runs
            if core.isStopping && forkServers.hasPending { forkServers.abandonPending() }
        }
        forkServers.finish()
        outputs.finish()
        lease?.close()
        listeners.closeAll()
        control.close()
        metrics?.close()
        pidfile?.remove()
        token.release()
        return exitStatus ?? 0
    }

    /// A control-socket request: status is answered from the core's state;
    /// the others do what the matching signal does.
    private func answer(_ request: ControlRequest) -> String {
        switch request {
        case .status(let json):
            let now = Sys.monotonicNow()
            let report = StatusReport(core: core, masterPID: Sys.calls.processID(), masterUptime: now - startedAt,
                                      lease: leaseStatus, now: now)
            return json ? report.json.text + "\n" : report.text
        case .reload:
            if let refusal = supervision.changeRefusal { return "error: \(refusal)\n" }
            reload()
            return "ok: reload started\n"
        case .stop:
            receive(.terminate)
            return "ok: stopping\n"
        case .scale(let count):
            if let refusal = supervision.changeRefusal { return "error: \(refusal)\n" }
            queue.append(.supervisor(.resize(count)))
            return "ok: scaling to \(count) workers\n"
        }
    }

    /// How the scheduler lease stands, for `bellwether status`.
    private var leaseStatus: (kind: String, state: String)? {
        if let lease, let leaseCore = supervision.lease {
            let state: String
            switch leaseCore.phase {
            case .seeking: state = "seeking (another supervisor holds it, or \(lease.address.kind) is unreachable)"
            case .holding(let holding):
                state = "held by this master, fence \(holding.fence)" + (holding.granted ? "" : ", takeover delay")
            case .steppingDown: state = "stepping down"
            case .releasing: state = "releasing"
            case .stopped: state = "released"
            }
            return ("\(lease.address.kind) \(lease.address)", state)
        }
        guard core.plan.scheduler else { return nil }
        let state: String
        switch core.token {
        case .passed: state = "held by the scheduler"
        case .held, .acquiring: state = "held by this master"
        case .notHeld:
            state = core.tokenWaitingSince.map { "held by another process; waiting for \(StatusReport.age(Sys.monotonicNow() - $0))" }
                ?? "not held"
        }
        return ("file \(token.path)", state)
    }

    /// An sd_notify message from a worker (or anything in its process group).
    private func receive(_ fields: [(String, String)], from pid: Int32) {
        func known() -> WorkerRef? { refs[pid] ?? refs[Sys.calls.processGroup(of: pid)] }
        // A guard a fork server forked is known once its answer is read.
        if known() == nil && forkServers.hasPending { collectForkServerAnswers() }
        guard let ref = known() else { return }
        for (key, value) in fields {
            switch key {
            case "MAINPID" where refs[pid] != nil:  // from the guard itself only
                if let app = Int32(value), app > 0 { queue.append(.supervisor(.appStarted(ref, pid: app))) }
            case "X_BELLWETHER_APP_EXITED" where refs[pid] != nil && value == "1":
                queue.append(.supervisor(.appExited(ref)))
            case "READY" where value == "1": queue.append(.supervisor(.ready(ref)))
            case "WATCHDOG" where value == "1": queue.append(.supervisor(.watchdog(ref)))
            case "X_BELLWETHER_RECYCLE" where value == "1": queue.append(.supervisor(.recycleAsked(ref)))
            case "STATUS":
                logger.write(.workerStatus(pid: pid, status: value))
            case "STOPPING" where value == "1":
                logger.write(.workerStopping(pid: pid))
            default: break
            }
        }
    }

    private func receive(_ signal: Signal) {
        switch signal {
        case .hangup: reload()
        case .terminate, .interrupt, .quit: queue.append(.supervisor(.stop(quick: signal != .terminate)))
        case .ttyInput: queue.append(.supervisor(.addWorker))
        case .ttyOutput: queue.append(.supervisor(.removeWorker))
        case .user1: queue.append(.supervisor(.forward(.user1)))
        default: break  // CHLD: the reap that follows every wake-up handles it
        }
    }

    /// Re-reads the config file. A bad one is logged and the current
    /// configuration kept; a new generation starts either way, since a
    /// reload's first purpose is new application code.
    private func reload() {
        guard supervision.changeRefusal == nil else { return }
        do throws(BellwetherError) {
            let settings = try loader.load()
            let candidate = try Configuration.resolve(settings, environment: environment, directory: directory)
            try listeners.update(settings.binds, schedulerAddress: settings.schedulerBind, backlog: settings.backlog,
                                 mode: settings.bindMode, inherited: candidate.inherited)
            configuration = candidate
            logger.format = settings.logFormat
        } catch {
            logger.write(.reloadConfigRejected(reason: error.message))
        }
        let inUse = core.generationsInUse
        launches = launches.filter { inUse.contains($0.key) }
        queue.append(.supervisor(.reload(configuration.plan)))
    }

    /// Reaps every child that changed state, then sorts out the children
    /// that are no guard's (`Orphans`) and kills the strays.
    private func reap() {
        var reaped: Set<Int32> = []
        var apps: Set<Int32> = []
        var treeLost = false
        while let (pid, status) = Sys.reapOne() {
            reaped.insert(pid)
            if let answers = forkServers.reaped(pid, status, at: Sys.monotonicNow()) {
                for answer in answers { finish(answer) }
                continue
            }
            // A guard a fork server forked is known once its answer is read.
            if refs[pid] == nil && forkServers.hasPending { collectForkServerAnswers() }
            if let ref = refs.removeValue(forKey: pid) {
                bootPriority.forget(pid)
                outputs.drain(pid: pid)
                lease?.closeGuardPipe(for: ref)
                queue.append(.supervisor(.exited(ref, status)))
                // The app the core knows (its `.exited` is not handled yet). Without
                // one, a guard that died of a signal may have been killed.
                if let app = core.workers.first(where: { $0.ref == ref })?.appPID {
                    apps.insert(app)
                } else if case .signaled = status {
                    treeLost = true
                }
            } else if orphans.reaped(pid) {
                treeLost = true
            }
        }
        guard !reaped.isEmpty else { return }
        // In /proc of another PID namespace, the pids are not the master's to signal.
        // The fork servers are the master's children too, and no worker's.
        let servers = forkServers.pids
        let children = procIsOurs ? Sys.children().filter { !servers.contains($0) } : []
        if forkServers.hasPending { collectForkServerAnswers() }
        // A guard reaps its app before it exits: an app that came to the
        // master lost its guard.
        if !apps.isDisjoint(with: reaped) || children.contains(where: apps.contains) { treeLost = true }
        killStrays(orphans.sort(children: children, guards: Set(refs.keys), treeLost: treeLost))
    }

    /// SIGKILL to every new stray and its process group. Its own children
    /// come to the master when it dies, and go the same way at that reap.
    private func killStrays(_ strays: [Int32]) {
        let own = Sys.calls.ownProcessGroup()
        for pid in strays {
            logger.write(.stray(pid: pid))
            Sys.send(.kill, to: pid)
            let group = Sys.calls.processGroup(of: pid)
            if group > 0 && group != own { Sys.send(.kill, toGroup: group) }
        }
    }

    /// `--max-worker-memory`: each worker's tree, measured; the core decides.
    private func measureTrees() {
        for (pid, ref) in refs.sorted(by: { $0.key < $1.key }) {
            if let bytes = TreeMemory.bytes(ofTree: pid) { queue.append(.supervisor(.memory(ref, bytes: bytes))) }
        }
    }

    /// Hands the queued events to the cores and performs what they order;
    /// then makes the scheduler socket match its wanted state.
    private func process() {
        while !queue.isEmpty {
            for output in supervision.handle(queue.removeFirst(), at: Sys.monotonicNow()) {
                switch output {
                case .act(let action): perform(action)
                case .send(let command):
                    if let failed = lease?.send(command, at: Sys.monotonicNow()) { queue.append(.lease(failed)) }
                case .guardDeadline(let deadline): lease?.tellGuards(deadline)
                }
            }
        }
        if core.schedulerSocketWanted != schedulerSocketWanted {
            schedulerSocketWanted = core.schedulerSocketWanted
            if schedulerSocketWanted { listeners.openScheduler() } else { listeners.closeScheduler() }
        }
    }

    private func perform(_ action: Action) {
        switch action {
        case .spawn(let order):
            spawn(order)
        case .signal(let pid, let signal):
            Sys.send(signal, to: pid)
        case .killGroup(let pid):
            // Only to a guard not yet reaped: its pid cannot have been reused.
            if refs[pid] != nil { _ = Sys.calls.killTree(guardPID: pid) }
        case .foreground(let pid):
            if let error = bootPriority.restore(pid) {
                logger.write(.reloadNiceOff(pid: pid, error: describe(error)))
            }
        case .acquireToken:
            // A stray of a dead tree may hold what the scheduler's tree held.
            let left = orphans.strays.first
            queue.append(.supervisor(.token(left.map { .stray($0) } ?? token.acquire(logger: logger))))
        case .releaseToken:
            token.release()
        case .announce(let announcement):
            systemd.announce(announcement, schedulerPID: core.schedulerPID)
        case .log(let record):
            logger.write(record)
        case .exit(let status):
            exitStatus = status
        }
    }

    /// Performs `.spawn`: the launch of the order's generation, the worker's
    /// environment, its sockets, and for the scheduler the token (and with a
    /// lease, its grant and deadline pipe). Answers `.spawned` or `.spawnFailed`.
    private func spawn(_ order: SpawnOrder) {
        let handsToken = order.role == .scheduler
        if handsToken && token.fd < 0 {
            queue.append(.supervisor(.spawnFailed(order.ref, reason: "scheduler token not held")))
            return
        }
        let launch = launches[order.generation] ?? configuration.launch
        launches[order.generation] = launch
        if handsToken { listeners.openScheduler() }  // retried at every scheduler start
        let sockets = listeners.passed(toScheduler: handsToken)
        // A lease scheduler's guard hears renew deadlines on a link of its own.
        var guardLink = link.read
        var grace = core.plan.gracefulTimeout
        var grant: LeaseGrant?
        if handsToken, let lease {
            guard let granted = supervision.grant else {
                queue.append(.supervisor(.spawnFailed(order.ref, reason: "lease not granted")))
                return
            }
            switch lease.openGuardPipe(for: order.ref, deadline: supervision.lease?.renewDeadline) {
            case .success(let fd): guardLink = fd
            case .failure(let error):
                queue.append(.supervisor(.spawnFailed(order.ref,
                    reason: "cannot create the guard's pipe: \(describe(error.errno))")))
                return
            }
            grace = lease.timings.grace
            grant = granted
        }
        if let error = addressLayout.prepare(randomize: launch.randomizeLayout) {
            logger.write(.noASLR(error: describe(error)))
        }
        let environment = WorkerEnvironment.variables(for: order, launch: launch, sockets: sockets.map(\.name),
                                                      notifySocket: notifySocket.address,
                                                      watchdog: core.plan.watchdog, grant: grant)
        let outputMode = configuration.settings.workerOutput
        var pipes: WorkerOutputs.Pipes?
        if outputMode != .inherit {
            switch outputs.openPipes() {
            case .success(let opened): pipes = opened
            case .failure(let error):
                if guardLink != link.read { Sys.closeFile(guardLink) }
                lease?.closeGuardPipe(for: order.ref)
                queue.append(.supervisor(.spawnFailed(order.ref,
                    reason: "cannot create the output pipes: \(describe(error.errno))")))
                return
            }
        }
        let pending = PendingSpawn(order: order, handsToken: handsToken, pipes: pipes, reloadNice: launch.reloadNice,
                                   failureIsFailedBoot: launch.preload != nil, output: outputMode)
        let layout = spawner.layout(sockets: sockets.map(\.fd), token: handsToken ? token.fd : nil, link: guardLink,
                                    grace: grace, output: pipes)
        // A fork server answers later (`collectForkServerAnswers`); posix_spawn at once.
        let answer: ForkServers.Answer?
        if let preload = launch.preload {
            answer = forkServers.order(pending, launch: launch, preload: preload, environment: environment,
                                       descriptors: layout.descriptors, guardSpec: layout.guardSpec,
                                       patience: core.plan.readyTimeout, at: Sys.monotonicNow()).map { failure in
                var unsent = pending
                unsent.failureIsFailedBoot = failure.failedBoot
                return .failed(unsent, reason: failure.reason)
            }
        } else {
            switch spawner.spawn(launch, layout: layout, environment: environment, output: pipes) {
            case .success(let pid): answer = .spawned(pending, pid: pid)
            case .failure(let error): answer = .failed(pending, reason: error.description)
            }
        }
        if guardLink != link.read { Sys.closeFile(guardLink) }
        if let answer { finish(answer) }
    }

    /// Reads what the fork servers answered, and finishes those spawns.
    private func collectForkServerAnswers() {
        for answer in forkServers.collect(at: Sys.monotonicNow()) { finish(answer) }
    }

    /// A spawn's outcome, from `posix_spawn` or a fork server: the pipes'
    /// read ends labelled, the guard known, the token handed over.
    private func finish(_ answer: ForkServers.Answer) {
        func adoptOutput(of pending: PendingSpawn, pid: Int32?) {
            guard let pipes = pending.pipes else { return }
            let order = pending.order
            outputs.adopt(pipes, label: pid.map { .init(slot: order.slot, role: order.role, pid: $0) },
                          mode: pending.output)
        }
        switch answer {
        case .spawned(let pending, let pid):
            adoptOutput(of: pending, pid: pid)
            refs[pid] = pending.order.ref
            if pending.order.background { bootPriority.lower(pid, by: pending.reloadNice) }
            if pending.handsToken { token.release() }
            queue.append(.supervisor(.spawned(pending.order.ref, pid: pid)))
        case .failed(let pending, let reason):
            adoptOutput(of: pending, pid: nil)
            lease?.closeGuardPipe(for: pending.order.ref)
            queue.append(.supervisor(.spawnFailed(pending.order.ref, reason: reason,
                                                  failedBoot: pending.failureIsFailedBoot)))
        }
    }
}
