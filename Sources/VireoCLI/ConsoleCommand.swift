import ArgumentParser
import VMMCommand
import Foundation
import Manager
#if canImport(Glibc)
import Glibc
#endif

/// `vireo console NAME`: the VM's serial console on this terminal, through the daemon.
struct ConsoleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Attach to a VM's serial console (detach with Ctrl-]).",
        discussion: "Everything typed, Ctrl-C included, goes to the guest. Ctrl-] detaches; the VM keeps running.")

    @Argument(help: "VM name.") var name: String
    @OptionGroup var options: ClientOptions

    /// Ctrl-]: the telnet/virsh escape.
    static let detachByte: UInt8 = 0x1D

    func run() throws {
        let connection: HTTPConnection
        let status: Int
        do {
            connection = try options.client.openDuplex("POST", "/vms/\(DaemonCall.path(name))/console")
            (status, _) = try connection.readHead()
        } catch {
            throw DaemonCall.failure("\(error)")
        }
        defer { connection.close() }
        guard status == 200 else {
            var body: [UInt8] = []
            while let chunk = try? connection.readBody() { body += chunk }
            try DaemonCall.check(HTTPReply(status: status, headers: [], body: body))
            return
        }
        let terminal = ConsoleTerminal()
        if terminal.enter() {
            printError("vireo: connected to \(name)'s console; detach with Ctrl-]\r\n")
        }
        defer { terminal.restore() }

        // Keyboard → daemon on a thread of its own; console output → stdout here.
        let input = Thread {
            var buffer = [UInt8](repeating: 0, count: 1024)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 {
                    // End of input (a pipe): let the guest's answer arrive, then detach.
                    usleep(300_000)
                    break
                }
                let chunk = buffer[0..<count]
                if let escape = chunk.firstIndex(of: ConsoleCommand.detachByte) {
                    try? connection.sendChunk(Array(chunk[..<escape]))
                    break
                }
                do { try connection.sendChunk(Array(chunk)) } catch { return }
            }
            try? connection.finishBody()
        }
        input.start()
        while let chunk = try? connection.readBody() { writeOut(chunk) }
        if terminal.isActive { printError("\r\nvireo: detached from \(name)\r\n") }
    }
}

/// Raw mode for the console, with signals off too: Ctrl-C belongs to the guest here.
final class ConsoleTerminal {
    private var saved = termios()
    private(set) var isActive = false

    func enter() -> Bool {
        guard isatty(0) == 1, tcgetattr(0, &saved) == 0 else { return false }
        var raw = saved
        cfmakeraw(&raw)
        raw.c_oflag |= tcflag_t(OPOST | ONLCR)  // bare "\n" from the guest still starts a new line, as in `vireo run`
        guard tcsetattr(0, TCSANOW, &raw) == 0 else { return false }
        isActive = true
        return true
    }

    func restore() {
        guard isActive else { return }
        tcsetattr(0, TCSANOW, &saved)
        isActive = false
    }
}
