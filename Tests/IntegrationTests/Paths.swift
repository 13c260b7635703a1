import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `bellwether` binary with real child processes and reads
/// what the test workers recorded. Every wait is bounded. Its parts, one file
/// each: where the binaries are (here), processes (Processes.swift),
/// spawning (Spawning.swift); the fixtures are `Supervisor`, `WorkerRecord`
/// and `LoadClient`.
enum Harness {
    /// The directory holding the built products (beside the test bundle).
    static let productsDirectory: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let own = String(decoding: buffer[0..<max(length, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var directory = (own as NSString).deletingLastPathComponent
        // The XCTest bundle on Linux is a plain executable in the products directory.
        while !FileManager.default.fileExists(atPath: directory + "/bellwether") && directory.count > 1 {
            directory = (directory as NSString).deletingLastPathComponent
        }
        return directory
    }()

    static var bellwether: String { productsDirectory + "/bellwether" }
    static var testWorker: String { productsDirectory + "/bellwether-testworker" }
    static var shim: String { productsDirectory + "/bellwether-exec" }

    /// The package's own directory (README, man page, bench/).
    static let packageRoot: String = {
        var directory = productsDirectory
        while !FileManager.default.fileExists(atPath: directory + "/Package.swift") && directory.count > 1 {
            directory = (directory as NSString).deletingLastPathComponent
        }
        return directory
    }()

    /// A fresh scratch directory.
    static func scratch(_ name: String) -> String {
        let path = NSTemporaryDirectory() + "bellwether-it-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
