#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A listening address given with --bind or --scheduler-bind.
public enum BindAddress: Hashable, Sendable, CustomStringConvertible {
    /// An IPv4 literal (or "0.0.0.0" for all addresses) and a port.
    case ipv4(host: String, port: Int)
    case ipv6(host: String, port: Int)
    case unix(path: String)
    /// A socket the master inherited through systemd socket activation.
    case inherited(fd: Int32)

    /// sun_path holds 108 bytes on Linux, with the terminating NUL.
    static let unixPathLimit = 107

    public var description: String {
        switch self {
        case .ipv4(let host, let port): "\(host):\(port)"
        case .ipv6(let host, let port): "[\(host)]:\(port)"
        case .unix(let path): "unix:\(path)"
        case .inherited(let fd): "fd://\(fd)"
        }
    }

    /// `inherited`: whether `fd://N` is accepted (not for --metrics-bind).
    static func parse(_ text: String, source: SettingSource, inherited: Bool = true) throws(BellwetherError)
        -> BindAddress
    {
        let expected = inherited ? "HOST:PORT, [IPV6]:PORT, :PORT, unix:PATH or fd://N"
            : "HOST:PORT, [IPV6]:PORT, :PORT or unix:PATH"
        func bad() -> BellwetherError { .invalidValue(source, value: text, expected: expected) }
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { throw bad() }
            guard path.utf8.count <= unixPathLimit else {
                throw .invalidValue(source, value: text,
                                    expected: "a unix socket path of at most \(unixPathLimit) bytes")
            }
            return .unix(path: path)
        }
        if text.hasPrefix("fd://") && inherited {
            guard let fd = Int32(text.dropFirst(5)), fd >= 3 else { throw bad() }
            return .inherited(fd: fd)
        }
        guard let colon = text.lastIndex(of: ":"),
              let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { throw bad() }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            guard isIPv6(host) else { throw bad() }
            return .ipv6(host: host, port: port)
        }
        if host.isEmpty { host = "0.0.0.0" }
        if host == "localhost" { host = "127.0.0.1" }
        guard isIPv4(host) else { throw bad() }
        return .ipv4(host: host, port: port)
    }

    static func isIPv4(_ host: String) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in
            !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isASCII) && (Int(part).map { $0 <= 255 } ?? false)
        }
    }

    static func isIPv6(_ host: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, host, &address) == 1
    }
}
