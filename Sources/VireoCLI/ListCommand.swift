import ArgumentParser
import VMMCommand
import Manager

/// `vireo ls [--json]`: every VM, as a table or as the API's JSON.
struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List VMs.", aliases: ["list"])

    @Flag(name: .long, help: "Print the API's JSON array instead of a table.")
    var json = false

    @OptionGroup var options: ClientOptions

    func run() throws {
        let reply = try DaemonCall.send(options, "GET", "/vms")
        guard let vms = reply.json?.arrayValue else { throw DaemonCall.failure("the daemon sent a list that is not JSON") }
        if json {
            print(JSONValue.array(vms).prettySerialized())
            return
        }
        let header = ["NAME", "STATE", "CPUS", "MEMORY", "UPTIME", "RESTART", "AUTOSTART", "PID", "EXIT"]
        let rows = vms.map { vm -> [String] in
            [
                vm["name"]?.stringValue ?? "?",
                vm["state"]?.stringValue ?? "?",
                vm["cpus"]?.intValue.map(String.init) ?? "?",
                vm["memoryMiB"]?.intValue.map(ListCommand.memory) ?? "?",
                ListCommand.duration(vm["uptimeSeconds"]),
                vm["restartPolicy"]?.stringValue ?? "?",
                vm["autostart"]?.boolValue == true ? "yes" : "no",
                vm["pid"]?.intValue.map(String.init) ?? "-",
                // The last run's status: the program's own for an image VM.
                vm["lastExit"]?["status"]?.intValue.map(String.init) ?? "-",
            ]
        }
        print(ListCommand.table([header] + rows), terminator: "")
    }

    static func table(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        let widths = first.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index] + 2)
            }.joined()
        }.joined(separator: "\n") + "\n"
    }

    static func memory(_ mib: Int64) -> String {
        mib % 1024 == 0 ? "\(mib / 1024)G" : "\(mib)M"
    }

    static func duration(_ value: JSONValue?) -> String {
        let seconds: Int
        switch value {
        case let .double(d)?: seconds = Int(d)
        case let .int(i)?: seconds = Int(i)
        default: return "-"
        }
        if seconds < 60 { return "\(seconds)s" }
        if seconds < 3600 { return "\(seconds / 60)m\(seconds % 60)s" }
        if seconds < 86400 { return "\(seconds / 3600)h\(seconds % 3600 / 60)m" }
        return "\(seconds / 86400)d\(seconds % 86400 / 3600)h"
    }
}

extension String {
    func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}

/// `vireo inspect NAME`: one VM as JSON, with its VMM's live status.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Show a VM as JSON (definition, state, VMM status).")

    @Argument(help: "VM name.") var name: String
    @OptionGroup var options: ClientOptions

    func run() throws {
        let reply = try DaemonCall.send(options, "GET", "/vms/\(DaemonCall.path(name))")
        guard let vm = reply.json else { throw DaemonCall.failure("the daemon sent a VM that is not JSON") }
        print(vm.prettySerialized())
    }
}
