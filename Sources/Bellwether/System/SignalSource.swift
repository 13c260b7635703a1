import CBellwether

/// The master's signals, blocked and read from a descriptor (a signalfd on
/// Linux, a self-pipe elsewhere), so no Swift code ever runs in signal context.
struct SignalSource {
    static let handled: [Signal] = [
        .hangup, .interrupt, .quit, .terminate, .child, .ttyInput, .ttyOutput, .user1,
    ]

    let fd: Int32

    init() throws(SystemCallError) {
        let numbers = Self.handled.map(\.rawValue)
        let fd = numbers.withUnsafeBufferPointer { bw_signal_source_open($0.baseAddress, Int32($0.count)) }
        guard fd >= 0 else { throw SystemCallError(call: "signalfd", errno: -fd) }
        self.fd = fd
    }

    /// Every pending signal, in arrival order (repeats of one standard signal
    /// may have been merged by the kernel).
    func drain() -> [Signal] {
        var signals: [Signal] = []
        while true {
            let number = bw_signal_source_read(fd)
            if number <= 0 { return signals }
            signals.append(Signal(rawValue: number))
        }
    }
}
