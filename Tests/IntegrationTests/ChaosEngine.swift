import Foundation
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Random events against a real master and its test workers, with the flock
/// oracle on every scheduler, and the invariants checked as it goes:
/// no two schedulers at once (the oracle's failures file stays empty), no
/// process outliving its master (checked within 3 s of every master SIGKILL
/// and every 5 s), the worker count and one scheduler back at every
/// checkpoint, every stopped worker continued, the master's descriptors and
/// RSS flat. Events do not wait for the master to settle: that is the chaos.
/// Checkpoints (every `checkpointEvery`) pause it, continue every stopped
/// worker and time the convergence to what the master itself wants.
final class ChaosEngine {
    static let weights: [(ChaosEvent, Int)] = [
        (.killWorker, 16), (.killScheduler, 6), (.stop, 10), (.hangup, 6), (.ttin, 12), (.ttou, 12),
        (.configEdit, 4), (.configBad, 2),
    ]

    let plan: ChaosPlan
    /// The scratch directory. Its path is in the command line of every
    /// process of the run: the mark an orphan is found by.
    let directory: String
    private let configPath: String
    let oraclePath: String
    private var random: SplitMix
    var report: ChaosReport
    let table: WorkerTable
    private(set) var masters: [ChaosMaster] = []
    var master: ChaosMaster { masters[masters.count - 1] }
    private var stopped: [(worker: ChaosWorker, resumeAt: Double)] = []
    /// The workers of the config file's last good version.
    private var configured: Int
    /// TTIN/TTOU since the last reload, to keep the count within bounds
    /// (an estimate: signals sent close together may coalesce).
    private var estimated: Int
    private var configIsBad = false
    var oracleBytesSeen = 0
    private let startedAt = ChaosOS.monotonic()

    init(plan: ChaosPlan) {
        self.plan = plan
        directory = Harness.scratch("chaos")
        configPath = directory + "/bellwether.conf"
        oraclePath = directory + "/oracle"
        random = SplitMix(seed: plan.seed)
        report = ChaosReport(seed: plan.seed, plannedSeconds: plan.chaosSeconds)
        table = WorkerTable(directory: directory + "/records")
        configured = plan.workers
        estimated = plan.workers
        try? FileManager.default.createDirectory(atPath: table.directory, withIntermediateDirectories: true)
    }

    var now: Double { ChaosOS.monotonic() }

    func run() -> ChaosReport {
        ChaosOS.setChildSubreaper(true)
        runChaos()
        cleanUp()
        ChaosOS.setChildSubreaper(false)
        report.runSeconds = now - startedAt
        return report
    }

    private func runChaos() {
        say("seed \(plan.seed), \(Int(plan.chaosSeconds)) s of chaos, scratch \(directory)")
        writeConfig(workers: plan.workers)
        startMaster(life: plan.firstMasterLife)
        checkpoint("start")
        let chaosStart = now
        let end = chaosStart + plan.chaosSeconds
        var nextSample = now, nextScan = now + 5, nextCheckpoint = now + plan.checkpointEvery
        var nextProgress = plan.progressEvery.map { now + $0 }
        while now < end && report.aborted == nil {
            if now >= master.killAt { killMaster() } else { perform(draw()) }
            resumeStopped()
            checkOracle()
            if report.aborted == nil && !master.isRunning {
                abort("master \(master.number) (pid \(master.pid)) exited on its own with status "
                    + "\(master.exitStatus ?? -1): \(master.logText().suffix(1500))")
            }
            if now >= nextSample {
                master.sample(events: report.events)
                nextSample = now + plan.sampleEvery
            }
            if now >= nextScan {
                checkStrays("scan")
                nextScan = now + 5
            }
            if now >= nextCheckpoint && report.aborted == nil {
                checkpoint(String(format: "t=%.0fs", now - chaosStart))
                nextCheckpoint = now + plan.checkpointEvery
            }
            if let progress = nextProgress, now >= progress {
                say(String(format: "%.1f of %.0f min: %d events, %d masters, %d oracle failures, %d orphans, %d failures",
                           (now - chaosStart) / 60, plan.chaosSeconds / 60, report.events, masters.count,
                           report.oracleFailures, report.orphans, report.failures.count))
                nextProgress = progress + (plan.progressEvery ?? 60)
            }
            usleep(UInt32(Double.random(in: plan.pause, using: &random) * 1_000_000))
        }
        report.chaosSeconds = now - chaosStart
        if report.aborted == nil { finish() }
    }

    // MARK: events

    private func draw() -> ChaosEvent {
        var pick = Int.random(in: 0..<Self.weights.reduce(0) { $0 + $1.1 }, using: &random)
        var event = ChaosEvent.hangup
        for (candidate, weight) in Self.weights {
            if pick < weight { event = candidate; break }
            pick -= weight
        }
        if event == .ttin && estimated >= plan.workerBounds.upperBound { return .ttou }
        if event == .ttou && estimated <= plan.workerBounds.lowerBound { return .ttin }
        return event
    }

    private func perform(_ event: ChaosEvent) {
        table.refresh()
        let live = table.live(session: master.pid)
        var target: ChaosWorker?
        switch event {
        case .killWorker:
            target = live.randomElement(using: &random)
            if let target { table.send(SIGKILL, to: target) }
        case .killScheduler:
            target = live.first(where: \.isScheduler)
            if let target { table.send(SIGKILL, to: target) }
        case .stop:
            let running = live.filter { worker in !stopped.contains { $0.worker == worker } }
            let scheduler = running.first(where: \.isScheduler)
            target = scheduler != nil && Double.random(in: 0..<1, using: &random) < 0.4
                ? scheduler : running.randomElement(using: &random)
            if let target, table.send(SIGSTOP, to: target) {
                stopped.append((target, now + Double.random(in: 0.05...2.5, using: &random)))
            }
        case .hangup:
            kill(master.pid, SIGHUP)
            estimated = configured
        case .ttin, .ttou:
            kill(master.pid, event == .ttin ? SIGTTIN : SIGTTOU)
            estimated = min(max(estimated + (event == .ttin ? 1 : -1), 1), 4096)
        case .configEdit:
            configured = Int.random(in: 2...6, using: &random)
            writeConfig(workers: configured)
            kill(master.pid, SIGHUP)
            estimated = configured
        case .configBad:
            writeConfig(workers: configured, bad: true)
            kill(master.pid, SIGHUP)
            estimated = configured
        case .resume, .killMaster:
            preconditionFailure("\(event) is scheduled, never drawn")
        }
        let needsTarget = [ChaosEvent.killWorker, .killScheduler, .stop].contains(event)
        if needsTarget && target == nil { report.skipped += 1 } else { report.counts[event, default: 0] += 1 }
    }

    /// SIGCONT to every stopped worker that is due (or to all). One that died
    /// meanwhile (SIGKILLed at its graceful timeout, or with its master)
    /// needs none.
    func resumeStopped(all: Bool = false) {
        let now = self.now
        stopped.removeAll { entry in
            guard all || now >= entry.resumeAt else { return false }
            if table.send(SIGCONT, to: entry.worker) { report.counts[.resume, default: 0] += 1 }
            return true
        }
    }

    /// SIGKILL to the master and a fresh master with the same config, token
    /// and oracle; the old one's workers must die by their death signal. Half
    /// the time the fresh master starts first, up to 0.3 s before the kill (a
    /// restart racing the crash): it finds the token held by the old scheduler
    /// and must wait for it, not start a second one.
    private func killMaster() {
        let old = master
        old.sample(events: report.events)
        old.eventsAtEnd = report.events
        if configIsBad { writeConfig(workers: configured) }
        estimated = configured
        let first = Double.random(in: 0..<1, using: &random) < 0.5
        if first {
            startMaster(life: Double.random(in: plan.masterLife, using: &random))
            usleep(UInt32(Double.random(in: 0...0.3, using: &random) * 1_000_000))
            report.freshMasterFirst += 1
        }
        kill(old.pid, SIGKILL)
        guard old.waitForExit(10) != nil else { return abort("master \(old.number) survived SIGKILL for 10 s") }
        report.counts[.killMaster, default: 0] += 1
        if !first { startMaster(life: Double.random(in: plan.masterLife, using: &random)) }
        let began = now
        func leftovers() -> [ProcessEntry] {
            strays().filter { $0.stat.session == old.pid }
        }
        let gone = Harness.wait(3) { leftovers().isEmpty }
        report.orphanCleanSeconds.append(now - began)
        if !gone { reportStrays(leftovers(), "after master \(old.number) (pid \(old.pid)) was SIGKILLed") }
        report.zombiesReaped += reapZombies()
    }

    private func startMaster(life: Double) {
        let number = masters.count + 1
        // A control socket each: two masters may overlap for a moment.
        let arguments = [Harness.bellwether, "-c", configPath, "--control-socket", directory + "/master-\(number).ctl",
                         "--", Harness.testWorker,
                         "--record", table.directory, "--oracle", oraclePath]
        let log = directory + "/master-\(number).log"
        masters.append(ChaosMaster(number: number, arguments: arguments, log: log, killAt: now + life,
                                   events: report.events))
        // Its first line comes once it reads its signals from a signalfd: a
        // HUP before that would end it, as it ends any process just started.
        _ = Harness.wait(10) { ChaosOS.readText(log)?.contains(" starting: ") == true }
    }

    private func writeConfig(workers: Int, bad: Bool = false) {
        // boot-attempts = 0: the storm kills a fresh master's booting workers about once a second
        // per slot, often five times in a row before its first generation is ready. By the rules
        // that is a failed start (exit 3, tested on its own); here it would end the run.
        var text = "# written by the chaos engine\nworkers = \(workers)\ngraceful-timeout = 1\n"
            + "lease = file:\(directory)/scheduler.lock\nboot-attempts = 0\n"
        if bad { text += "workers = plenty\n" }
        ChaosOS.writeAtomically(text, to: configPath)
        configIsBad = bad
    }

    // MARK: the end

    private func finish() {
        let generation = checkpoint("end of chaos")
        writeConfig(workers: plan.workers)
        configured = plan.workers
        kill(master.pid, SIGHUP)
        if checkpoint("final: config back to \(plan.workers) + HUP", workers: plan.workers, after: generation) != nil {
            report.finalWorkers = table.live(session: master.pid).count
            report.finalSchedulers = table.live().filter(\.isScheduler).count
        }
        master.sample(events: report.events)
        master.eventsAtEnd = report.events
        kill(master.pid, SIGTERM)
        report.finalExitStatus = master.waitForExit(30)
        if report.finalExitStatus != 0 {
            fail("the last master's exit status on TERM: \(report.finalExitStatus.map(String.init) ?? "none in 30 s")")
        }
        checkStrays("after the last master stopped")
        report.leftAtEnd = strays().count
    }

    private func cleanUp() {
        resumeStopped(all: true)
        for master in masters where master.isRunning {
            kill(master.pid, SIGKILL)
            _ = master.waitForExit(10)
        }
        for process in strays() { kill(process.pid, SIGKILL) }
        usleep(100_000)
        report.zombiesReaped += reapZombies()
        report.workersRecorded = table.recorded
        report.schedulersStarted = (ChaosOS.readText(oraclePath + ".log") ?? "")
            .split(separator: "\n").filter { $0.hasPrefix("start ") }.count
        let logs = masters.map { $0.logText() }.joined()
        report.logFacts = [
            ("workers spawned", "spawned "), ("reloads started", "reload started"),
            ("reloads abandoned", "reload to generation"), ("bad config rejected", "keeping the current configuration"),
            ("SIGKILL at the graceful timeout", "did not exit in time"), ("back-off steps", "next start in"),
            ("scheduler token busy", "scheduler token is held by"),
        ].map { ($0.0, logs.components(separatedBy: $0.1).count - 1) }
        for (index, master) in masters.enumerated() {
            let last = index == masters.count - 1
            let ending = last ? "stopped by TERM (status \(master.exitStatus.map(String.init) ?? "?"))" : "SIGKILLed"
            let lived = (master.endedAt ?? now) - master.startedAt
            let figures = ChaosReport.figures(of: master, lived: lived, ending: ending, warmUp: plan.warmUp,
                                              span: plan.flatSpan)
            report.masters.append(figures)
            if figures.flat == false {
                fail("master \(master.number): descriptors \(figures.descriptors), RSS KiB \(figures.residentKiB) "
                    + "(first/middle/last after warm-up) grew beyond the bound")
            }
        }
        if !report.masters.contains(where: { $0.flat != nil }) {
            fail("no master lived long enough to judge its descriptors and RSS "
                + "(\(Int(plan.warmUp)) s of warm-up, then \(Int(plan.flatSpan)) s)")
        }
        if report.failures.isEmpty {
            try? FileManager.default.removeItem(atPath: directory)
        } else {
            report.keptScratch = directory
        }
    }

    func fail(_ message: String) {
        report.failures.append(message)
        say("FAILED: " + message)
    }

    private func abort(_ message: String) {
        report.aborted = message
        fail(message)
    }

    private func say(_ message: String) {
        ChaosOS.writeAll(2, String(format: "chaos %7.1fs: ", now - startedAt) + message + "\n")
    }
}
