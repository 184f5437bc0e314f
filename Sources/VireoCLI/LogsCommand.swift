import ArgumentParser
import VMMCommand
import Manager

/// `vireo logs NAME [-f] [--tail N]`: the VM's console log, kept by the daemon across runs.
struct LogsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Print a VM's console log (-f to follow).")

    @Argument(help: "VM name.") var name: String
    @Flag(name: [.short, .long], help: "Keep printing new console output.") var follow = false
    @Option(name: .long, help: ArgumentHelp("Only the last N lines.", valueName: "n")) var tail: Int?
    @OptionGroup var options: ClientOptions

    func run() throws {
        var query: [String] = []
        if follow { query.append("follow=true") }
        if let tail { query.append("tail=\(tail)") }
        let path = "/vms/\(DaemonCall.path(name))/logs" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        try stream(options, path)
    }
}

/// `vireo events [--since ID] [--vm NAME]`: lifecycle events as JSON lines, as they happen.
struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "Print lifecycle events as JSON lines as they happen.")

    @Option(name: .long, help: ArgumentHelp("First replay the stored events after this id (0: all).", valueName: "id")) var since: Int?
    @Option(name: .long, help: ArgumentHelp("Only this VM's events.", valueName: "name")) var vm: String?
    @OptionGroup var options: ClientOptions

    func run() throws {
        var query: [String] = []
        if let since { query.append("since=\(since)") }
        if let vm { query.append("vm=\(DaemonCall.query(vm))") }
        try stream(options, "/events" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
    }
}

/// Copies a streaming reply to stdout as it arrives.
private func stream(_ options: ClientOptions, _ path: String) throws {
    let reply: HTTPReply
    do {
        reply = try options.client.stream("GET", path) { chunk in
            writeOut(chunk)
            return true
        }
    } catch {
        throw DaemonCall.failure("\(error)")
    }
    try DaemonCall.check(reply)
}
