#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// The sd_notify socket the master owns for its workers (NOTIFY_SOCKET): an
/// abstract datagram socket with SO_PASSCRED, so every message carries the
/// sender's pid.
struct WorkerNotifySocket {
    let fd: Int32
    /// The NOTIFY_SOCKET value: "@" and the abstract name.
    let address: String

    init() throws(SystemCallError) {
        let socket = try Sys.calls.openNotifySocket().get()
        fd = socket.fd
        address = "@" + socket.name
    }

    /// Every pending message, with its sender's pid.
    func drain() -> [(pid: Int32, fields: [(String, String)])] {
        var messages: [(Int32, [(String, String)])] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let (length, pid) = buffer.withUnsafeMutableBytes { Sys.calls.receiveNotify(fd, into: $0) }
            if length == 0 { return messages }
            if length < 0 { if length == -Int(EAGAIN) { continue } else { return messages } }
            let text = String(decoding: buffer[0..<length], as: UTF8.self)
            var fields: [(String, String)] = []
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                if parts.count == 2 { fields.append((String(parts[0]), String(parts[1]))) }
            }
            messages.append((pid, fields))
        }
    }
}

/// The master's own messages to systemd, when it runs as a notify service
/// (NOTIFY_SOCKET in its environment). Without it, every call does nothing.
struct SystemdNotifier {
    let address: String?
    /// Half of WATCHDOG_USEC, when systemd asked this process for pings.
    let watchdogInterval: Duration?

    init(environment: [String: String]) {
        address = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        let forUs = environment["WATCHDOG_PID"].map { Int32($0) == Sys.calls.processID() } ?? true
        if address != nil, forUs, let usec = environment["WATCHDOG_USEC"].flatMap({ Int64($0) }), usec > 0 {
            watchdogInterval = .microseconds(usec / 2)
        } else {
            watchdogInterval = nil
        }
    }

    func send(_ message: String) {
        guard let address else { return }
        Sys.calls.sendNotify(to: address, message)
    }

    func announce(_ announcement: Announcement, schedulerPID: Int32?) {
        let scheduler = schedulerPID.map { ", scheduler pid \($0)" } ?? ", no scheduler"
        switch announcement {
        case .ready(let status):
            send("READY=1\nSTATUS=\(status)\(scheduler)")
        case .reloading:
            let usec = Sys.monotonicNow().nanoseconds / 1000
            send("RELOADING=1\nMONOTONIC_USEC=\(usec)\nSTATUS=reloading")
        case .stopping:
            send("STOPPING=1\nSTATUS=stopping")
        case .status(let status):
            send("STATUS=\(status)\(scheduler)")
        }
    }
}
