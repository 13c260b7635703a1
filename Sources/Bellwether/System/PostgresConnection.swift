/// One connection to PostgreSQL (directly, or through PgBouncer), driven by
/// the master's poll loop: one statement at a time, each with a deadline.
/// A fresh connection authenticates (trust, password, md5 or SCRAM-SHA-256,
/// whose server signature is checked), TLS first when `sslmode` asks, and
/// makes sure the lease table exists before the statement. On a failure or
/// a timeout the connection is dropped and the next statement opens a new
/// one; only an ERROR that leaves the session idle and sound keeps it.
final class PostgresConnection {
    enum Outcome: Equatable {
        case rows([[String?]])
        case failed(String)
        /// A configuration error: wrong password, no such database, a table
        /// that is missing and may not be created, an authentication method
        /// this client does not speak.
        case rejected(String)
    }

    private enum Phase {
        case closed
        /// SSLRequest sent: the server's one-byte answer comes first.
        case negotiating
        /// Connecting, then authenticating: until the first ReadyForQuery.
        case starting
        /// Between statements, the connection ready.
        case idle
        /// A statement sent; its answer collects here.
        case answering(PGQueryResult)
    }

    let address: PostgresAddress
    private let socket: LeaseSocket
    private var phase = Phase.closed
    private var parser = PGBackendParser()
    private var scram: ScramClient?
    /// Statements to send once the connection is ready, in order: the table
    /// check on a fresh connection, then the caller's. Only the last one's
    /// rows are the outcome.
    private var pending: [Statement] = []
    private(set) var deadline: Instant?
    private var timeout: Duration = .zero

    private enum Statement: Equatable {
        case tableExists
        case createTable
        case request(String)
    }

    init(address: PostgresAddress) {
        self.address = address
        socket = LeaseSocket(host: address.host, port: address.port)
    }

    var fd: Int32 { socket.fd }
    var pollEvents: Int16? { socket.pollEvents }
    private var peer: String { "postgres at \(socket.peer)" }

    /// Sends one statement; the outcome comes from `handle` or `expire`, or
    /// at once if the connection cannot even be started.
    func send(_ sql: String, at now: Instant, timeout: Duration) -> Outcome? {
        deadline = now + timeout
        self.timeout = timeout
        if case .closed = phase {
            do {
                try socket.open()
                parser = PGBackendParser()
                scram = nil
                pending = [.tableExists, .request(sql)]
                if tlsWanted {
                    phase = .negotiating
                    try socket.write(PGWire.sslRequest())
                } else {
                    try startup()
                }
            } catch let failure as LeaseSocket.Failure {
                return fail(failure)
            } catch {
                return .rejected("cannot start a session with \(peer): \(error)")
            }
            return nil
        }
        pending.append(.request(sql))
        return next()
    }

    /// Progress after poll reported `revents` on `fd`.
    func handle(_ revents: Int16, at now: Instant) -> Outcome? {
        do throws(LeaseSocket.Failure) {
            let bytes = try socket.progress(revents)
            guard !bytes.isEmpty else { return nil }
            parser.feed(bytes)
        } catch {
            return fail(error)
        }
        do {
            if case .negotiating = phase {
                guard let answer = try parser.nextSSLAnswer() else { return nil }
                if answer == .accepted {
                    try socket.startTLS(tlsSettings)
                } else if address.sslMode.requiresTLS {
                    return drop(.rejected("\(peer) does not offer TLS, and sslmode=\(address.sslMode.rawValue) requires it"))
                }
                parser = PGBackendParser()
                try startup()
            }
            while let message = try parser.next() {
                if let outcome = try receive(message) { return outcome }
            }
        } catch let failure as LeaseSocket.Failure {
            return fail(failure)
        } catch let error as MissingPassword {
            return drop(.rejected("\(peer) asks for a password and \(error)"))
        } catch let error as PGWireError {
            return drop(.failed("bad answer from \(peer): \(error)"))
        } catch let error as ScramError {
            return drop(.rejected("\(peer) failed SCRAM-SHA-256 authentication: \(error)"))
        } catch {
            return drop(.failed("\(peer): \(error)"))
        }
        return nil
    }

    /// Drops the connection if the statement in flight is overdue.
    func expire(at now: Instant) -> Outcome? {
        guard let deadline, now >= deadline else { return nil }
        return drop(.failed("\(socket.overdue) \(peer) within \(timeout.shortDescription)"))
    }

    func close() {
        if case .idle = phase { try? socket.write(PGWire.terminate()) }
        socket.close()
        phase = .closed
        pending = []
        deadline = nil
    }

    // MARK: The session

    private func startup() throws {
        phase = .starting
        let user = address.user ?? ""
        try socket.write(PGWire.startup(user: user, database: address.database ?? user,
                                        applicationName: address.applicationName))
    }

    /// Whether to ask for TLS: always when sslmode requires it; with
    /// `prefer` and `allow`, when libssl is there to speak it.
    private var tlsWanted: Bool {
        switch address.sslMode {
        case .disable: false
        case .allow, .prefer: TLSSession.unavailableReason() == nil
        case .require, .verifyCA, .verifyFull: true
        }
    }

    /// As libpq: `prefer`, `allow` and `require` check no certificate, but
    /// `require` with an `sslrootcert` checks the chain, as `verify-ca`
    /// does; `verify-full` checks the host name too. Without `sslrootcert`,
    /// the system's CA store.
    private var tlsSettings: TLSSettings {
        switch address.sslMode {
        case .disable, .allow, .prefer: TLSSettings(verification: .none)
        case .require:
            TLSSettings(verification: address.sslRootCert == nil ? .none : .certificateAuthority,
                        caFile: address.sslRootCert)
        case .verifyCA: TLSSettings(verification: .certificateAuthority, caFile: address.sslRootCert)
        case .verifyFull: TLSSettings(verification: .full, caFile: address.sslRootCert)
        }
    }

    private func receive(_ message: PGBackendMessage) throws -> Outcome? {
        switch (phase, message) {
        case (.starting, .authenticationCleartextPassword):
            try socket.write(PGWire.password(try password()))
        case (.starting, .authenticationMD5Password(let salt)):
            let response = PostgresMD5.response(user: address.user ?? "", password: Array(try password().utf8),
                                                salt: salt)
            try socket.write(PGWire.password(String(decoding: response, as: UTF8.self)))
        case (.starting, .authenticationSASL(let mechanisms)):
            guard mechanisms.contains(ScramClient.mechanism) else {
                return drop(.rejected("\(peer) offers SASL \(mechanisms.joined(separator: ", ")) only, "
                                      + "not \(ScramClient.mechanism)"))
            }
            let nonce = ScramClient.nonce(from: (0..<18).map { _ in UInt8.random(in: .min ... .max) })
            let client = ScramClient(password: Array(try password().utf8), clientNonce: nonce)
            scram = client
            try socket.write(PGWire.saslInitialResponse(mechanism: ScramClient.mechanism,
                                                        data: client.clientFirstMessage))
        case (.starting, .authenticationSASLContinue(let data)):
            guard var client = scram else { throw PGWireError(description: "SASLContinue out of turn") }
            let final = try client.clientFinalMessage(serverFirst: data)
            scram = client
            try socket.write(PGWire.saslResponse(final))
        case (.starting, .authenticationSASLFinal(let data)):
            guard var client = scram else { throw PGWireError(description: "SASLFinal out of turn") }
            try client.verifyServerFinal(data)
            scram = client
        case (.starting, .authenticationOk):
            // A server that skipped SCRAM's last step never proved it knows the password.
            if let scram, !scram.isAuthenticated {
                return drop(.rejected("\(peer) accepted the login without proving it knows the password"))
            }
        case (.starting, .authenticationUnsupported(let code)):
            return drop(.rejected("\(peer) asks for an authentication method bellwether does not speak "
                                  + "(code \(code)); use scram-sha-256, md5, password or trust in pg_hba.conf"))
        case (.starting, .errorResponse(let error)):
            return drop(startupError(error))
        case (.starting, .readyForQuery):
            phase = .idle
            return next()
        case (.answering(var result), _):
            guard try result.consume(message) else {
                phase = .answering(result)
                return nil
            }
            phase = .idle
            return answered(result)
        case (_, .parameterStatus), (_, .backendKeyData), (_, .noticeResponse):
            break
        case (_, .errorResponse(let error)):
            // A FATAL between statements: the server is going away (a restart, a failover).
            return drop(.failed("\(peer): \(error.message)"))
        default:
            throw PGWireError(description: "unexpected message from the server")
        }
        return nil
    }

    /// Sends the next pending statement, if the connection is ready.
    private func next() -> Outcome? {
        guard case .idle = phase, let statement = pending.first else { return nil }
        let sql = switch statement {
        case .tableExists: PostgresLeaseSQL.tableExists(address.table)
        case .createTable: PostgresLeaseSQL.createTable(address.table)
        case .request(let sql): PostgresLeaseSQL.bounded(sql, by: timeout)
        }
        do {
            try socket.write(try PGWire.query(sql))
        } catch let error as LeaseSocket.Failure {
            return fail(error)
        } catch {
            return drop(.failed("cannot send to \(peer): \(error)"))
        }
        phase = .answering(PGQueryResult())
        return nil
    }

    private func answered(_ result: PGQueryResult) -> Outcome? {
        let statement = pending.removeFirst()
        if let error = result.error {
            switch (statement, error.sqlState) {
            case (.createTable, "42501"):
                return drop(.rejected("the lease table \(address.table) does not exist, and user "
                    + "\(address.user ?? "?") may not create it (\(error.message)); create it as the manual shows"))
            case (.createTable, "23505"):
                break  // another supervisor created it at the same moment
            case (.request, _) where result.status == .idle:
                // The session is sound (a timeout, a serialization failure):
                // it stays open for the next command.
                deadline = nil
                return .failed("\(peer): \(error.message) (SQLSTATE \(error.sqlState))")
            default:
                return drop(.failed("\(peer): \(error.message) (SQLSTATE \(error.sqlState))"))
            }
        }
        switch statement {
        case .tableExists:
            if result.rows.first?.first == "f" { pending.insert(.createTable, at: 0) }
            return next()
        case .createTable:
            return next()
        case .request:
            deadline = nil
            return .rows(result.rows)
        }
    }

    /// PgBouncer's own refusals of a login, all SQLSTATE 08P01 (a protocol
    /// violation), told apart from its transient ones by their words.
    static let bouncerRefusals = ["authentication failed", "no such user", "no such database", "not allowed",
                                  "no pg_hba.conf entry"]

    private func startupError(_ error: PGDiagnostic) -> Outcome {
        switch error.sqlState {
        case "28P01", "28000":
            return .rejected("\(peer) refused the lease's login: \(error.message)")
        case "3D000", "42501":
            return .rejected("\(peer): \(error.message)")
        case "08P01" where Self.bouncerRefusals.contains(where: error.message.lowercased().contains):
            return .rejected("\(peer) refused the lease's login: \(error.message)")
        case "57P03":  // the database system is starting up, or shutting down
            return .failed("\(peer): \(error.message)")
        default:
            return .failed("\(peer): \(error.message) (SQLSTATE \(error.sqlState))")
        }
    }

    private struct MissingPassword: Error, CustomStringConvertible {
        var description: String { "none was given (in the URL, BELLWETHER_LEASE_PASSWORD or PGPASSWORD)" }
    }

    private func password() throws(MissingPassword) -> String {
        guard let password = address.password else { throw MissingPassword() }
        return password
    }

    private func fail(_ failure: LeaseSocket.Failure) -> Outcome {
        // A FATAL before the server closed (an administrator's termination,
        // a shutdown) says more than the end of the stream does.
        if failure == .closed, case .answering(let result) = phase, let error = result.error {
            return drop(.failed("\(peer): \(error.message) (SQLSTATE \(error.sqlState))"))
        }
        switch failure {
        case .connect(let why): return drop(.failed("cannot connect to \(peer): \(why)"))
        case .closed: return drop(.failed("\(peer) closed the connection"))
        case .io(let why): return drop(.failed("\(peer): \(why)"))
        case .handshake(let why): return drop(.failed("TLS with \(peer): \(why)"))
        case .untrusted(let why): return drop(.rejected("TLS with \(peer): \(why)"))
        }
    }

    private func drop(_ outcome: Outcome) -> Outcome {
        socket.close()
        phase = .closed
        pending = []
        deadline = nil
        return outcome
    }
}
