import CVireoSystem
import Foundation
import Synchronization

/// A pod's sandbox container (CRI's `io.kubernetes.cri.container-type: sandbox`, usually `pause`):
/// its VM is the pod's. It starts with empty disk slots (`vireo run --image --spare-disks`) and a
/// control socket (`--api-socket`), through which each container of the pod gets its root disk hot
/// attached (`attach-disk`, the descriptors passed with the request: the jailed VMM opens no host
/// path). A pod holds at most `slots` containers besides the sandbox.
final class PodSandbox: Sendable {
    static let slots = 6
    /// The serving shim's socket (ShimMain sets it): the control socket's directory is named after
    /// it, next to it when the path fits a Unix socket address.
    nonisolated(unsafe) static var shimSocket = "/run/vireo-shim/shim.sock"

    /// The VMM's control socket's own directory (shared into the VMM's jail, owned by its uid).
    let apiDirectory: String
    var apiSocket: String { apiDirectory + "/api.sock" }
    private let used = Mutex<Set<Int>>([])

    init(id: String) {
        let socket = PodSandbox.shimSocket
        let near = (socket.hasSuffix(".sock") ? String(socket.dropLast(5)) : socket) + ".vmm"
        // FNV-1a of the socket and id: a short name of its own for the fallback.
        let hash = String((socket + "|" + id).utf8.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 }, radix: 16)
        apiDirectory = near.utf8.count + 9 <= UnixSocket.maximumPath ? near : "/run/vireo-shim/vmm-\(hash)"
    }

    /// `vireo run` options for the pod's VM; makes the control socket's directory, owned by the
    /// VMM's uid (from the isolation options) so the jailed VMM can bind there.
    func runOptions(isolation: [String]) throws -> [String] {
        try? FileManager.default.removeItem(atPath: apiDirectory)  // a stale one from a killed shim
        try? FileManager.default.createDirectory(atPath: (apiDirectory as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        guard mkdir(apiDirectory, 0o700) == 0 else {
            throw ShimError(ShimError.internal, "cannot create \(apiDirectory): \(String(cString: strerror(errno)))")
        }
        if let index = isolation.firstIndex(of: "--uid"), index + 1 < isolation.count, let uid = UInt32(isolation[index + 1]) {
            chown(apiDirectory, uid, uid)
        }
        return ["--spare-disks", String(PodSandbox.slots), "--api-socket", apiSocket]
    }

    /// The VM has ended: its control socket's directory goes.
    func remove() { try? FileManager.default.removeItem(atPath: apiDirectory) }

    /// A free slot for a new container of the pod.
    func allocateSlot() throws -> Int {
        try used.withLock { used in
            guard let slot = (0..<PodSandbox.slots).first(where: { !used.contains($0) }) else {
                throw ShimError(ShimError.failedPrecondition, "vireo: the pod already has \(PodSandbox.slots) containers, the most one pod VM holds; delete one first")
            }
            used.insert(slot)
            return slot
        }
    }

    func releaseSlot(_ slot: Int) { _ = used.withLock { $0.remove(slot) } }

    static func slotID(_ slot: Int) -> String { "vireo-slot-\(slot)" }

    /// `attach-disk` with the overlay, its map and the base as descriptors.
    func attach(slot: Int, descriptors: [Int32]) throws {
        try request("attach-disk \(PodSandbox.slotID(slot))", descriptors: descriptors)
    }

    func detach(slot: Int) throws {
        try request("detach-disk \(PodSandbox.slotID(slot))", descriptors: [])
    }

    /// One control request and its reply line; throws unless it says `"ok":true`.
    private func request(_ line: String, descriptors: [Int32]) throws {
        let fd = try UnixSocket.connect(apiSocket)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array((line + "\n").utf8)
        let sent = bytes.withUnsafeBytes { raw in
            descriptors.withUnsafeBufferPointer { csys_send_fds(fd, raw.baseAddress, raw.count, $0.baseAddress, Int32($0.count)) }
        }
        guard sent == bytes.count else { throw ShimError(ShimError.internal, "vireo: the pod VM's control socket: cannot send '\(line)' (\(sent))") }
        var reply: [UInt8] = []
        var byte: UInt8 = 0
        while reply.count < 4096, read(fd, &byte, 1) == 1, byte != UInt8(ascii: "\n") { reply.append(byte) }
        let text = String(decoding: reply, as: UTF8.self)
        guard text.contains("\"ok\":true") else {
            throw ShimError(ShimError.internal, "vireo: the pod VM refused '\(line)': \(text.isEmpty ? "no answer" : text)")
        }
    }
}
