import ArgumentParser
import VMMCommand
import Manager
#if canImport(Glibc)
import Glibc
#endif

/// `--socket`, shared by every command that talks to the daemon.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The daemon's socket (default: $VIREO_SOCKET or \(DaemonConfiguration.defaultSocketPath)).", valueName: "path"))
    var socket: String?

    var socketPath: String {
        if let socket { return socket }
        if let path = getenv("VIREO_SOCKET"), let text = String(validatingCString: path), !text.isEmpty { return text }
        return DaemonConfiguration.defaultSocketPath
    }

    var client: UnixHTTPClient { UnixHTTPClient(socketPath: socketPath) }
}

/// Calls the daemon and turns failures into the CLI's exit codes: a 4xx (the request was wrong)
/// is bad input, exit 2; an unreachable daemon or a 5xx is a failure, exit 1.
enum DaemonCall {
    /// Sends a request; returns the reply if it is 2xx, otherwise exits as above.
    static func send(_ options: ClientOptions, _ method: String, _ path: String, json: JSONValue? = nil, timeout: Double = 300) throws -> HTTPReply {
        let reply: HTTPReply
        do {
            if let json {
                reply = try options.client.send(method, path, json: json, timeout: timeout)
            } else {
                reply = try options.client.send(method, path, timeout: timeout)
            }
        } catch {
            throw failure("\(error)")
        }
        try check(reply)
        return reply
    }

    static func check(_ reply: HTTPReply) throws {
        guard !(200..<300).contains(reply.status) else { return }
        if (400..<500).contains(reply.status) { throw UsageError(reply.errorMessage) }
        throw failure(reply.errorMessage)
    }

    /// Prints `message` and ends with exit status 1.
    static func failure(_ message: String) -> VMExit {
        printError("vireo: \(message)\n")
        return VMExit(code: 1)
    }

    /// Percent-encodes a query value.
    static func query(_ value: String) -> String {
        var out = ""
        for byte in value.utf8 {
            if (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2D || byte == 0x2E || byte == 0x5F {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// A VM name as it goes in a URL path: names the daemon would refuse are sent encoded, so that
    /// its message (not a confusing 404) tells the user what is wrong.
    static func path(_ name: String) -> String { query(name) }
}

/// Writes bytes to stdout unbuffered.
func writeOut(_ bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
        if written < 0 { if errno == EINTR { continue }; return }
        offset += written
    }
}
