import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs a CPU-heavy test (thousands of simulated worlds, the hostile-input
/// corpus) on threads of lower priority (nice +10), as many as cores. In
/// `swift test` the black-box tests run beside it, and their masters, guards
/// and workers must get the CPU when they wake: a test that kills a master
/// expects its workers gone within seconds. Off Swift's cooperative pool, the
/// heavy tests also leave its threads to the black-box tests' next steps.
struct InTheBackground: TestTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?,
                      performing function: @Sendable () async throws -> Void) async throws {
        try await withTaskExecutorPreference(NicedThreads.shared) { try await function() }
    }
}

extension Trait where Self == InTheBackground {
    /// On threads of lower priority (see `InTheBackground`).
    static var inTheBackground: InTheBackground { InTheBackground() }
}

/// A task executor with a fixed set of threads at nice +10 that take jobs in
/// the order they come. Raising one's own nice value needs no privilege.
final class NicedThreads: TaskExecutor, @unchecked Sendable {
    static let shared = NicedThreads(count: ProcessInfo.processInfo.activeProcessorCount)

    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    init(count: Int) {
        for _ in 0..<max(count, 1) {
            Thread { [self] in
                // "0": on Linux the calling thread, the nice value being per thread.
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
                while true { take().runSynchronously(on: asUnownedTaskExecutor()) }
            }.start()
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func take() -> UnownedJob {
        condition.lock()
        defer { condition.unlock() }
        while jobs.isEmpty { condition.wait() }
        return jobs.removeFirst()
    }
}
