#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Bellwether

// parse configuration → build the master → run it → exit status (Entry.swift)
exit(Bellwether.main(arguments: CommandLine.arguments))
