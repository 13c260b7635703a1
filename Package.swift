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
        // Its own entry point and raw system calls on Linux x86_64/aarch64,
        // linked statically without start files: no loader, no libc start-up.
        // Measured in bench/failover.sh; the reasons are in the README.
        .executableTarget(
            name: "bellwether-exec",
            cSettings: [.unsafeFlags(["-fno-stack-protector", "-ffreestanding", "-fno-builtin", "-O2"], .when(platforms: [.linux]))],
            linkerSettings: [
                .unsafeFlags(["-static-executable", "-Xclang-linker", "-nostartfiles", "-Xlinker", "--gc-sections"], .when(platforms: [.linux]))
            ]
        ),
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
