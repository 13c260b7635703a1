import Foundation
import Testing

/// Runs each test of a suite on a thread of its own, off Swift's cooperative
/// pool. The black-box tests block: they wait on real processes (`usleep`,
/// `waitpid`), and a blocking test holds one of the pool's threads, of which
/// there are as many as cores. On two cores only two of them ran at a time,
/// each waiting most of its time, and the unit tests waited behind them.
/// On threads of their own, the suites wait side by side; `.serialized`
/// still runs a suite's tests one after another.
struct OwnThread: TestTrait, SuiteTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(for test: Test, testCase: Test.Case?,
                      performing function: @Sendable () async throws -> Void) async throws {
        // A suite's own scope holds no test body: only its test cases need the thread.
        guard testCase != nil else { return try await function() }
        try await withTaskExecutorPreference(ThreadPerJob.shared) { try await function() }
    }
}

extension Trait where Self == OwnThread {
    /// Each test case on a thread of its own (see `OwnThread`).
    static var ownThread: OwnThread { OwnThread() }
}

/// A task executor that starts a thread for every job it is given. A
/// synchronous test body is one job that may block for a minute; a thread
/// per job costs little beside the processes such a test starts.
final class ThreadPerJob: TaskExecutor {
    static let shared = ThreadPerJob()

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        Thread { job.runSynchronously(on: executor) }.start()
    }
}
