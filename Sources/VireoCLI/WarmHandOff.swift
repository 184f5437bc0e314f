import Foundation
import Images
import VMMCommand

/// The host's half of a warm start's hand-off (see guest/image-init.c): once the restoring VMM has
/// created its vsock socket, connects to the init's port 1025 and sends one line with the host's
/// wall clock and a fresh 32-byte seed; the init answers "OK" when it has set the clock and reseeded
/// its CRNG, and goes on to read the run's config disk. If the guest never answers, the VM is stopped.
final class WarmHandOff: Sendable {
    static let port = 1025
    let socket: String
    let verbose: Bool
    let key: String

    init(socket: String, key: String, verbose: Bool) {
        self.socket = socket
        self.key = key
        self.verbose = verbose
    }

    /// Starts the hand-off to the VMM `pid` on a thread of its own.
    func start(vmm pid: pid_t, since started: Date) {
        let thread = Thread { [self] in
            let outcome = deliver(vmm: pid, since: started)
            if case let .failure(error) = outcome {
                // Not when the VMM has ended: the parent may have reaped it and its pid be reused.
                let running = kill(pid, 0) == 0
                printError("vireo: warm start: \(error)\(running ? "; stopping the VM" : "")\n")
                if running { kill(pid, SIGTERM) }
            } else if verbose, case let .success(seconds) = outcome {
                printError("vireo: warm start: restored the cached snapshot \(key.prefix(12)); the guest took its workload \(Int(seconds * 1000)) ms after the VMM started\n")
            }
        }
        thread.start()
    }

    private func deliver(vmm pid: pid_t, since started: Date) -> Result<Double, ImageError> {
        // The VMM restores in milliseconds; the guest kernel's answer can take seconds on an emulated host.
        let deadline = Date().addingTimeInterval(120)
        var connection: UnixLineSocket?
        while connection == nil {
            guard kill(pid, 0) == 0 else { return .failure(ImageError("the VMM ended before the restored guest got its workload")) }
            guard Date() < deadline else { return .failure(ImageError("the VMM's vsock socket \(socket) never appeared")) }
            connection = UnixLineSocket(path: socket)
            if connection == nil { usleep(1000) }
        }
        guard let connection else { return .failure(ImageError("unreachable")) }
        defer { connection.close() }
        guard connection.write("CONNECT \(WarmHandOff.port)\n"),
              connection.readLine(timeout: deadline.timeIntervalSinceNow, limit: 64)?.hasPrefix("OK") == true else {
            return .failure(ImageError("the restored guest's init does not listen on vsock port \(WarmHandOff.port)"))
        }
        guard connection.write(WarmHandOff.line()),
              connection.readLine(timeout: deadline.timeIntervalSinceNow, limit: 64) == "OK" else {
            return .failure(ImageError("the restored guest did not take its workload"))
        }
        return .success(Date().timeIntervalSince(started))
    }

    /// "VIREOGO1 <seconds> <nanoseconds> <64 hex digits>\n": the wall clock now and 32 random bytes.
    static func line() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var random = SystemRandomNumberGenerator()  // getrandom(2)
        let seed = (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) }
        let hex = seed.map { String(format: "%02x", $0) }.joined()
        return "VIREOGO1 \(now.tv_sec) \(now.tv_nsec) \(hex)\n"
    }
}
