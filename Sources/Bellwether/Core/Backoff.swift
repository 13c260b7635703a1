/// Restart and retry delays. The first quick death restarts at once (a
/// one-off crash costs nothing); later ones double from `backoffBase` up to
/// `backoffCap`, so a command that always dies costs a few starts a minute.
enum Backoff {
    static func delay(afterQuickDeaths deaths: Int, timings: Timings) -> Duration {
        guard deaths > 1 else { return .zero }
        return doubling(timings.backoffBase, times: deaths - 2, cap: timings.backoffCap)
    }

    static func tokenRetry(attempt: Int, timings: Timings) -> Duration {
        doubling(timings.tokenRetryFirst, times: attempt - 1, cap: timings.tokenRetryCap)
    }

    private static func doubling(_ base: Duration, times: Int, cap: Duration) -> Duration {
        var delay = base
        for _ in 0..<max(0, times) where delay < cap { delay = delay * 2 }
        return min(delay, cap)
    }
}
