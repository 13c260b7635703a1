import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The benchmarks drive the binaries directly; a change of their interface
/// must break a test, not leave `bench/run` waiting for ever.
@Suite("Benchmark harness")
struct BenchHarnessTests {
    /// bench/failover.c spawns `bellwether-exec` by hand (MASTER_PID
    /// CREDENTIALS PATH ARGV0 …) and kills a scheduler under a real master.
    @Test func theFailoverBenchmarkRunsAgainstTheseBinaries() {
        let directory = Harness.scratch("benchfailover")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let binary = directory + "/failover"
        let compile = Harness.run(["/usr/bin/cc", "-O2", "-o", binary, Harness.packageRoot + "/bench/failover.c"],
                                  timeout: 60)
        #expect(compile.status == 0, "\(compile.stderr)")
        let run = Harness.run([binary, Harness.bellwether, Harness.shim, Harness.testWorker, "2"], timeout: 60)
        #expect(run.status == 0, "\(run.stderr)")
        for name in ["warm", "shim", "self", "death", "bare", "fail"] {
            #expect(run.stdout.contains("\(name) ") && run.stdout.contains("n=2"), "\(run.stdout)")
        }
    }
}
