import Crypto
import Foundation

/// The shim's command line as containerd 1.6 gives it (Go flag syntax: `-name value` or
/// `-name=value`, one or two dashes), then the action: `start`, `delete`, or none (serve).
struct ShimArguments {
    var namespace = ""
    var address = ""
    var publishBinary = ""
    var id = ""
    var bundle = ""
    var debug = false
    var action = ""
    /// The pod's sandbox id when this container belongs to a pod (`start` reads it from the
    /// bundle's annotations): the pod's containers share the sandbox's shim, so its socket.
    var group = ""

    static func parse(_ arguments: [String]) throws -> ShimArguments {
        var parsed = ShimArguments()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-") else {
                guard parsed.action.isEmpty else { throw ShimUsage("unexpected argument \(argument)") }
                parsed.action = argument
                continue
            }
            var name = String(argument.drop { $0 == "-" })
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if name == "debug" { parsed.debug = value.map { $0 != "false" } ?? true; continue }
            if name == "v" || name == "version" { parsed.action = "version"; continue }
            if value == nil {
                guard index < arguments.count else { throw ShimUsage("flag -\(name) needs a value") }
                value = arguments[index]
                index += 1
            }
            switch name {
            case "namespace": parsed.namespace = value!
            case "address": parsed.address = value!
            case "publish-binary": parsed.publishBinary = value!
            case "id": parsed.id = value!
            case "bundle": parsed.bundle = value!
            case "socket", "systemd-cgroup", "criu": break  // older containerds' flags: no meaning here
            default: throw ShimUsage("unknown flag -\(name)")
            }
        }
        guard ["", "start", "delete", "version"].contains(parsed.action) else { throw ShimUsage("unknown action \(parsed.action)") }
        if parsed.action != "version" {
            guard !parsed.id.isEmpty, !parsed.namespace.isEmpty else { throw ShimUsage("-id and -namespace are required") }
            guard !parsed.id.contains("/"), parsed.id != "..", parsed.id != "." else { throw ShimUsage("bad -id \(parsed.id)") }
        }
        return parsed
    }

    /// The serving shim's socket: next to containerd's socket when the path fits in sun_path, else
    /// under /run/vireo-shim; named by a hash of containerd's address, the namespace and the id.
    var socketPath: String {
        let hash = SHA256.hash(data: Data("\(address)|\(namespace)|\(group.isEmpty ? id : group)".utf8)).prefix(16).map { String(format: "%02x", $0) }.joined()
        let near = (address as NSString).deletingLastPathComponent + "/vireo-shim/\(hash).sock"
        return !address.isEmpty && near.utf8.count <= UnixSocket.maximumPath ? near : "/run/vireo-shim/\(hash).sock"
    }

    /// Where `vireo` keeps its image cache and warm-start snapshots (its own default, or $VIREO_STATE_DIR).
    static var stateDirectory: String {
        if let path = ProcessInfo.processInfo.environment["VIREO_STATE_DIR"], !path.isEmpty { return path }
        return "/var/lib/vireo"
    }
}

struct ShimUsage: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
