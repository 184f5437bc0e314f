import ContainerdShimAPI
import Foundation
import SwiftProtobuf

/// Publishes task events to containerd's events service over ttrpc
/// (`containerd.services.events.ttrpc.v1.Events/Forward` on $TTRPC_ADDRESS), in order, off the
/// request threads. A containerd that is down (restarting) loses the event after a few tries, as
/// with containerd's own shims; the task's state stays queryable through State/Wait.
final class EventPublisher: @unchecked Sendable {
    private let address: String
    private let namespace: String
    private let queue = DispatchQueue(label: "vireo.shim.events")

    init(address: String, namespace: String) {
        self.address = address.hasPrefix("unix://") ? String(address.dropFirst(7)) : address
        self.namespace = namespace
    }

    /// TaskExit for the container's process (`id` = the container id) or one of its execs.
    func publishExit(containerID: String, id: String, pid: UInt32, status: UInt32, at: Date) {
        var event = Containerd_Events_TaskExit()
        event.containerID = containerID
        event.id = id
        event.pid = pid
        event.exitStatus = status
        event.exitedAt = Google_Protobuf_Timestamp(date: at)
        publish(topic: "/tasks/exit", typeName: "containerd.events.TaskExit", event: event)
    }

    func publish(topic: String, typeName: String, event: any SwiftProtobuf.Message) {
        guard !address.isEmpty else { return }
        var envelope = Containerd_Services_Events_Ttrpc_V1_Envelope()
        envelope.timestamp = Google_Protobuf_Timestamp(date: Date())
        envelope.namespace = namespace
        envelope.topic = topic
        envelope.event.typeURL = typeName  // containerd's typeurl names, e.g. containerd.events.TaskExit
        envelope.event.value = (try? event.serializedData()) ?? Data()
        var request = Containerd_Services_Events_Ttrpc_V1_ForwardRequest()
        request.envelope = envelope
        guard let payload: [UInt8] = try? request.serializedBytes() else { return }
        queue.async { [address, namespace] in
            for attempt in 1...3 {
                do {
                    _ = try TTRPCClient.call(socket: address, service: "containerd.services.events.ttrpc.v1.Events", method: "Forward",
                                             payload: payload, metadata: ["containerd-namespace-ttrpc": namespace])
                    return
                } catch {
                    if attempt == 3 { ShimLog.write("event \(topic) not published: \(error)") }
                    usleep(200_000)
                }
            }
        }
    }
}
