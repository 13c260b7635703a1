import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The benchmarks drive the binaries directly; a change of their interface
/// must break a test, not leave `bench/run` waiting for ever.
@Suite("Benchmark harness", .ownThreadInTheBackground)
struct BenchHarnessTests {
    /// bench/failover.c spawns `bellwether-exec` by hand (MASTER_PID
    /// CREDENTIALS PATH ARGV0 …) and kills a scheduler under a real master.
    @Test func theFailoverBenchmarkRunsAgainstTheseBinaries() {
        let directory = Harness.scratch("benchfailover")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let binary = directory + "/failover"
        let compile = Harness.run(["/usr/bin/env", "cc", "-O2", "-o", binary, Harness.packageRoot + "/bench/failover.c"],
                                  timeout: 60)
        #expect(compile.status == 0, "\(compile.stderr)")
        // Its master's control socket goes to the scratch directory.
        let run = Harness.run([binary, Harness.bellwether, Harness.shim, Harness.testWorker, "2"],
                              environment: ["XDG_RUNTIME_DIR": directory], timeout: 60)
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.stdout.split(separator: "\n")
        for name in ["warm", "shim", "self", "death", "bare", "fail"] {
            #expect(lines.contains { $0.hasPrefix(name + " ") && $0.contains(" n=2 ") }, "\(run.stdout)")
        }
    }
}
