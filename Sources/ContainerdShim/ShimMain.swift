import ContainerdShimAPI
import Foundation
import SwiftProtobuf

/// `containerd-shim-vireo-v2`: containerd's shim v2 for Vireo microVMs (docs/containerd.md).
public enum ShimMain {
    public static func main(_ arguments: [String]) -> Never {
        let parsed: ShimArguments
        do { parsed = try ShimArguments.parse(Array(arguments.dropFirst())) } catch {
            ShimLog.write("\(error)")
            exit(2)
        }
        signal(SIGPIPE, SIG_IGN)
        do {
            switch parsed.action {
            case "version":
                print("containerd-shim-vireo-v2 (Vireo), shim API v2, ttrpc")
                exit(0)
            case "start": try ShimStart.run(parsed, arguments: arguments)
            case "delete": try ShimDelete.run(parsed)
            default: try serve(parsed)
            }
        } catch {
            ShimLog.write("\(error)")
            exit(1)
        }
    }

    /// The long-lived shim: the listening socket is fd 3 (from `start`).
    private static func serve(_ arguments: ShimArguments) throws -> Never {
        let listener: Int32 = 3
        guard fcntl(listener, F_GETFD) >= 0 else { throw ShimUsage("no listening socket on fd 3 (containerd runs `start`, which starts this)") }
        _ = fcntl(listener, F_SETFD, FD_CLOEXEC)
        let events = EventPublisher(address: ProcessInfo.processInfo.environment["TTRPC_ADDRESS"] ?? "", namespace: arguments.namespace)
        let socket = arguments.socketPath
        PodSandbox.shimSocket = socket
        let service = TaskService(id: arguments.id, stateDirectory: ShimArguments.stateDirectory, events: events) {
            unlink(socket)
            // The response to Shutdown is written after this returns; give it a moment.
            DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { exit(0) }
        }
        let server = TTRPCServer(listener: listener) { try service.handle(service: $0, method: $1, payload: $2) }
        server.serve()
    }
}
