import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs each test of a suite on a thread of its own, off Swift's cooperative
/// pool. The black-box tests block: they wait on real processes (`usleep`,
/// `waitpid`), and a blocking test holds one of the pool's threads, of which
/// there are as many as cores. On two cores only two of them ran at a time,
/// each waiting most of its time, and the unit tests waited behind them.
/// On threads of their own, the suites wait side by side; `.serialized`
/// still runs a suite's tests one after another.
///
/// In the background (nice +10, which the processes a test starts inherit):
/// for suites that assert no timings, so that their bursts of processes
/// leave the CPU to the suites that do (a master's workers gone within a
/// second of its death, a lease given up within D + G).
struct OwnThread: TestTrait, SuiteTrait, TestScoping {
    var inTheBackground = false
    var isRecursive: Bool { true }

    func provideScope(for test: Test, testCase: Test.Case?,
                      performing function: @Sendable () async throws -> Void) async throws {
        // A suite's own scope holds no test body: only its test cases need the thread.
        guard testCase != nil else { return try await function() }
        let executor = inTheBackground ? ThreadPerJob.background : ThreadPerJob.normal
        try await withTaskExecutorPreference(executor) { try await function() }
    }
}

extension Trait where Self == OwnThread {
    /// Each test case on a thread of its own (see `OwnThread`).
    static var ownThread: OwnThread { OwnThread() }
    /// Each test case on a thread of its own at nice +10 (see `OwnThread`).
    static var ownThreadInTheBackground: OwnThread { OwnThread(inTheBackground: true) }
}

/// A task executor that starts a thread for every job it is given. A
/// synchronous test body is one job that may block for a minute; a thread
/// per job costs little beside the processes such a test starts.
final class ThreadPerJob: TaskExecutor {
    static let normal = ThreadPerJob(nice: 0)
    static let background = ThreadPerJob(nice: 10)

    let nice: Int32

    init(nice: Int32) { self.nice = nice }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        Thread { [nice] in
            // "0": on Linux the calling thread, the nice value being per thread.
            if nice != 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice) }
            job.runSynchronously(on: executor)
        }.start()
    }
}
