import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Test func postgresIsInstalledWhereRequired() {
    #expect(!PostgresServer.required || (PostgresServer.available && PgBouncer.executable != nil),
            "BELLWETHER_REQUIRE_POSTGRES=1 but postgresql or pgbouncer is not installed (apt-get install postgresql pgbouncer)")
}

/// One scheduler across supervisors through a real PostgreSQL, directly and
/// through PgBouncer in transaction pooling mode, with the Redis tests'
/// timings and helpers (`RedisLeaseTests`): the same `LeaseCore` decides, so
/// the same cases must hold — three supervisors, the holder's master killed,
/// the holder stopped past its deadline, the server killed and restarted —
/// and the configuration errors a PostgreSQL user meets are one line and 77.
@Suite(.ownThread, .enabled(if: PostgresServer.available, "needs postgresql (scripts/test installs it)"))
struct PostgresLeaseTests {
    typealias Lease = RedisLeaseTests

    static func settledCluster(_ url: String, name: String = "pg") -> [Supervisor] {
        let all = Lease.cluster(lease: url, name: name)
        #expect(Harness.wait(20) { Lease.schedulers(all).count == 1 && all.allSatisfy { $0.live().count == 2 } },
                "\(all.map { $0.logText().suffix(800) })")
        return all
    }

    @Test func threeSupervisorsKeepExactlyOneSchedulerAndTheHoldersKillHandsItOn() throws {
        let server = PostgresServer()
        defer { withExtendedLifetime(server) {} }
        let all = Self.settledCluster(server.url(query: "key=three"))
        var counts: [Int] = []
        for _ in 0..<25 {
            counts.append(Lease.schedulers(all).count)
            usleep(200_000)
        }
        #expect(counts.allSatisfy { $0 == 1 }, "schedulers seen: \(Set(counts))")
        let states = all.compactMap { supervisor in
            ControlTests.status(["-s", supervisor.directory + "/control"])?["lease"] as? [String: Any]
        }
        #expect(states.allSatisfy { ($0["kind"] as? String)?.hasPrefix("postgres postgres://postgres@") == true },
                "\(states)")
        #expect(states.filter { ($0["state"] as? String)?.hasPrefix("held by this master") == true }.count == 1)
        // The table, made on first use, holds the holder and its fence.
        let row = server.psql("SELECT value, fence FROM bellwether_lease WHERE name = 'three'").stdout
        #expect(row.contains("|1"), "row: \(row)")

        let (holder, old) = try Lease.holderAndScheduler(all)
        holder.signal(SIGKILL)
        _ = holder.waitForExit()
        #expect(Harness.wait(2) { !Harness.isAlive(old.pid) }, "the scheduler dies with its master")
        let others = all.filter { $0 !== holder }
        #expect(Harness.wait(Lease.ttl + Lease.renew + Lease.takeover + 3) { Lease.schedulers(others).count == 1 })
        Lease.checkOneSchedulerStays(all, remaining: others, minimumStarts: 2)
    }

    @Test func aStoppedHolderStepsDownAndTheServersRestartKeepsFencesRising() throws {
        let server = PostgresServer()
        defer { withExtendedLifetime(server) {} }
        let all = Self.settledCluster(server.url(query: "key=outage"))
        // The holder frozen past its deadline: its guard ends the scheduler.
        let (holder, old) = try Lease.holderAndScheduler(all)
        holder.signal(SIGSTOP)
        let stoppedAt = Date()
        #expect(Harness.wait(Lease.deadline + Lease.grace + 1) { !Harness.isAlive(old.pid) },
                "the guard stops the scheduler by D + G")
        #expect(Date().timeIntervalSince(stoppedAt) <= Lease.deadline + Lease.grace + 1)
        let others = all.filter { $0 !== holder }
        #expect(Harness.wait(Lease.ttl + Lease.renew + Lease.takeover + 3) { Lease.schedulers(others).count == 1 })
        holder.signal(SIGCONT)
        #expect(Harness.wait(5) { holder.logText().contains("stepping down") && holder.liveSchedulers().isEmpty })

        // The server killed: the holder steps down, nobody schedules, then one returns.
        let second = try #require(Lease.schedulers(all).first)
        server.stop()
        #expect(Harness.wait(Lease.deadline + Lease.grace + 1) { !Harness.isAlive(second.pid) }, "the holder steps down")
        usleep(useconds_t((Lease.deadline + 1) * 1e6))
        #expect(Lease.schedulers(all).isEmpty, "no scheduler while PostgreSQL is away")
        server.start()
        #expect(Harness.wait(Lease.ttl + Lease.renew + Lease.takeover + 5) { Lease.schedulers(all).count == 1 },
                "\(all.map { $0.logText().suffix(600) })")
        // The row survived the restart: every new holder's fence is higher.
        let fences = OracleLog(all[0].oracle).starts.map(\.fence)
        #expect(fences.count >= 3 && fences == fences.sorted() && Set(fences).count == fences.count, "fences \(fences)")
        Lease.checkOneSchedulerStays(all, seconds: 2, minimumStarts: 3)
    }

    @Test func throughPgBouncerInTransactionModeOneSchedulerAndACleanHandover() throws {
        let server = PostgresServer()
        let bouncer = PgBouncer(server)
        defer { withExtendedLifetime((server, bouncer)) {} }
        // PgBouncer refuses a wrong password in words of its own (SQLSTATE 08P01): still 77.
        let refused = Harness.run([Harness.bellwether, "--lease", server.url(password: "wrong", port: bouncer.port),
                                   "--", "/bin/true"], timeout: 20)
        #expect(refused.status == 77 && refused.stderr.contains("refused the lease's login"), "\(refused.stderr)")
        let all = Self.settledCluster(server.url(port: bouncer.port, query: "key=bouncer"), name: "pgb")
        let holder = try #require(Lease.holder(all))
        #expect(holder.stop() == 0)
        let stoppedAt = Date()
        let others = all.filter { $0 !== holder }
        #expect(Harness.wait(Lease.takeover) { Lease.schedulers(others).count == 1 })
        #expect(Date().timeIntervalSince(stoppedAt) < Lease.takeover, "the tombstone lets the next holder start at once")
        #expect(others.contains { $0.logText().contains("released cleanly") })
        Lease.checkOneSchedulerStays(all, remaining: others, minimumStarts: 2)
    }

    /// A failover: the primary killed, its streaming replica promoted, and
    /// PgBouncer pointed at it. The row came over with the replica, so the
    /// next holder's fence is higher than every fence before, and at no
    /// moment are there two schedulers.
    @Test func aFailoverToAReplicaKeepsTheFenceRising() throws {
        let primary = PostgresServer()
        let bouncer = PgBouncer(primary)
        let all = Self.settledCluster(primary.url(port: bouncer.port, query: "key=failover"), name: "pgf")
        let replica = PostgresServer(replicaOf: primary)
        defer { withExtendedLifetime((primary, replica, bouncer)) {} }
        #expect(Harness.wait(10) {
            replica.psql("SELECT fence FROM bellwether_lease WHERE name = 'failover'").stdout.contains("1")
        }, "the row reached the replica")
        let before = OracleLog(all[0].oracle).starts.map(\.fence).max() ?? 0
        let old = try #require(Lease.schedulers(all).first)
        primary.stop()
        #expect(Harness.wait(Lease.deadline + Lease.grace + 1) { !Harness.isAlive(old.pid) }, "the holder steps down")
        replica.promote()
        bouncer.retarget(replica)
        #expect(Harness.wait(Lease.ttl + Lease.renew + Lease.takeover + 10) { Lease.schedulers(all).count == 1 },
                "\(all.map { $0.logText().suffix(600) })")
        let after = OracleLog(all[0].oracle).starts.last?.fence ?? 0
        #expect(after > before, "fence \(before) before the failover, \(after) after")
        Lease.checkOneSchedulerStays(all, seconds: 2, minimumStarts: 2)
    }

    /// Every login method the lease speaks, against the real server: the
    /// others run SCRAM-SHA-256 (the default); here md5, a cleartext password
    /// and trust, each a role of its own that pg_hba.conf sends that way.
    @Test func md5PasswordAndTrustLoginsEachGetTheLease() throws {
        let server = PostgresServer(hba: ["host all md5user 127.0.0.1/32 md5",
                                          "host all plainuser 127.0.0.1/32 password",
                                          "host all trustuser 127.0.0.1/32 trust"])
        defer { withExtendedLifetime(server) {} }
        server.psql("SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'md5pw'; "
                    + "RESET password_encryption; CREATE ROLE plainuser LOGIN PASSWORD 'plainpw'; "
                    + "CREATE ROLE trustuser LOGIN; GRANT CREATE ON SCHEMA public TO md5user, plainuser, trustuser")
        for (user, password) in [("md5user", "md5pw" as String?), ("plainuser", "plainpw"), ("trustuser", nil)] {
            let master = Supervisor(["-w", "1"] + Lease.timings,
                                    lease: server.url(user: user, password: password, query: "key=\(user)&table=\(user)_lease"),
                                    name: "pg-\(user)")
            #expect(Harness.wait(10) { master.liveSchedulers().count == 1 }, "\(user): \(master.logText())")
            #expect(master.stop() == 0)
        }
        let row = server.psql("SELECT count(*) FROM md5user_lease, plainuser_lease, trustuser_lease").stdout
        #expect(row.hasPrefix("1"), "each login made its table and row: \(row)")
    }

    /// What a user gets wrong, each one line on stderr and exit 77 at start.
    @Test func wrongPasswordMissingDatabaseAndAnUncreatableTableAreOneLineAnd77() throws {
        let server = PostgresServer()
        defer { withExtendedLifetime(server) {} }
        server.psql("CREATE ROLE limited LOGIN PASSWORD 'limited'; REVOKE CREATE ON SCHEMA public FROM PUBLIC; "
                    + PostgresLeaseTests.documentedSQL.replacingOccurrences(of: "bellwether_lease", with: "not_granted"))
        let cases: [(url: String, says: String)] = [
            (server.url(password: "wrong"), "refused the lease's login: password authentication failed"),
            (server.url(database: "nosuch"), "database \"nosuch\" does not exist"),
            (server.url(user: "limited", password: "limited", query: "table=lease_of_limited"),
             "the lease table lease_of_limited does not exist, and user limited may not create it"),
            (server.url(user: "limited", password: "limited", query: "table=not_granted"),
             "user limited may not use the lease table not_granted: grant it SELECT, INSERT, UPDATE"),
        ]
        for (url, says) in cases {
            let result = Harness.run([Harness.bellwether, "--lease", url, "--", "/bin/true"], timeout: 20)
            #expect(result.status == 77, "\(url): \(result.stderr)")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].contains(says), "\(result.stderr)")
            #expect(!result.stderr.contains("wrong") || !url.contains("wrong"), "the password is never shown")
        }
        // The documented SQL, run by whoever owns the schema, is all it takes.
        server.psql(PostgresLeaseTests.documentedSQL.replacingOccurrences(of: "bellwether_lease", with: "lease_of_limited")
            + "; GRANT SELECT, INSERT, UPDATE ON lease_of_limited TO limited")
        let granted = Supervisor(["-w", "1"] + Lease.timings,
                                 lease: server.url(user: "limited", password: "limited", query: "table=lease_of_limited"),
                                 name: "pg-granted")
        #expect(Harness.wait(10) { granted.liveSchedulers().count == 1 }, "\(granted.logText())")
        #expect(granted.stop() == 0)
    }

    /// The table as the README gives it for those who create schema by migration.
    static var documentedSQL: String {
        let readme = (try? String(contentsOfFile: Harness.packageRoot + "/README.md", encoding: .utf8)) ?? ""
        guard let start = readme.range(of: "CREATE TABLE IF NOT EXISTS public.bellwether_lease"),
              let end = readme.range(of: ");", range: start.upperBound..<readme.endIndex) else { return "missing" }
        return String(readme[start.lowerBound..<end.upperBound])
    }
}
