#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What one read or write on a non-blocking stream came to, plain or TLS.
enum StreamTransfer: Equatable {
    /// This many bytes moved (more than 0).
    case bytes(Int)
    /// Nothing can move until poll says so.
    case wouldBlock
    /// The other end closed the stream.
    case closed
    case failed(String)
}

/// A TLS client session over a connected, non-blocking socket that its
/// caller owns and polls: the handshake, then reads and writes, each a step
/// that either progresses or says which readiness to wait for. It knows no
/// protocol above it, so that the Redis lease (after its TCP connect) and a
/// PostgreSQL lease (after its SSLRequest) share it.
///
/// Every call goes through the `SystemCalls` the session was made under,
/// kept so that closing it reaches the same implementation.
final class TLSSession {
    enum Progress: Equatable {
        case established
        /// Poll for `waitsFor`, then step again.
        case waiting
        case failed(String)
        /// The server's certificate failed verification: a configuration
        /// problem (wrong CA, wrong host name, expired), not a network one.
        case untrusted(String)
    }

    let fd: Int32
    private let calls: any SystemCalls
    private var handle: TLSHandle?
    private(set) var isEstablished = false
    /// POLLIN or POLLOUT: what the last step that could not go on waits for;
    /// nil once a step has gone on. A read may wait for POLLOUT, and a write
    /// for POLLIN, when the protocol needs it.
    private(set) var waitsFor: Int16?

    /// nil when TLS can be used (libssl loads); else why not.
    static func unavailableReason() -> String? { Sys.calls.tlsUnavailable() }

    /// A session for `host` (the name verified and sent as SNI) on `fd`; it
    /// does not own `fd`, which must outlive it.
    init(fd: Int32, host: String, settings: TLSSettings) throws(TLSError) {
        self.fd = fd
        calls = Sys.calls
        handle = try calls.tlsOpen(fd: fd, host: host, settings: settings).get()
        waitsFor = Int16(POLLOUT)  // the ClientHello goes first
    }

    deinit { close() }

    /// Sends close_notify when sound (never waiting) and frees the session; `fd` stays open.
    func close() {
        if let handle { calls.tlsClose(handle) }
        handle = nil
    }

    /// One step of the handshake.
    func handshake() -> Progress {
        guard let handle else { return .failed("the TLS session is closed") }
        switch calls.tlsHandshake(handle) {
        case .done:
            isEstablished = true
            waitsFor = nil
            return .established
        case .wantRead: waitsFor = Int16(POLLIN); return .waiting
        case .wantWrite: waitsFor = Int16(POLLOUT); return .waiting
        case .closed: return .failed("handshake: the server ended the session")
        case .failed(let reason): return .failed(reason)
        case .untrusted(let reason): return .untrusted(reason)
        }
    }

    /// Plaintext into `buffer`. Read until `.wouldBlock`: bytes can wait
    /// inside the session while the socket shows none.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> StreamTransfer {
        guard let handle else { return .failed("the TLS session is closed") }
        return transfer(calls.tlsRead(handle, into: buffer))
    }

    /// Some of `bytes`, perhaps not all; after `.wouldBlock`, offer the rest again.
    func write(_ bytes: UnsafeRawBufferPointer) -> StreamTransfer {
        guard let handle else { return .failed("the TLS session is closed") }
        return transfer(calls.tlsWrite(handle, bytes))
    }

    private func transfer(_ step: TLSStep) -> StreamTransfer {
        switch step {
        case .done(let count):
            waitsFor = nil
            return count > 0 ? .bytes(count) : .wouldBlock
        case .wantRead: waitsFor = Int16(POLLIN); return .wouldBlock
        case .wantWrite: waitsFor = Int16(POLLOUT); return .wouldBlock
        case .closed: return .closed
        case .failed(let reason), .untrusted(let reason): return .failed(reason)
        }
    }
}
