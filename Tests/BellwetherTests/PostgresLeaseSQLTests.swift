import Testing
@testable import Bellwether

/// The PostgreSQL lease's answers decoded into the replies `LeaseCore` knows,
/// as the Redis scripts' are; a real server runs the statements in
/// `PostgresLeaseTests`.
@Suite struct PostgresLeaseSQLTests {
    @Test func acquisitionsAreCleanOnlyOverATombstone() {
        let acquire = LeaseCommand.acquire(floor: 3)
        #expect(PostgresLeaseSQL.decode([["4", "t", "t", "released"]], for: acquire) == .success(.acquired(fence: 4, clean: true)))
        #expect(PostgresLeaseSQL.decode([["4", "t", "f", nil]], for: acquire) == .success(.acquired(fence: 4, clean: false)))
        #expect(PostgresLeaseSQL.decode([["1", nil, nil, nil]], for: acquire) == .success(.acquired(fence: 1, clean: false)))
        #expect(PostgresLeaseSQL.decode([[nil, "t", "f", "h/1/a|7"]], for: acquire) == .success(.heldBy("h/1/a|7")))
    }

    @Test func renewalsAndReleasesThatFindAnotherValueAreNotOurs() {
        let renew = LeaseCommand.renew(value: "h/1/a|7"), release = LeaseCommand.release(value: "h/1/a|7")
        #expect(PostgresLeaseSQL.decode([["1", "h/1/a|7"]], for: renew) == .success(.renewed))
        #expect(PostgresLeaseSQL.decode([["1", "h/1/a|7"]], for: release) == .success(.released))
        #expect(PostgresLeaseSQL.decode([["0", "g/2/b|8"]], for: renew) == .success(.notOurs("g/2/b|8")))
        #expect(PostgresLeaseSQL.decode([["0", nil]], for: release) == .success(.notOurs(nil)))
    }

    @Test(arguments: [[[String?]](), [["x", nil, nil, nil]], [["1"]], [["1", nil], ["1", nil]], [["one", nil]]])
    func malformedAnswersAreErrors(_ rows: [[String?]]) {
        for command in [LeaseCommand.acquire(floor: 1), .renew(value: "v"), .release(value: "v")] {
            #expect(throws: PGWireError.self, "\(command)") { try PostgresLeaseSQL.decode(rows, for: command).get() }
        }
    }

    @Test func valuesAreQuotedSoAHostileKeyStaysAString() {
        let sql = PostgresLeaseSQL.query(.renew(value: "it's|1"), table: "bellwether_lease", key: "k'; DROP TABLE x; --",
                                         holder: "h", ttl: .seconds(15))
        #expect(sql.contains("'k''; DROP TABLE x; --'"))
        #expect(sql.contains("'it''s|1'"))
        #expect(sql.contains("15000 * interval '1 millisecond'"))
    }
}
