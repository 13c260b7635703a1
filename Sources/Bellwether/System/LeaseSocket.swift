#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One non-blocking TCP connection to a lease's store, driven by the
/// master's poll loop: it connects, writes what is queued as the socket
/// takes it, and hands over what arrives. It never blocks, but for the
/// host name's resolution (getaddrinfo) at each connection: give an address
/// literal where a slow resolver would hold up the master.
final class LeaseSocket {
    enum Failure: Error, Equatable {
        case connect(String)
        case closed
        case io(String)
    }

    let host: String
    let port: Int
    private(set) var fd: Int32 = -1
    private(set) var connected = false
    private var output: [UInt8] = []

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    deinit { close() }

    /// `HOST:PORT`, `[IPV6]:PORT`, for messages.
    var peer: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    var isOpen: Bool { fd >= 0 }

    /// What to poll for: nil when there is no connection.
    var pollEvents: Int16? {
        guard fd >= 0 else { return nil }
        return !connected || !output.isEmpty ? Int16(POLLOUT) : Int16(POLLIN)
    }

    /// Starts a connection (the socket is connected once `progress` says so).
    func open() throws(Failure) {
        close()
        let result = Sys.calls.connectTCP(host: host, port: Int32(port))
        guard result >= 0 else { throw .connect(describe(-result)) }
        fd = result
    }

    /// Queues `bytes` and writes what the socket takes now.
    func write(_ bytes: [UInt8]) throws(Failure) {
        output += bytes
        if connected { try flush() }
    }

    /// After poll reported `revents`: completes the connection, writes what
    /// is queued, and returns what could be read (empty: nothing yet).
    func progress(_ revents: Int16) throws(Failure) -> [UInt8] {
        guard fd >= 0 else { return [] }
        if !connected {
            guard revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 else { return [] }
            let error = Sys.calls.socketError(fd)
            guard error == 0 else { throw .connect(describe(error)) }
            connected = true
        }
        if revents & Int16(POLLOUT) != 0 { try flush() }
        guard revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 else { return [] }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { Sys.calls.read(fd, into: $0) }
            if count > 0 {
                received += buffer[0..<count]
                if count < buffer.count { break }
            } else if count == 0 {
                if received.isEmpty { throw .closed }
                break
            } else if count == -Int(EINTR) {
                continue
            } else if count == -Int(EAGAIN) || count == -Int(EWOULDBLOCK) {
                break
            } else {
                throw .io("reading: \(describe(Int32(-count)))")
            }
        }
        return received
    }

    func close() {
        if fd >= 0 { Sys.closeFile(fd) }
        fd = -1
        connected = false
        output = []
    }

    private func flush() throws(Failure) {
        while !output.isEmpty {
            let written = output.withUnsafeBytes { Sys.sendWithoutSignal(fd, $0) }
            if written > 0 {
                output.removeFirst(written)
            } else if written == -Int(EINTR) {
                continue
            } else if written == -Int(EAGAIN) || written == -Int(EWOULDBLOCK) {
                return
            } else {
                throw .io("writing: \(describe(Int32(-written)))")
            }
        }
    }
}
