import Foundation
import Images

/// Runs this same binary as a child (`vireo run …`) with our stdio, forwarding termination signals
/// to it, and returns its exit status (128+N when killed by signal N).
enum VMMChild {
    nonisolated(unsafe) private static var child: pid_t = 0
    static let forwarded: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT]

    static func run(_ arguments: [String]) throws -> Int32 {
        let executable = "/proc/self/exe"
        let argv = (["vireo"] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, nil, nil, argv, environ)
        guard result == 0 else { throw ImageError("cannot start the VMM: \(String(cString: strerror(result)))") }
        child = pid
        for signal in forwarded {
            Glibc.signal(signal) { number in if VMMChild.child > 0 { kill(VMMChild.child, number) } }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw ImageError("waitpid: \(String(cString: strerror(errno)))") }
        }
        child = 0
        for signal in forwarded { Glibc.signal(signal, SIG_DFL) }
        let low = status & 0x7f
        return low == 0 ? (status >> 8) & 0xff : 128 + low
    }
}
