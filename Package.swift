// swift-tools-version:6.0
import PackageDescription

// No package dependencies: the toolchain's stdlib, Glibc and Testing only.
let package = Package(
    name: "bellwether",
    products: [
        .executable(name: "bellwether", targets: ["bellwether"]),
        .executable(name: "bellwether-exec", targets: ["bellwether-exec"]),
    ],
    targets: [
        // C shims for what Swift cannot call: variadic prctl, signalfd,
        // wait-status macros, posix_spawn attribute plumbing; and the hashes
        // PostgreSQL login needs (crypto.c), so that no crypto library is linked.
        // TLS (tls.c) goes through the system's libssl, loaded with dlopen only
        // when a lease asks for it: nothing new to link (dlopen is in glibc).
        .target(name: "CBellwether"),
        // The library: a pure core (decisions) and a system shell (syscalls).
        .target(name: "Bellwether", dependencies: ["CBellwether"]),
        // main.swift: parse, run, exit code.
        .executableTarget(name: "bellwether", dependencies: ["Bellwether"]),
        // The per-worker guard, spawned in place of the app (Sources/bellwether-exec/main.c).
        // On Linux x86_64/aarch64 it has its own entry point and makes raw system
        // calls: no loader, no libc start-up, no Swift runtime. SwiftPM links it
        // through swiftc, which would add the Swift runtime, so the flags take it
        // out again: -static-executable links statically (no interpreter, no
        // dynamic section); swiftc's -nostartfiles drops swiftrt.o, whose
        // references are what pulled in libswiftCore (9.4 MB, 30,919 Swift
        // symbols); clang's -nostdlib drops libc, libgcc and the C start files.
        // The Swift archives swiftc still names go unused (nm shows only the three
        // pthread names its static-executable arguments mark undefined, which
        // nothing references), and an implicit call into libc is a link error
        // rather than a crash. About 8 KB of code,
        // asserted in Tests/IntegrationTests/GuardBinaryTests.swift; start cost
        // measured in bench/failover.c; the reasons are in the README.
        .executableTarget(
            name: "bellwether-exec",
            cSettings: [.unsafeFlags(["-fno-stack-protector", "-ffreestanding", "-fno-builtin", "-O2"], .when(platforms: [.linux]))],
            linkerSettings: [
                .unsafeFlags(["-static-executable", "-nostartfiles", "-Xclang-linker", "-nostdlib", "-Xlinker", "--gc-sections"],
                             .when(platforms: [.linux]))
            ]
        ),
        // A test worker that records what it was given and guards the oracle lock.
        .executableTarget(name: "bellwether-testworker", path: "Tests/TestWorker"),
        // What both test targets share (the seeded random generator). Not a
        // product, and no shipped binary depends on it.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "BellwetherTests", dependencies: ["Bellwether", "TestSupport"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["bellwether", "bellwether-exec", "bellwether-testworker", "TestSupport", "CBellwether"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
