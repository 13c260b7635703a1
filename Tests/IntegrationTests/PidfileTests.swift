import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The pidfile as an attacker or a second master sees it: locked while the
/// master runs, never followed through a symbolic link, removed only if ours.
@Suite("Pidfile", .serialized, .ownThread, .timeLimit(.minutes(2)))
struct PidfileTests {
    /// A master that would run the test worker with `pidfile`, to completion or `timeout`.
    static func start(_ pidfile: String, in directory: String, timeout: Double = 10)
        -> (status: Int32, stdout: String, stderr: String)
    {
        Harness.run([Harness.bellwether, "-w", "1", "-p", pidfile, "--lease", "file:\(directory)/second.lock", "--",
                     Harness.testWorker], timeout: timeout)
    }

    /// The lock, not the file's content, tells a running master: with the
    /// content overwritten in place by a pid that is not running, a second
    /// master still refuses, naming the first.
    @Test func aSecondMasterIsRefusedNamingTheRunningOne() throws {
        let directory = Harness.scratch("pidfile-busy")
        let pidfile = directory + "/master.pid"
        let first = Supervisor(["-w", "1", "-p", pidfile], directory: directory, name: "first")
        #expect(Harness.wait { first.settled(workers: 1) }, "\(first.logText())")
        let handle = try #require(FileHandle(forWritingAtPath: pidfile))  // same file, new content
        handle.truncateFile(atOffset: 0)
        handle.write(Data("999999\n".utf8))
        try handle.close()

        let second = Self.start(pidfile, in: directory)
        #expect(second.status == 73, "\(second)")
        #expect(second.stderr == "bellwether: pidfile \(pidfile) is locked by running process \(first.pid); "
            + "is bellwether already running?\n", "\(second.stderr)")
        #expect(first.isRunning())
        #expect(first.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: pidfile), "the first master's own file goes with it")
    }

    /// Masters started together: exactly one runs, the others name it.
    @Test func mastersStartedTogetherLeaveExactlyOneRunning() {
        let directory = Harness.scratch("pidfile-race")
        let pidfile = directory + "/master.pid"
        let masters = (0..<4).map { n in
            Supervisor(["-w", "1", "-p", pidfile], directory: directory, token: directory + "/t\(n).lock",
                       oracle: directory + "/oracle\(n)", name: "m\(n)")
        }
        #expect(Harness.wait(20) { masters.filter { $0.isRunning() }.count <= 1 })
        let running = masters.filter { $0.isRunning() }
        #expect(running.count == 1)
        for master in masters where master !== running.first {
            #expect(master.waitForExit(1) == 73)
            #expect(master.logText().contains("is locked by running process \(running.first?.pid ?? -1)"),
                    "\(master.logText())")
        }
        #expect((try? String(contentsOfFile: pidfile, encoding: .utf8)) == running.first.map { "\($0.pid)\n" })
        #expect(running.first?.stop() == 0)
    }

    /// A symbolic link at the pidfile's path is neither followed nor replaced.
    @Test(arguments: [true, false])
    func aSymbolicLinkIsRefused(targetExists: Bool) throws {
        let directory = Harness.scratch("pidfile-link")
        let pidfile = directory + "/master.pid"
        let target = directory + "/victim"
        if targetExists { try "precious\n".write(toFile: target, atomically: true, encoding: .utf8) }
        #expect(symlink(target, pidfile) == 0)

        let result = Self.start(pidfile, in: directory)
        #expect(result.status == 73, "\(result)")
        #expect(result.stderr == "bellwether: pidfile \(pidfile) is a symbolic link; refusing to follow it\n",
                "\(result.stderr)")
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: pidfile)
        #expect(link == target)
        if targetExists {
            #expect(try String(contentsOfFile: target, encoding: .utf8) == "precious\n")
        } else {
            #expect(!FileManager.default.fileExists(atPath: target))
        }
    }

    /// An unlocked pidfile is a stale one, even if its pid is running now
    /// (pids are reused): replaced, then removed at exit.
    @Test func aStalePidfileIsReplaced() throws {
        let directory = Harness.scratch("pidfile-stale")
        let pidfile = directory + "/master.pid"
        try "1\n".write(toFile: pidfile, atomically: true, encoding: .utf8)
        let master = Supervisor(["-w", "1", "-p", pidfile], directory: directory, name: "stale")
        #expect(Harness.wait { master.settled(workers: 1) }, "\(master.logText())")
        #expect(try String(contentsOfFile: pidfile, encoding: .utf8) == "\(master.pid)\n")
        #expect(master.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: pidfile))
    }

    /// A pidfile someone else put in place of ours is left alone at exit.
    @Test func aPidfileThatIsNoLongerOursIsLeftAtExit() throws {
        let directory = Harness.scratch("pidfile-theirs")
        let pidfile = directory + "/master.pid"
        let master = Supervisor(["-w", "1", "-p", pidfile], directory: directory, name: "theirs")
        #expect(Harness.wait { master.settled(workers: 1) }, "\(master.logText())")
        try "\(master.pid)\n".write(toFile: directory + "/other", atomically: false, encoding: .utf8)
        #expect(rename(directory + "/other", pidfile) == 0)
        #expect(master.stop() == 0)
        #expect(try String(contentsOfFile: pidfile, encoding: .utf8) == "\(master.pid)\n",
                "a file naming our pid, but not the one we wrote, stays")
    }
}
