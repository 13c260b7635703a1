#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// `--reload-nice`: a reload's replacement boots at a lower CPU priority
/// while the worker it replaces still serves, so that starting a fresh
/// interpreter does not take CPU time from the requests being served; it gets
/// the master's priority back once ready. Lowering a nice value needs
/// CAP_SYS_NICE or RLIMIT_NICE, so when the master cannot restore it, it
/// does not lower it either.
struct BootPriority {
    /// The master's nice value, which the workers inherit.
    let base = bw_nice()
    /// Process groups started in the background and not yet restored.
    private var lowered: Set<Int32> = []
    /// A restore failed (a capability that a user namespace only seems to
    /// grant, say): nothing is lowered any more.
    private(set) var failed = false

    var canRestore: Bool { !failed && bw_can_lower_nice_to(base) == 1 }

    /// Right after the spawn: the group is one process, the worker itself.
    mutating func lower(_ pid: Int32, by amount: Int32) {
        guard amount > 0, canRestore, bw_set_group_nice(pid, min(19, base + amount)) == 0 else { return }
        lowered.insert(pid)
    }

    /// The whole group: with a reload's replacement ready, whatever it
    /// started meanwhile (gunicorn's worker, threads) serves at full priority.
    /// nil, or the errno of a failure that turned the lowering off (the
    /// first one only; a group already gone is no failure).
    mutating func restore(_ pid: Int32) -> Int32? {
        guard lowered.remove(pid) != nil else { return nil }
        let error = bw_set_group_nice(pid, base)
        guard error != 0, error != ESRCH, !failed else { return nil }
        failed = true
        return error
    }

    mutating func forget(_ pid: Int32) { lowered.remove(pid) }

    /// For --check-config: why a nonzero --reload-nice would have no effect.
    static func unavailableNote(_ amount: Int32) -> String {
        amount > 0 && bw_can_lower_nice_to(bw_nice()) != 1
            ? " (not applied: restoring the priority needs CAP_SYS_NICE or RLIMIT_NICE)" : ""
    }
}
