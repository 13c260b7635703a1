import Foundation
import Testing

/// `bellwether-exec` starts every worker and stays beside it as its guard, so
/// it must be the small C program it is. SwiftPM links it through swiftc, which
/// adds the Swift runtime unless Package.swift's flags keep it out; a change
/// there that lets it back in (9.4 MB and 30,919 Swift symbols, as it once
/// was) fails here.
@Suite("Guard binary")
struct GuardBinaryTests {
    #if os(Linux) && (arch(x86_64) || arch(arm64))
    @Test func theGuardIsSmallStaticAndCarriesNoSwiftRuntime() throws {
        let bytes = try #require(FileManager.default.contents(atPath: Harness.shim), "cannot read \(Harness.shim)")
        let elf = try #require(ELFImage(Array(bytes)), "\(Harness.shim) is not a 64-bit ELF file")

        #expect(bytes.count < 64 * 1024, "\(Harness.shim) is \(bytes.count) bytes")
        #expect(!elf.segmentTypes.contains(ELFImage.interpreter), "it asks for a dynamic loader")
        #expect(!elf.segmentTypes.contains(ELFImage.dynamic), "it has a dynamic section")
        // The guard's own symbols are there, so the check below looks at something.
        let names = elf.symbolNames
        #expect(names.contains("_start") && names.contains("shim_main"), "no symbol table to check")
        let swift = names.filter { $0.hasPrefix("$s") || $0.hasPrefix("_$s") || $0.hasPrefix("swift_") }
        #expect(swift.isEmpty, "\(swift.count) Swift symbols, such as \(swift.prefix(3))")
    }
    #endif
}

/// What the test needs of a little-endian ELF64 file: its program header types
/// and the names in its symbol table.
private struct ELFImage {
    static let dynamic: UInt32 = 2  // PT_DYNAMIC
    static let interpreter: UInt32 = 3  // PT_INTERP
    private static let symbolTable: UInt32 = 2  // SHT_SYMTAB

    let segmentTypes: [UInt32]
    let symbolNames: Set<String>

    init?(_ bytes: [UInt8]) {
        guard bytes.count >= 64, bytes[0..<4] == [0x7f, 0x45, 0x4c, 0x46], bytes[4] == 2, bytes[5] == 1 else {
            return nil
        }
        func integer(_ offset: Int, _ size: Int) -> Int {
            guard offset >= 0, offset + size <= bytes.count else { return 0 }
            return (0..<size).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) }
        }
        let programHeaders = integer(0x20, 8), sectionHeaders = integer(0x28, 8)
        segmentTypes = (0..<integer(0x38, 2)).map {
            UInt32(integer(programHeaders + $0 * integer(0x36, 2), 4))
        }
        var names = Set<String>()
        let sectionSize = integer(0x3a, 2)
        for index in 0..<integer(0x3c, 2) {
            let section = sectionHeaders + index * sectionSize
            guard UInt32(integer(section + 4, 4)) == Self.symbolTable else { continue }
            let table = integer(section + 0x18, 8), tableSize = integer(section + 0x20, 8)
            let entrySize = max(integer(section + 0x38, 8), 24)
            let strings = integer(sectionHeaders + integer(section + 0x28, 4) * sectionSize + 0x18, 8)
            for entry in stride(from: table, to: table + tableSize, by: entrySize) {
                let start = strings + integer(entry, 4)
                var end = start
                while end < bytes.count && bytes[end] != 0 { end += 1 }
                if end > start { names.insert(String(decoding: bytes[start..<end], as: UTF8.self)) }
            }
        }
        symbolNames = names
    }
}
