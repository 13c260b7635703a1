import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `Tests/EndToEnd/faultproxy.py` as a process of its own, between one
/// supervisor and the lease store: cutting one proxy cuts that supervisor
/// alone. Connections are forwarded to the store's port anew each time, so a
/// store restarted on its port is reached again without a new proxy.
final class FaultProxy {
    /// What the proxy does to every connection, open or new (the script's
    /// docstring has the details).
    enum Mode: CustomStringConvertible {
        case pass
        /// Connections stay open and nothing comes through; what was sent is lost.
        case blackhole
        /// Each chunk goes through this many seconds after it was read, in order.
        case delay(Double)
        /// Every connection is closed with RST, new ones at once.
        case reset

        var description: String {
            switch self {
            case .pass: "pass"
            case .blackhole: "blackhole"
            case .delay(let seconds): "delay \(seconds)"
            case .reset: "reset"
            }
        }
    }

    static let python = "/usr/bin/python3"
    static var script: String { Harness.packageRoot + "/Tests/EndToEnd/faultproxy.py" }
    static var available: Bool { access(python, X_OK) == 0 && access(script, R_OK) == 0 }

    /// Where the supervisor connects.
    let port: Int
    let directory: String
    private let control: String
    private let pid: Int32

    /// A proxy in `pass` mode to 127.0.0.1:`target`, once it listens.
    init(target: Int, name: String) {
        directory = Harness.scratch("proxy-\(name)")
        control = directory + "/control"
        let portFile = directory + "/port"
        let pid = Harness.spawn([Self.python, Self.script, "--listen", "0", "--target", "127.0.0.1:\(target)",
                                 "--control", control], stdout: portFile, stderr: directory + "/proxy.log")
        self.pid = pid
        // The port is printed once the listener and the control socket are bound.
        var port: Int?
        Harness.wait(10) {
            port = ChaosOS.readText(portFile).flatMap { $0.hasSuffix("\n") ? Int($0.dropLast()) : nil }
            return port != nil || Harness.reap(pid) != nil
        }
        guard let port else { preconditionFailure("faultproxy did not start: \(portFile), proxy.log beside it") }
        self.port = port
    }

    deinit {
        kill(pid, SIGTERM)
        _ = Harness.finish(pid, timeout: 5)
    }

    /// Switches the mode and returns the monotonic instant (as `ChaosOS.monotonic`)
    /// at which the proxy said it was in force on every connection.
    @discardableResult
    func set(_ mode: Mode, sourceLocation: SourceLocation = #_sourceLocation) -> Double {
        let answer = send(mode.description)
        let now = ChaosOS.monotonic()
        #expect(answer.hasPrefix("ok "), "faultproxy \(directory): \(mode) answered \"\(answer)\"",
                sourceLocation: sourceLocation)
        return now
    }

    /// One command line on the control socket, and the proxy's answer line.
    private func send(_ command: String) -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "socket: errno \(errno)" }
        defer { close(fd) }
        var limit = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(control.utf8)
        precondition(path.count < MemoryLayout.size(ofValue: address.sun_path), "control path too long: \(control)")
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else { return "connect: errno \(errno)" }
        let request = Array((command + "\n").utf8)
        guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == request.count else {
            return "write: errno \(errno)"
        }
        var answer: [UInt8] = []
        var byte: UInt8 = 0
        while answer.last != UInt8(ascii: "\n") {
            let count = read(fd, &byte, 1)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            answer.append(byte)
        }
        return String(decoding: answer, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
