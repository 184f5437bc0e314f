import VMM
#if canImport(Glibc)
import Glibc
#endif

/// `vireo-vmm pool`: one VMM of the daemon's warm pool (`vireo serve --warm-pool N`).
///
/// Started ahead of any request, as a fresh VMM would be (root, its own session, the daemon's
/// environment), it pays exec, the runtime's start and /dev/kvm (KVMPrewarm) up front, says
/// `ready <pid>` on descriptor 3 (a SOCK_SEQPACKET socket to the daemon) and waits. The daemon then
/// sends one message whose descriptors are, in order: the VM's directory, its `vmm.log`, the VM lock,
/// the snapshot's `state.bin` and `memory.bin`, and optionally an image VM's base lock. From there
/// the VM runs exactly as `vireo-vmm run --spec vmm.spec.json` in that directory would: the same spec
/// file, the same SpecRunner, so the same isolation (per-VM uid, jail, namespaces, cgroups,
/// seccomp) is applied after the hand-off. End of file on the socket (the daemon drained its pool or
/// ended) ends the process with status 0 before any VM.
enum WarmPoolMember {
    static let socketFD: Int32 = 3
    static let maximumDescriptors = 6

    static func run() throws {
        KVMPrewarm.prepare()
        var ready = Array("ready \(getpid())\n".utf8)
        guard ready.withUnsafeMutableBytes({ send(socketFD, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == ready.count else {
            throw UsageError("pool: descriptor 3 is not the daemon's socket: \(String(cString: strerror(errno)))")
        }
        let (text, fds) = try receive()
        guard text.hasPrefix("vm 1"), fds.count == 5 || fds.count == 6 else {
            for fd in fds { close(fd) }
            if text.isEmpty && fds.isEmpty { exit(0) }  // drained: no VM came
            throw UsageError("pool: unexpected hand-off (\(fds.count) descriptors)")
        }
        close(socketFD)
        guard fchdir(fds[0]) == 0 else { throw UsageError("pool: cannot enter the VM directory: \(String(cString: strerror(errno)))") }
        close(fds[0])
        dup2(fds[1], 1)
        dup2(fds[1], 2)
        close(fds[1])
        // fds[2] (the VM lock) and fds[5] (a base lock) stay open for the VMM's whole life.
        var flags = RunFlags()
        flags.spec = "vmm.spec.json"
        let spec = try flags.vmSpec()
        guard let directory = spec.restoreDirectory else { throw UsageError("pool: the spec restores no snapshot") }
        let files = SnapshotFiles(directory: directory, state: fds[3], memory: fds[4])
        try SpecRunner(spec: spec, verbose: false, snapshotFiles: files).run()
    }

    /// One message with its descriptors (close-on-exec: passt, the one program a VMM starts, gets none).
    private static func receive() throws -> (String, [Int32]) {
        var buffer = [UInt8](repeating: 0, count: 256)
        let controlSize = cmsgSpace(maximumDescriptors * 4)
        var control = [UInt8](repeating: 0, count: controlSize)
        while true {
            let (received, controlLength): (Int, Int) = buffer.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { controlBytes in
                    var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var message = msghdr()
                        message.msg_iov = vectorPointer
                        message.msg_iovlen = 1
                        message.msg_control = controlBytes.baseAddress
                        message.msg_controllen = controlBytes.count
                        let count = recvmsg(socketFD, &message, Int32(MSG_CMSG_CLOEXEC))
                        return (count, count >= 0 ? Int(message.msg_controllen) : 0)
                    }
                }
            }
            if received < 0 && errno == EINTR { continue }
            guard received >= 0 else { throw UsageError("pool: cannot read from the daemon: \(String(cString: strerror(errno)))") }
            return (String(decoding: buffer[0..<received], as: UTF8.self), descriptors(in: control, length: controlLength))
        }
    }

    /// The SCM_RIGHTS descriptors of a control buffer (struct cmsghdr: 8-byte length, level, type).
    private static func descriptors(in control: [UInt8], length: Int) -> [Int32] {
        var fds: [Int32] = []
        var offset = 0
        let header = cmsgSpace(0)
        while offset + header <= length {
            let cmsgLength = control.withUnsafeBytes { $0.load(fromByteOffset: offset, as: Int.self) }
            let level = control.withUnsafeBytes { $0.load(fromByteOffset: offset + 8, as: Int32.self) }
            let type = control.withUnsafeBytes { $0.load(fromByteOffset: offset + 12, as: Int32.self) }
            guard cmsgLength >= header, offset + cmsgLength <= length else { break }
            if level == SOL_SOCKET && type == Int32(SCM_RIGHTS) {
                for index in 0..<(cmsgLength - header) / 4 {
                    fds.append(control.withUnsafeBytes { $0.load(fromByteOffset: offset + header + index * 4, as: Int32.self) })
                }
            }
            offset += cmsgSpace(cmsgLength - header)
        }
        return fds
    }

    /// CMSG_SPACE on 64-bit Linux: a 16-byte header, data padded to 8 bytes.
    static func cmsgSpace(_ dataBytes: Int) -> Int { 16 + (dataBytes + 7) & ~7 }
}
