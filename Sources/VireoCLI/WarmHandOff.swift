import Foundation
import Images
import VMMCommand

/// The host's half of a warm start's hand-off (see guest/image-init.c): once the restoring VMM has
/// created its vsock socket, connects to the init's port 1025 and sends one line with the host's
/// wall clock and a fresh 32-byte seed; the init answers "OK" when it has set the clock and reseeded
/// its CRNG, and goes on to read the run's config disk. If the guest never answers, the VM is stopped.
/// With a `preparation` it first sends the prepare line, waits for "READY", and has the image's
/// snapshot taken before the run's line (a failure there costs only the snapshot: one line says why).
/// A prepared guest (the image's snapshot, or this run's after READY) takes the run's line on port 1027.
final class WarmHandOff: Sendable {
    static let port = 1025
    /// Where a guest that prepared for an image snapshot takes its run hand-off (see guest/image-init.c).
    static let preparedPort = 1027
    let socket: String
    let verbose: Bool
    let key: String
    /// Whether the restored snapshot is the image's own.
    let image: Bool
    let preparation: ImagePreparation?
    /// Signalled when the hand-off thread is done (an image snapshot committed or abandoned).
    private let done = DispatchSemaphore(value: 0)

    init(socket: String, key: String, verbose: Bool, image: Bool = false, preparation: ImagePreparation? = nil) {
        self.socket = socket
        self.key = key
        self.verbose = verbose
        self.image = image
        self.preparation = preparation
    }

    /// Starts the hand-off to the VMM `pid` on a thread of its own.
    func start(vmm pid: pid_t, since started: Date) {
        let thread = Thread { [self] in
            defer { done.signal() }
            let deadline = Date().addingTimeInterval(120)
            var prepared: String?
            var ready = false
            if let preparation {
                (ready, prepared) = prepare(preparation, vmm: pid, deadline: deadline)
            }
            let port = image || ready ? WarmHandOff.preparedPort : WarmHandOff.port
            let outcome = deliver(WarmHandOff.line(), expecting: "OK", to: port, vmm: pid, deadline: deadline)
            if case let .failure(error) = outcome {
                // Not when the VMM has ended: the parent may have reaped it and its pid be reused.
                let running = kill(pid, 0) == 0
                printError("vireo: warm start: \(error)\(running ? "; stopping the VM" : "")\n")
                if running { kill(pid, SIGTERM) }
            } else if verbose {
                let seconds = Date().timeIntervalSince(started)
                let what = image ? "the image snapshot" : "the cached snapshot"
                printError("vireo: warm start: restored \(what) \(key.prefix(12)); the guest took its workload \(Int(seconds * 1000)) ms after the VMM started\(prepared.map { "; \($0)" } ?? "")\n")
            }
            if let preparation, prepared != nil {
                do { try preparation.commit() } catch {
                    printError("vireo: warm start: cannot keep the image snapshot: \(error)\n")
                    preparation.abandon()
                }
            }
        }
        thread.start()
    }

    /// Waits (bounded) for the hand-off thread, so that an image snapshot is committed before we exit.
    func finish() { _ = done.wait(timeout: .now() + 10) }

    /// The prepare step: whether the guest said READY (it then listens on the prepared port), and
    /// what was made (for -v), or nil after one line saying why nothing was.
    private func prepare(_ preparation: ImagePreparation, vmm pid: pid_t, deadline: Date) -> (Bool, String?) {
        let started = Date()
        var outcome = deliver(preparation.line(), expecting: "READY", to: WarmHandOff.port, vmm: pid, deadline: deadline)
        let ready: Bool
        if case .success = outcome { ready = true } else { ready = false }
        if ready {
            do { try preparation.capture() } catch { outcome = .failure(ImageError("\(error)")) }
        }
        if case let .failure(error) = outcome {
            printError("vireo: warm start: could not make the image snapshot (\(error)); running on\n")
            preparation.abandon()
            return (ready, nil)
        }
        return (ready, "made the image snapshot \(preparation.key.prefix(12)) in \(Int(Date().timeIntervalSince(started) * 1000)) ms")
    }

    /// Connects to the init's port, sends `line` and waits for the `expected` answer.
    private func deliver(_ line: String, expecting expected: String, to port: Int, vmm pid: pid_t, deadline: Date) -> Result<Void, ImageError> {
        // The VMM restores in milliseconds; the guest kernel's answer can take seconds on an emulated host.
        var connection: UnixLineSocket?
        while connection == nil {
            guard kill(pid, 0) == 0 else { return .failure(ImageError("the VMM ended before the restored guest got its workload")) }
            guard Date() < deadline else { return .failure(ImageError("the VMM's vsock socket \(socket) never appeared")) }
            connection = UnixLineSocket(path: socket)
            if connection == nil { usleep(1000) }
        }
        guard let connection else { return .failure(ImageError("unreachable")) }
        defer { connection.close() }
        guard connection.write("CONNECT \(port)\n"),
              connection.readLine(timeout: deadline.timeIntervalSinceNow, limit: 64)?.hasPrefix("OK") == true else {
            return .failure(ImageError("the restored guest's init does not listen on vsock port \(port)"))
        }
        guard connection.write(line),
              connection.readLine(timeout: deadline.timeIntervalSinceNow, limit: 64) == expected else {
            return .failure(ImageError(expected == "OK" ? "the restored guest did not take its workload" : "the restored guest did not get ready for the image snapshot"))
        }
        return .success(())
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
