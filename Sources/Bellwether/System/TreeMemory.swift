/// `--max-worker-memory`: what a worker's whole process tree costs, read
/// from /proc. The guard is a child subreaper, so every process the app
/// starts — forked workers, `setsid` daemons, their orphans — stays below it.
///
/// Each process counts its proportional set size (PSS, from
/// `smaps_rollup`): a page shared by a forked server's processes is split
/// between them rather than counted once per process, so a tree's sum is
/// what it really holds. Where `smaps_rollup` cannot be read (a kernel
/// before 4.14, or a process this master may not trace) the resident set
/// (`statm`) stands in. Only read on the sampling timer, which is armed only
/// when a memory limit is set.
enum TreeMemory {
    /// No tree walk goes past this many processes.
    static let maximumProcesses = 4096

    /// The bytes used by `root` and its descendants; nil when `root` is gone.
    static func bytes(ofTree root: Int32) -> Int? {
        #if os(Linux)
        var total = 0
        var seen: Set<Int32> = []
        var pending = [root]
        while let pid = pending.popLast(), seen.count < maximumProcesses {
            guard seen.insert(pid).inserted, let used = bytes(of: pid) else {
                if pid == root { return nil }
                continue
            }
            total += used
            pending += children(of: pid)
        }
        return total
        #else
        return nil
        #endif
    }

    /// One process's PSS, or its RSS where PSS cannot be read; nil when gone.
    static func bytes(of pid: Int32) -> Int? {
        if let rollup = try? Sys.readFile("/proc/\(pid)/smaps_rollup", limit: 8192),
           let pss = kilobytes("Pss:", in: rollup) {
            return pss * 1024
        }
        guard let statm = try? Sys.readFile("/proc/\(pid)/statm", limit: 4096) else { return nil }
        let fields = statm.split(separator: UInt8(ascii: " "))
        guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return nil }
        return pages * Sys.calls.pageSize()
    }

    /// The value of a `Name:   123 kB` line of a /proc file.
    static func kilobytes(_ name: String, in text: [UInt8]) -> Int? {
        for line in text.split(separator: UInt8(ascii: "\n")) where line.starts(with: name.utf8) {
            let words = line.dropFirst(name.utf8.count).split(separator: UInt8(ascii: " "))
            return words.first.flatMap { Int(String(decoding: $0, as: UTF8.self)) }
        }
        return nil
    }

    /// The children of every thread of `pid` (a thread that forked is the
    /// parent, so the main thread's list alone may miss some).
    static func children(of pid: Int32) -> [Int32] {
        Sys.entries("/proc/\(pid)/task").flatMap { task -> [Int32] in
            guard let list = try? Sys.readFile("/proc/\(pid)/task/\(task)/children", limit: 1 << 16) else { return [] }
            return list.split(separator: UInt8(ascii: " ")).compactMap { Int32(String(decoding: $0, as: UTF8.self)) }
        }
    }
}
