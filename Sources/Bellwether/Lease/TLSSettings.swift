/// How a lease client secures its connection to the lease's server
/// (`rediss://`; later a PostgreSQL lease's `sslmode`). A value: what to
/// check, not how; `TLSSession` does it through the system's OpenSSL.
public struct TLSSettings: Hashable, Sendable {
    /// How much of the server's certificate is checked.
    public enum Verification: Hashable, Sendable {
        /// Nothing: the connection is encrypted, but the server is not
        /// authenticated, so whoever can intercept it can pose as the server.
        case none
        /// A chain to a trusted CA, valid now; not the name in it.
        case certificateAuthority
        /// A chain to a trusted CA, and the certificate names the host connected to.
        case full
    }

    public var verification: Verification
    /// A PEM file of the only CAs trusted; nil: the system's store.
    public var caFile: String?

    public init(verification: Verification = .full, caFile: String? = nil) {
        self.verification = verification
        self.caFile = caFile
    }
}
