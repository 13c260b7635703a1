import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A real PostgreSQL server (Debian's `postgresql`), made by `initdb` in a
/// scratch directory as the unprivileged `postgres` user, on a free loopback
/// port, with SCRAM-SHA-256 logins. `scripts/test` installs the package and
/// sets BELLWETHER_REQUIRE_POSTGRES=1, so that in CI a missing server fails
/// (`postgresIsInstalledWhereRequired`) instead of skipping.
final class PostgresServer {
    /// The server's programs: /usr/lib/postgresql/VERSION/bin, the newest.
    static let binaries: String? = {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init)
        return versions.sorted().reversed().map { "\(root)/\($0)/bin" }
            .first { access($0 + "/postgres", X_OK) == 0 && access($0 + "/initdb", X_OK) == 0 }
    }()
    static var available: Bool { binaries != nil && getpwnam("postgres") != nil }
    static var required: Bool { ProcessInfo.processInfo.environment["BELLWETHER_REQUIRE_POSTGRES"] == "1" }
    static let password = "lease-secret"

    let directory: String
    let port: Int
    fileprivate(set) var pid: Int32 = 0

    /// A fresh cluster, started. `hba`: extra pg_hba.conf lines, first.
    /// Local replication connections are trusted, for `init(replicaOf:)`.
    /// With `tls`, the server also speaks TLS with that certificate (`ssl = on`).
    init(hba: [String] = [], tls: ServerCertificate? = nil) {
        directory = Harness.scratch("postgres")
        port = ReservedPort().released()
        chown(directory, Self.owner.uid, Self.owner.gid)
        let passwordFile = directory + "/password"
        FileManager.default.createFile(atPath: passwordFile, contents: Data((Self.password + "\n").utf8))
        chown(passwordFile, Self.owner.uid, Self.owner.gid)
        let made = Harness.run(Self.asPostgres([Self.binaries! + "/initdb", "-D", directory + "/data", "-U", "postgres",
                                                "-A", "scram-sha-256", "--pwfile", passwordFile, "-N"]), timeout: 60)
        precondition(made.status == 0, "initdb failed: \(made.stdout) \(made.stderr)")
        let hbaPath = directory + "/data/pg_hba.conf"
        let lines = hba + ["host all all 127.0.0.1/32 scram-sha-256", "local all all trust",
                           "local replication all trust"]
        try? lines.joined(separator: "\n").appending("\n").write(toFile: hbaPath, atomically: false, encoding: .utf8)
        if let tls {
            // The server reads its key only if the postgres user alone may.
            for (from, to) in [(tls.certificate, "server.crt"), (tls.key, "server.key")] {
                try? FileManager.default.copyItem(atPath: from, toPath: directory + "/" + to)
                chown(directory + "/" + to, Self.owner.uid, Self.owner.gid)
                chmod(directory + "/" + to, 0o600)
            }
            let settings = "ssl = on\nssl_cert_file = '\(directory)/server.crt'\nssl_key_file = '\(directory)/server.key'\n"
            let handle = FileHandle(forWritingAtPath: directory + "/data/postgresql.conf")
            handle?.seekToEndOfFile()
            handle?.write(Data(settings.utf8))
            try? handle?.close()
        }
        start()
    }

    /// A streaming replica of `primary` (pg_basebackup -R), started as a
    /// standby on a port of its own: what a failover promotes.
    init(replicaOf primary: PostgresServer) {
        directory = Harness.scratch("postgres-replica")
        port = ReservedPort().released()
        chown(directory, Self.owner.uid, Self.owner.gid)
        let copied = Harness.run(Self.asPostgres([Self.binaries! + "/pg_basebackup", "-h", primary.directory,
                                                  "-p", String(primary.port), "-U", "postgres", "-D",
                                                  directory + "/data", "-R", "-X", "stream"]), timeout: 60)
        precondition(copied.status == 0, "pg_basebackup failed: \(copied.stdout) \(copied.stderr)")
        start()
    }

    deinit { stop() }

    /// A standby becomes the primary.
    func promote() {
        let promoted = psql("SELECT pg_promote()")
        precondition(promoted.stdout.contains("t"), "promotion failed: \(promoted.stderr)")
    }

    static var owner: (uid: uid_t, gid: gid_t) {
        guard let entry = getpwnam("postgres") else { return (0, 0) }
        return (entry.pointee.pw_uid, entry.pointee.pw_gid)
    }

    /// `command` as the postgres user, exec'd in place (the pid is the server's).
    static func asPostgres(_ command: [String]) -> [String] {
        ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--"] + command
    }

    func url(user: String = "postgres", password: String? = PostgresServer.password, database: String = "postgres",
             port: Int? = nil, query: String = "") -> String {
        let credentials = password.map { "\(user):\($0)" } ?? user
        return "postgres://\(credentials)@127.0.0.1:\(port ?? self.port)/\(database)" + (query.isEmpty ? "" : "?" + query)
    }

    /// Starts the server on its port (again, after `stop()`). A postmaster
    /// killed a moment ago may leave backends that hold its shared memory:
    /// the new one is retried until they are gone.
    func start() {
        for _ in 0..<40 {
            let log = directory + "/postgres.log"
            pid = Harness.spawn(Self.asPostgres([Self.binaries! + "/postgres", "-D", directory + "/data",
                                                 "-p", String(port), "-k", directory,
                                                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]),
                                environment: [:], stdout: log, stderr: log)
            var exited = false
            if Harness.wait(15, { exited = Harness.reap(self.pid) != nil; return exited || self.answers() }), !exited {
                return
            }
            if !exited { Harness.signalAndReap(pid, SIGKILL) }
            usleep(250_000)
        }
        preconditionFailure("postgres did not start on port \(port): \(directory)/postgres.log")
    }

    func answers() -> Bool { psql("SELECT 1").stdout.contains("1") }

    /// SIGKILL to the postmaster: an outage (its backends follow it).
    func stop() {
        guard pid > 0 else { return }
        Harness.signalAndReap(pid, SIGKILL)
        pid = 0
    }

    /// psql's answer to `sql`, as the superuser over the unix socket.
    @discardableResult
    func psql(_ sql: String, database: String = "postgres") -> (status: Int32, stdout: String, stderr: String) {
        let result = Harness.run(Self.asPostgres(["/usr/bin/psql", "-h", directory, "-p", String(port), "-U", "postgres",
                                                  "-d", database, "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql]),
                                 timeout: 10)
        return (result.status, result.stdout, result.stderr)
    }
}

/// PgBouncer in transaction pooling mode in front of a `PostgresServer`,
/// with the same SCRAM logins.
final class PgBouncer {
    static let executable: String? = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].first { access($0, X_OK) == 0 }
    let directory: String
    let port: Int
    private(set) var pid: Int32 = 0

    init(_ server: PostgresServer) {
        directory = Harness.scratch("pgbouncer")
        port = ReservedPort().released()
        chown(directory, PostgresServer.owner.uid, PostgresServer.owner.gid)
        configure(server)
        try? "\"postgres\" \"\(PostgresServer.password)\"\n".write(toFile: directory + "/users.txt", atomically: false,
                                                                    encoding: .utf8)
        chown(directory + "/users.txt", PostgresServer.owner.uid, PostgresServer.owner.gid)
        let log = directory + "/pgbouncer.log"
        pid = Harness.spawn(PostgresServer.asPostgres([Self.executable!, directory + "/pgbouncer.ini"]),
                            environment: [:], stdout: log, stderr: log)
        precondition(Harness.wait(10) { Self.accepts(port: self.port) }, "pgbouncer did not start: \(log)")
    }

    /// Points the pool at `server` from now on, as an operator's failover
    /// script does (a new configuration, then SIGHUP: RELOAD).
    func retarget(_ server: PostgresServer) {
        configure(server)
        kill(pid, SIGHUP)
    }

    private func configure(_ server: PostgresServer) {
        let configuration = """
            [databases]
            postgres = host=127.0.0.1 port=\(server.port) dbname=postgres
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = \(port)
            unix_socket_dir =
            auth_type = scram-sha-256
            auth_file = \(directory)/users.txt
            pool_mode = transaction
            default_pool_size = 2
            server_login_retry = 1
            """
        try? configuration.write(toFile: directory + "/pgbouncer.ini", atomically: false, encoding: .utf8)
        chown(directory + "/pgbouncer.ini", PostgresServer.owner.uid, PostgresServer.owner.gid)
    }

    deinit {
        if pid > 0 { Harness.signalAndReap(pid, SIGKILL) }
    }

    /// Whether something accepts TCP connections on the loopback `port`.
    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

extension PostgresServer: LeaseStore {
    var scheme: String { "postgres" }
    var url: String { url() }
    /// Committed rows survive a SIGKILL of the server (fsync=off loses them
    /// only in a crash of the machine).
    var persistent: Bool { true }

    func leaseURL(port: Int, key: String) -> String { url(port: port, query: "key=\(key)") }

    /// SIGSTOP to the postmaster and every backend.
    func freeze() {
        for pid in processes() { kill(pid, SIGSTOP) }
    }

    /// SIGKILL to the postmaster and every backend (a frozen backend would
    /// keep the shared memory the next postmaster needs), then a start.
    func restart() {
        let all = processes()
        for pid in all { kill(pid, SIGKILL) }
        Harness.signalAndReap(pid, SIGKILL)
        pid = 0
        _ = Harness.wait(10) { all.allSatisfy { !Harness.isAlive($0) } }
        start()
    }

    /// The postmaster and its children, from /proc.
    private func processes() -> [Int32] {
        guard pid > 0 else { return [] }
        let children = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        return [pid] + children.split(separator: " ").compactMap { Int32($0) }
    }
}
