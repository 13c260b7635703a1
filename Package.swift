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
        // wait-status macros, posix_spawn attribute plumbing.
        .target(name: "CBellwether"),
        // The library: a pure core (decisions) and a system shell (syscalls).
        .target(name: "Bellwether", dependencies: ["CBellwether"]),
        // main.swift: parse, run, exit code.
        .executableTarget(name: "bellwether", dependencies: ["Bellwether"]),
        // The exec shim spawned in place of the app: PDEATHSIG, parent check, execve.
        .executableTarget(name: "bellwether-exec"),
        // A test worker that records what it was given and guards the oracle lock.
        .executableTarget(name: "bellwether-testworker"),
        .testTarget(name: "BellwetherTests", dependencies: ["Bellwether"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["bellwether", "bellwether-exec", "bellwether-testworker"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
