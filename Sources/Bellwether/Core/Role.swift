/// The role a worker is given in `WORKER_ROLE`. Exactly one live worker per
/// supervisor (per cluster, with a lease) is the scheduler.
public enum Role: String, Hashable, Sendable {
    case scheduler
    case worker
}

/// Identifies one spawned (or being spawned) worker process for the core,
/// independent of its pid, which the core learns only after the spawn.
public struct WorkerRef: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var serial: UInt64
    public init(_ serial: UInt64) { self.serial = serial }
    public static func < (lhs: WorkerRef, rhs: WorkerRef) -> Bool { lhs.serial < rhs.serial }
    public var description: String { "#\(serial)" }
}
