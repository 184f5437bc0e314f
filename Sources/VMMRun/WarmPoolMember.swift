internal import CVireoSystem
import VMM
import VMSpec
#if canImport(Glibc)
import Glibc
#endif

/// `vireo-vmm pool`: one VMM of the daemon's warm pool (`vireo serve --warm-pool N`).
///
/// Started ahead of any request, as a fresh VMM would be (root, its own session, the daemon's
/// environment), it pays exec, the runtime's start and /dev/kvm (KVMPrewarm) up front. As root (the
/// daemon then jails its VMs) it also forks the VMM process proper ahead, PID 1 of a new PID
/// namespace, as a jailed VMM's supervisor would on the request; that child creates the KVM VM, its
/// irqchip and PIT and, for the guest RAM size the daemon expects (`memory-hint` in the slot), its
/// memory slots (KVMPrewarm.prepareVM) and waits. Then the member says `ready <pid>` (`ready <pid> ahead` when forked ahead) on
/// descriptor 3 (a SOCK_SEQPACKET socket to the daemon) and waits. The daemon sends one message
/// whose descriptors are, in order: the VM's directory, its `vmm.log`, the VM lock, the snapshot's
/// `state.bin` and `memory.bin`, and optionally an image VM's base lock. From there the VM runs as
/// `vireo-vmm run --spec vmm.spec.json` in that directory would: the same spec file, the same
/// SpecRunner and isolation (per-VM uid, jail, namespaces, cgroups, seccomp) after the hand-off;
/// forked ahead, the member is the jail's supervisor and passes the VM on to its child. Once the
/// vCPU threads are started the VMM writes `up` on descriptor 3 (the daemon waits for it instead
/// of polling). End of file on the socket (the daemon drained its pool or ended) ends the process
/// with status 0 before any VM.
enum WarmPoolMember {
    static let socketFD: Int32 = 3
    static let maximumDescriptors: Int32 = 6
    /// The largest message taken from the daemon: a hand-off with a spec of up to 48 KiB
    /// (WarmPoolHandoff.inlineSpecLimit), the VM directory's path and the timeline; a larger one is
    /// refused whole (EMSGSIZE).
    static let receiveCapacity = 64 << 10

    static func run() throws {
        // passt, the one program a VMM starts, must not inherit the daemon's socket.
        _ = fcntl(socketFD, F_SETFD, FD_CLOEXEC)
        KVMPrewarm.prepare()
        // VIREO_POOL_FORK_AHEAD=0: run the VM in the member itself, as before the fork ahead (for
        // bench/restore-pool's comparison and for debugging; the daemon passes its environment on).
        let ahead = getenv("VIREO_POOL_FORK_AHEAD").map { String(cString: $0) != "0" } ?? true
        if ahead, geteuid() == 0, let vmm = forkVMMAhead(memoryBytes: memoryHint()) {
            try superviseHandedVM(vmm)
        }
        try say("ready \(getpid())\n")
        let (bytes, fds) = try receive(on: socketFD, what: "the daemon")
        let handed = try HandedVM(bytes: bytes, fds: fds)
        let spec = try handed.enter()
        try SpecRunner(spec: spec.spec, verbose: false, snapshotFiles: spec.files, started: announceUp).run()
    }

    // MARK: the hand-off

    /// A VM as the daemon hands it over: its descriptors, checked for count, the VM directory's
    /// absolute path, the daemon's timeline and the spec (`vm 1\n<path>\nt <step>=<seconds>\n…
    /// spec\n<JSON>`; the path empty when the message has none). A member forked ahead leaves it
    /// to its VMM child, which reads it on the same socket.
    struct HandedVM {
        let descriptors: [Int32]
        let directoryPath: String
        let timeline: [(String, Double)]
        let spec: [UInt8]

        /// Parses the message as bytes, not Characters: splitting a String walks grapheme
        /// clusters, ~0.2 ms for a hand-off with its spec on the way to the guest's first instruction.
        init(bytes: [UInt8], fds: [Int32]) throws {
            guard bytes.starts(with: "vm 1".utf8), fds.count == 5 || fds.count == 6 else {
                for fd in fds { close(fd) }
                if bytes.isEmpty && fds.isEmpty { exit(0) }  // drained: no VM came
                throw UsageError("pool: unexpected hand-off (\(fds.count) descriptors)")
            }
            descriptors = fds
            var lines: [ArraySlice<UInt8>] = []
            var specStart: Int?
            var start = 0
            while true {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
                let line = bytes[start..<end]
                if lines.count >= 2 && line.elementsEqual("spec".utf8) {
                    specStart = min(end + 1, bytes.count)
                    break
                }
                lines.append(line)
                guard end < bytes.count else { break }
                start = end + 1
            }
            let path = lines.count > 1 ? lines[1] : []
            guard path.isEmpty || (path.first == UInt8(ascii: "/") && path.count < Int(PATH_MAX) && !path.contains(0)) else {
                for fd in fds { close(fd) }
                throw UsageError("pool: the hand-off's VM directory is not an absolute path")
            }
            guard let specStart else {
                for fd in fds { close(fd) }
                throw UsageError("pool: the hand-off carries no spec")
            }
            directoryPath = String(decoding: path, as: UTF8.self)
            timeline = lines.dropFirst(2).prefix(16).compactMap(HandedVM.timelineMark)
            spec = Array(bytes[specStart...])
        }

        /// `t <step>=<seconds>`: a label of at most 64 plain characters and a CLOCK_MONOTONIC moment.
        static func timelineMark(_ line: ArraySlice<UInt8>) -> (String, Double)? {
            guard line.starts(with: "t ".utf8), let equals = line.lastIndex(of: UInt8(ascii: "=")) else { return nil }
            let name = line[(line.startIndex + 2)..<equals]
            guard !name.isEmpty, name.count <= 64, name.allSatisfy({ (0x20...0x7E).contains($0) && $0 != UInt8(ascii: ";") }),
                  let moment = Double(String(decoding: line[(equals + 1)...], as: UTF8.self)), moment.isFinite, moment > 0 else { return nil }
            return (String(decoding: name, as: UTF8.self), moment)
        }

        /// Enters the VM directory, sends output to its `vmm.log` and reads its spec; fds[2] (the VM
        /// lock) and fds[5] (a base lock) stay open for the VMM's whole life.
        func enter() throws -> (spec: VMSpec, files: SnapshotFiles) {
            guard fchdir(descriptors[0]) == 0 else { throw UsageError("pool: cannot enter the VM directory: \(String(cString: strerror(errno)))") }
            close(descriptors[0])
            dup2(descriptors[1], 1)
            dup2(descriptors[1], 2)
            close(descriptors[1])
            let spec = try SpecFile.parse(spec, what: "pool: the hand-off's spec")
            guard let directory = spec.restoreDirectory else { throw UsageError("pool: the spec restores no snapshot") }
            return (spec, SnapshotFiles(directory: directory, state: descriptors[3], memory: descriptors[4]))
        }
    }

    /// The guest RAM size the daemon expects (its last pooled restore's): `memory-hint` in the
    /// slot, the member's working directory, which only the daemon writes. Nil if absent or odd.
    static func memoryHint() -> UInt64? {
        let fd = open("memory-hint", O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 24)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0, count < buffer.count else { return nil }
        return UInt64(String(decoding: buffer[0..<count], as: UTF8.self).split(separator: "\n").first ?? "")
    }

    /// One line to the daemon on descriptor 3.
    static func say(_ line: String) throws {
        let bytes = Array(line.utf8)
        guard bytes.withUnsafeBytes({ send(socketFD, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else {
            throw UsageError("pool: descriptor 3 is not the daemon's socket: \(String(cString: strerror(errno)))")
        }
    }

    /// `up` on descriptor 3, then closed, once vCPU 0 has entered the guest (waited for up to
    /// 200 ms after the vCPU threads start; `up` anyway after that). The moment goes to `vmm.log` in
    /// the words of `run -v` (bench/restore-pool times a request to it).
    static func announceUp() {
        for _ in 0..<2000 where Timeline.firstEntryMonotonic == 0 { usleep(100) }
        if Timeline.firstEntryMonotonic != 0 {
            printError("vireo: first guest entry at CLOCK_MONOTONIC \(format6(Timeline.firstEntryMonotonic)) s\n")
        }
        if let line = PoolMilestones.line(firstEntry: Timeline.firstEntryMonotonic) { printError(line) }
        let bytes: [UInt8] = Array("up\n".utf8)
        _ = bytes.withUnsafeBytes { write(socketFD, $0.baseAddress, $0.count) }
        close(socketFD)
    }

    /// One message with at most `maximumDescriptors` descriptors (close-on-exec), through the
    /// bounded fd-passing helper; a message with more is refused whole.
    static func receive(on socket: Int32, what: String) throws -> ([UInt8], [Int32]) {
        var buffer = [UInt8](repeating: 0, count: receiveCapacity)
        var fds = [Int32](repeating: -1, count: Int(maximumDescriptors))
        var count: Int32 = 0
        let received = buffer.withUnsafeMutableBytes { data in
            fds.withUnsafeMutableBufferPointer { csys_receive_fds(socket, data.baseAddress, data.count, $0.baseAddress, maximumDescriptors, &count) }
        }
        guard received >= 0 else { throw UsageError("pool: cannot read from \(what): \(String(cString: strerror(Int32(-received))))") }
        buffer.removeSubrange(received...)
        return (buffer, Array(fds[0..<Int(count)]))
    }
}
