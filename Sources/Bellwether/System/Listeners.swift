#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// The listening sockets the master owns and passes to every worker at
/// descriptors 3, 4, … (systemd's LISTEN_FDS convention). They are bound once,
/// stay open across reloads, and are closed only when a reload's config no
/// longer names them or at exit. The scheduler socket (--scheduler-bind) is
/// bound only while this master designates a scheduler.
final class Listeners {
    struct Socket {
        let address: BindAddress
        let fd: Int32
        /// A Unix socket file this master created, removed at exit.
        let createdPath: String?
        let name: String
        let shown: String
    }

    private(set) var sockets: [Socket] = []
    private(set) var scheduler: Socket?
    private var schedulerAddress: BindAddress?
    private var backlog: Int
    private var mode: Int?
    /// Sockets systemd passed to the master (fd -> name). They are never
    /// closed, only no longer passed on, so that a reload can take them back.
    private var inherited: [Int32: String] = [:]
    private let logger: Logger

    init(logger: Logger, backlog: Int, mode: Int?) {
        self.logger = logger
        self.backlog = backlog
        self.mode = mode
    }

    /// Binds what `addresses` adds and closes what it drops.
    func update(_ addresses: [BindAddress], schedulerAddress: BindAddress?, backlog: Int, mode: Int?,
                inherited: [Int32: String]) throws(BellwetherError) {
        self.backlog = backlog
        self.mode = mode
        self.inherited = inherited
        var kept: [Socket] = []
        do {
            for address in addresses {
                if let existing = sockets.first(where: { $0.address == address }) {
                    kept.append(existing)
                } else {
                    kept.append(try open(address))
                }
            }
        } catch {
            // Undo this attempt's binds, so that a corrected config can bind them.
            for socket in kept where !sockets.contains(where: { $0.address == socket.address }) { close(socket) }
            throw error
        }
        for socket in sockets where !kept.contains(where: { $0.address == socket.address }) { close(socket) }
        sockets = kept
        if self.schedulerAddress != schedulerAddress {
            if let scheduler { close(scheduler) }
            scheduler = nil
            self.schedulerAddress = schedulerAddress
        }
    }

    /// Binds the scheduler socket if there is one to bind; a failure is logged
    /// and retried at the next designation, the scheduler runs meanwhile.
    func openScheduler() {
        guard scheduler == nil, let address = schedulerAddress else { return }
        do { scheduler = try open(address, name: "scheduler") } catch {
            logger.write(.schedulerBindFailed(reason: error.message))
        }
    }

    func closeScheduler() {
        if let scheduler {
            close(scheduler)
            logger.write(.schedulerUnbound(address: scheduler.shown))
        }
        scheduler = nil
    }

    func closeAll() {
        for socket in sockets { close(socket) }
        sockets = []
        closeScheduler()
    }

    /// Descriptors and names for a worker; the scheduler also gets its socket.
    func passed(toScheduler: Bool) -> [(fd: Int32, name: String)] {
        var list = sockets.map { ($0.fd, $0.name) }
        if toScheduler, let scheduler { list.append((scheduler.fd, scheduler.name)) }
        return list
    }

    private func open(_ address: BindAddress, name: String = "bind") throws(BellwetherError) -> Socket {
        let fd: Int32
        var created: String?
        var shown = address.description
        var socketName = name
        switch address {
        case .ipv4, .ipv6, .unix:
            (fd, shown) = Self.bind(address, backlog: backlog, mode: mode)
            if case .unix(let path) = address { created = path }
        case .inherited(let number):
            guard let inheritedName = inherited[number] else {
                throw .notInherited(address: address.description, reason: "not among the sockets systemd passed")
            }
            guard Sys.calls.isListening(number) == 1 else {
                throw .notInherited(address: address.description, reason: "not a listening socket")
            }
            fd = number
            if name != "scheduler" && !inheritedName.isEmpty { socketName = inheritedName }
        }
        guard fd >= 0 else { throw .cannotBind(address: address.description, errno: -fd) }
        logger.write(.listening(address: shown, name: socketName, scheduler: name == "scheduler"))
        return Socket(address: address, fd: fd, createdPath: created, name: socketName, shown: shown)
    }

    /// Binds and listens on an address of the master's own (not fd://N):
    /// the descriptor or -errno, and the address as bound (the real port of a :0).
    static func bind(_ address: BindAddress, backlog: Int, mode: Int?) -> (fd: Int32, shown: String) {
        switch address {
        case .ipv4(let host, let port), .ipv6(let host, let port):
            let family: Int32 = if case .ipv6 = address { 6 } else { 4 }
            let fd = Sys.calls.listenInet(family: family, host: host, port: Int32(port), backlog: Int32(backlog))
            guard fd >= 0 && port == 0 else { return (fd, address.description) }
            let actual = Sys.calls.localPort(fd)
            return (fd, family == 6 ? "[\(host)]:\(actual)" : "\(host):\(actual)")
        case .unix(let path):
            return (Sys.calls.listenUnix(path, mode: Int32(mode ?? -1), backlog: Int32(backlog)), address.description)
        case .inherited:
            preconditionFailure("\(address) is inherited, not bound: the callers handle fd://N themselves")
        }
    }

    private func close(_ socket: Socket) {
        if case .inherited = socket.address { return }
        Sys.closeFile(socket.fd)
        if let path = socket.createdPath { Sys.calls.unlink(path) }
    }
}
