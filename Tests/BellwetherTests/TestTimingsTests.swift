import Testing
@testable import Bellwether

/// The tests' hook for shorter core timings (BELLWETHER_TEST_TIMINGS): absent,
/// it changes nothing; present, it sets only the timings it names.
@Suite("Test timings hook")
struct TestTimingsTests {
    @Test func absentItLeavesTheDocumentedTimings() {
        #expect(TestTimings.applied(to: Timings(), environment: ["BELLWETHER_WORKERS": "3"]) == Timings())
    }

    @Test func itSetsTheTimingsItNames() {
        let timings = TestTimings.applied(to: Timings(), environment: [
            "BELLWETHER_TEST_TIMINGS": "stable-uptime=0.2 boot-grace=0.25,token-wait-grace=0.3",
        ])
        #expect(timings.stableUptime == .milliseconds(200))
        #expect(timings.bootGrace == .milliseconds(250))
        #expect(timings.tokenWaitGrace == .milliseconds(300))
        var rest = timings
        (rest.stableUptime, rest.bootGrace, rest.tokenWaitGrace) = (Timings().stableUptime, Timings().bootGrace,
                                                                    Timings().tokenWaitGrace)
        #expect(rest == Timings(), "nothing else changes")
    }

    @Test func whatItDoesNotUnderstandIsIgnored() {
        let timings = TestTimings.applied(to: Timings(), environment: [
            "BELLWETHER_TEST_TIMINGS": "backoff-base=0 stable-uptime boot-grace=-1 token-wait-grace=soon =2 stable-uptime=0.5",
        ])
        var expected = Timings()
        expected.stableUptime = .milliseconds(500)
        #expect(timings == expected)
    }
}
