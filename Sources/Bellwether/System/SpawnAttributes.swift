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
    private let base = Sys.calls.niceValue()
    /// Whether a lowered priority can be raised back: checked once at start,
    /// and off for good after a restore that failed (a capability that a
    /// user namespace only seems to grant, say).
    private var canRestore: Bool
    /// Process groups started in the background and not yet restored.
    private var lowered: Set<Int32> = []

    init() { canRestore = Sys.calls.canLowerNice(to: base) }

    /// Right after the spawn: the group is one process, the worker itself.
    mutating func lower(_ pid: Int32, by amount: Int32) {
        guard amount > 0, canRestore, Sys.calls.setGroupNice(pid, min(19, base + amount)) == 0 else { return }
        lowered.insert(pid)
    }

    /// The whole group: with a reload's replacement ready, whatever it
    /// started meanwhile (gunicorn's worker, threads) serves at full priority.
    /// nil, or the errno of a failure that turned the lowering off (the
    /// first one only; a group already gone is no failure).
    mutating func restore(_ pid: Int32) -> Int32? {
        guard lowered.remove(pid) != nil else { return nil }
        let error = Sys.calls.setGroupNice(pid, base)
        guard error != 0, error != ESRCH, canRestore else { return nil }
        canRestore = false
        return error
    }

    mutating func forget(_ pid: Int32) { lowered.remove(pid) }

    /// For --check-config: why a nonzero --reload-nice would have no effect.
    static func unavailableNote(_ amount: Int32) -> String {
        amount > 0 && !BootPriority().canRestore
            ? " (not applied: restoring the priority needs CAP_SYS_NICE or RLIMIT_NICE)" : ""
    }
}

/// `--no-aslr`: the master's own personality, which every worker it spawns
/// inherits and applies at its execve: ADDR_NO_RANDOMIZE for a launch
/// without randomization, as the master inherited it otherwise.
struct AddressLayout {
    private let inherited: Bool
    private var current: Bool
    /// A refusal (a seccomp filter, systemd's LockPersonality=) is for good:
    /// after one, spawns no longer ask.
    private var refused = false

    init() {
        inherited = Sys.calls.addressRandomization()
        current = inherited
    }

    /// Before a spawn; the errno of the refusal, once, to be logged.
    mutating func prepare(randomize wanted: Bool) -> Int32? {
        let randomize = wanted && inherited
        guard randomize != current, !refused else { return nil }
        let error = Sys.calls.setAddressRandomization(randomize)
        if error == 0 { current = randomize } else { refused = true }
        return error == 0 ? nil : error
    }
}
