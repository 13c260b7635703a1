/// The master's children that are no worker's guard, sorted out after each
/// batch of reaps into two kinds that must be treated in opposite ways:
///
/// - **strays**: what is left of a tree whose guard was killed outright. Its
///   app dies of its death signal; the rest reparents to the master, a child
///   subreaper. A stray may still run what the scheduler ran, so it gets
///   SIGKILL, and no scheduler starts while one is alive.
/// - **foreign** orphans: processes the master adopted that were never part
///   of a worker, e.g. as PID 1 of a container, what a `docker exec` left
///   running. They are left alone and reaped when they exit, as tini does.
///
/// A guard that exits by itself has emptied its tree first, so children that
/// appear in a batch in which no guard was killed outright and no stray died
/// are foreign. A guard was killed outright when its app (the pid it
/// reported) turns up as the master's child: a guard reaps its app itself
/// before it exits. A child that appears at the same moment as such a death
/// cannot be told apart and counts as a stray.
struct Orphans {
    private(set) var strays: Set<Int32> = []
    private(set) var foreign: Set<Int32> = []

    /// A reaped pid that was no guard's. True when it was a stray: its own
    /// children have just come to the master and are strays too.
    mutating func reaped(_ pid: Int32) -> Bool {
        foreign.remove(pid)
        return strays.remove(pid) != nil
    }

    /// Sorts the children not seen before. `guards`: the live guards;
    /// `treeLost`: a guard was killed outright or a stray died in this batch.
    /// Returns the new strays.
    mutating func sort(children: [Int32], guards: Set<Int32>, treeLost: Bool) -> [Int32] {
        let known = Set(children)
        strays.formIntersection(known)
        foreign.formIntersection(known)
        let new = children.filter { !guards.contains($0) && !strays.contains($0) && !foreign.contains($0) }
        if treeLost { strays.formUnion(new) } else { foreign.formUnion(new) }
        return treeLost ? new : []
    }
}
