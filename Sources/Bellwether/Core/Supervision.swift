/// Every decision of the master, in one value: the supervisor's core and,
/// with `--lease redis://…`, the lease's, composed here and nowhere else. The
/// shell feeds it what it observed and performs what comes back; unit tests
/// drive the two cores together the same way, without Redis or processes.
///
/// How they meet:
/// - a grant or a withdrawal of the lease (`LeaseAction.permit`) becomes
///   `Event.lease(permitted:)` for the supervisor, and the grant is kept for
///   the scheduler's environment;
/// - after every batch of events the lease hears whether a scheduler is
///   still alive or wanted here (it releases the key only once none is);
/// - a stop, asked for or decided by the supervisor (a failed start), is
///   passed on to the lease once: it steps down and releases the key;
/// - the supervisor's `.exit` is held back until the lease is released, so
///   that a stopping master never leaves its key to expire.
public struct Supervision: Sendable {
    public enum Input: Hashable, Sendable {
        case supervisor(Event)
        case lease(LeaseEvent)
    }

    public enum Output: Hashable, Sendable {
        case act(Action)
        /// A command for the lease's Redis; its reply comes back as `.lease(.reply)` or `.lease(.failed)`.
        case send(LeaseCommand)
        /// Tell the lease scheduler's guard its new deadline.
        case guardDeadline(Instant)
    }

    public private(set) var supervisor: SupervisorCore
    public private(set) var lease: LeaseCore?
    /// What the lease granted; the scheduler's environment carries it.
    public private(set) var grant: LeaseGrant?
    /// The supervisor's exit status, once it has finished.
    public private(set) var exitStatus: Int32?
    private var stopPassedOn = false
    private var exitOrdered = false

    /// With a `lease`, there is no scheduler until it grants one, and a
    /// withdrawn one's scheduler gets the lease's grace (G) to exit.
    public init(plan: Plan, timings: Timings = Timings(), lease: LeaseCore? = nil) {
        var timings = timings
        if let lease { timings.leaseGrace = lease.timings.grace }
        supervisor = SupervisorCore(plan: plan, timings: timings, leased: lease != nil)
        self.lease = lease
    }

    /// Every worker is gone and the lease, if any, is released: the master exits.
    public var isFinished: Bool { exitStatus != nil && lease?.isStopped != false }

    /// Why a request that changes the workers (a reload, a new count) is
    /// refused now, or nil when it is taken.
    public var changeRefusal: String? { supervisor.isStopping ? "the master is stopping" : nil }

    /// The earliest instant at which either core has something to do.
    public func nextDeadline(after now: Instant) -> Instant? {
        [supervisor.nextDeadline(after: now), lease?.nextDeadline()].compactMap { $0 }.min()
    }

    public mutating func handle(_ input: Input, at now: Instant) -> [Output] {
        var outputs: [Output] = []
        var pending = [input]
        repeat {
            while !pending.isEmpty { step(pending.removeFirst(), at: now, pending: &pending, outputs: &outputs) }
            guard lease != nil else { break }
            if supervisor.isStopping && !stopPassedOn {
                stopPassedOn = true
                step(.lease(.stop), at: now, pending: &pending, outputs: &outputs)
            }
            let scheduler = LeaseEvent.scheduler(alive: supervisor.hasScheduler, wanted: supervisor.plan.scheduler)
            step(.lease(scheduler), at: now, pending: &pending, outputs: &outputs)
        } while !pending.isEmpty
        return outputs
    }

    private mutating func step(_ input: Input, at now: Instant, pending: inout [Input], outputs: inout [Output]) {
        switch input {
        case .supervisor(let event):
            for action in supervisor.handle(event, at: now) {
                if case .exit(let status) = action { exitStatus = status } else { outputs.append(.act(action)) }
            }
        case .lease(let event):
            guard lease != nil else { return }
            for action in lease!.handle(event, at: now) {
                switch action {
                case .permit(let granted):
                    grant = granted
                    pending.append(.supervisor(.lease(permitted: granted != nil)))
                case .send(let command): outputs.append(.send(command))
                case .guardDeadline(let deadline): outputs.append(.guardDeadline(deadline))
                case .log(let record): outputs.append(.act(.log(record)))
                }
            }
        }
        if isFinished, !exitOrdered, let exitStatus {
            exitOrdered = true
            outputs.append(.act(.exit(exitStatus)))
        }
    }
}
