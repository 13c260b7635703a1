/// The master's signals, blocked and read from a descriptor (a signalfd on
/// Linux, a self-pipe elsewhere), so no Swift code ever runs in signal context.
struct SignalSource {
    static let handled: [Signal] = [
        .hangup, .interrupt, .quit, .terminate, .child, .ttyInput, .ttyOutput, .user1,
    ]

    let fd: Int32

    init() throws(SystemCallError) {
        let fd = Sys.calls.openSignalSource(Self.handled.map(\.rawValue))
        guard fd >= 0 else { throw SystemCallError(call: "signalfd", errno: -fd) }
        self.fd = fd
    }

    /// Every pending signal, in arrival order (repeats of one standard signal
    /// may have been merged by the kernel).
    func drain() -> [Signal] {
        var signals: [Signal] = []
        while true {
            let number = Sys.calls.readSignal(fd)
            if number <= 0 { return signals }
            signals.append(Signal(rawValue: number))
        }
    }
}
