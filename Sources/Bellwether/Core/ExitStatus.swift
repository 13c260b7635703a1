/// How a worker ended, decoded from a wait status by the shell.
public enum ExitStatus: Hashable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Signal, coreDumped: Bool)

    public var description: String {
        switch self {
        case .exited(let code): "exit status \(code)"
        case .signaled(let signal, let core): "signal \(signal)" + (core ? " (core dumped)" : "")
        }
    }
}
