import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The invariants, checked while the chaos goes on and at checkpoints.
extension ChaosEngine {
    /// A scheduler that found the oracle's flock taken wrote a line to
    /// ORACLE.failures: two schedulers overlapped. Checked after every event.
    func checkOracle() {
        let size = ChaosOS.fileSize(oraclePath + ".failures")
        guard size > oracleBytesSeen else { return }
        let text = String(decoding: (ChaosOS.readBytes(oraclePath + ".failures") ?? []).dropFirst(oracleBytesSeen),
                          as: UTF8.self)
        oracleBytesSeen = size
        report.oracleFailures += text.split(separator: "\n").count
        fail("two schedulers at once (oracle): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
    }

    /// Live processes of the run that the running master does not own: its
    /// scratch path in their command line, outside the master's session.
    func strays() -> [ProcessEntry] {
        let current = master.isRunning ? master.pid : nil
        let own = getpid()
        return ChaosOS.processes().filter { process in
            !process.stat.isDead && process.pid != own && process.commandLine.contains(directory)
                && process.pid != current && process.stat.session != current
        }
    }

    /// A master's processes may take a moment to die after it: what is still
    /// there after 3 s is an orphan.
    func checkStrays(_ context: String) {
        guard !strays().isEmpty, !Harness.wait(3, { strays().isEmpty }) else { return }
        reportStrays(strays(), context)
    }

    func reportStrays(_ left: [ProcessEntry], _ context: String) {
        guard !left.isEmpty else { return }
        report.orphans += left.count
        let described = left.map { "pid \($0.pid) state \($0.stat.state) ppid \($0.stat.parent) session \($0.stat.session)" }
        fail("\(context): \(left.count) processes outlive their master: \(described.joined(separator: "; "))")
        for process in left { kill(process.pid, SIGCONT); kill(process.pid, SIGKILL) }
    }

    /// Zombies of our masters' workers, ours to reap as subreaper. Only
    /// processes of our masters' sessions: other suites' children are theirs.
    func reapZombies() -> Int {
        let sessions = Set(masters.map(\.pid))
        let unreaped = Set(masters.filter { $0.exitStatus == nil }.map(\.pid))
        var reaped = 0
        for process in ChaosOS.processes() where process.stat.isDead && process.stat.parent == getpid()
            && sessions.contains(process.stat.session) && !unreaped.contains(process.pid) {
            if Harness.reap(process.pid) != nil { reaped += 1 }
        }
        return reaped
    }

    /// The master settled where it wants to be: as many live workers as it
    /// wants, one per slot, all of its current generation, nothing left
    /// retiring, and exactly one scheduler in the whole run, in slot 0.
    func settled(_ status: [String: Any]?, workers wanted: Int?, after generation: Int?) -> (Int, Int)? {
        guard let status, let info = status["master"] as? [String: Any], let workers = info["workers"] as? Int,
              let current = info["generation"] as? Int, let slots = status["slots"] as? [Any] else { return nil }
        if let wanted, workers != wanted { return nil }
        if let generation, current <= generation { return nil }
        let live = table.live(session: master.pid)
        let schedulers = table.live().filter(\.isScheduler)
        guard slots.count == workers, live.count == workers, Set(live.map(\.slot)) == Set(0..<workers),
              live.allSatisfy({ $0.generation == current }), schedulers.count == 1,
              let scheduler = schedulers.first, scheduler.slot == 0, scheduler.session == master.pid,
              (status["scheduler"] as? Int) == Int(scheduler.pid) else { return nil }
        return (workers, current)
    }

    /// Continues every stopped worker, then times the convergence. Returns
    /// the generation it settled in.
    @discardableResult
    func checkpoint(_ name: String, workers wanted: Int? = nil, after generation: Int? = nil) -> Int? {
        resumeStopped(all: true)
        let began = now
        var result: (workers: Int, generation: Int)?
        var status: [String: Any]?
        Harness.wait(plan.settleTimeout) {
            table.refresh()
            status = ChaosOS.status(socket: directory + "/master-\(master.number).ctl")
            result = settled(status, workers: wanted, after: generation)
            return result != nil
        }
        guard let result else {
            let live = table.live().map { "\($0.pid):\($0.role):slot \($0.slot):gen \($0.generation):session \($0.session)" }
            fail("checkpoint \(name): not settled within \(Int(plan.settleTimeout)) s; status \(status.map { "\($0)" } ?? "none"); "
                + "live workers \(live); master log: \(master.logText().suffix(1500))")
            return nil
        }
        report.checkpoints.append((name, now - began, result.workers, result.generation))
        let frozen = ChaosOS.processes().filter { $0.stat.state == "T" && $0.commandLine.contains(directory) }
        if !frozen.isEmpty {
            report.leftStopped += frozen.count
            fail("checkpoint \(name): \(frozen.count) processes left stopped: \(frozen.map(\.pid))")
        }
        return result.generation
    }
}
