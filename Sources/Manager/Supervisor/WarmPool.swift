import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `vireo serve --warm-pool N`: up to N `vireo-vmm pool` processes started ahead of any request,
/// each waiting on a socket for a snapshot to restore (WarmPoolMember, WarmPoolHandoff).
///
/// Bounded: idle and starting members together never exceed N. A member taken for a VM is
/// replaced in the background. Drained on shutdown (and implicitly when the daemon dies): closing
/// the daemon's end of a member's socket ends it, so no member outlives the daemon's pool.
/// Each member runs under a small shim, as every VMM does (VMMLauncher), in a slot directory of
/// its own under `<state-dir>/pool/`; once handed a VM the shim writes the exit status into that
/// VM's directory, which the daemon names in the slot (`vm-directory`) before the hand-off.
final class WarmPool: Sendable {
    /// One started member: its VMM and shim pids, the daemon's end of its socket, its slot, and
    /// whether it forked its jailed VMM process ahead (then it takes jailed VMs only).
    struct Member: Sendable {
        let pid: Int32
        let shim: Int32
        let socket: Int32
        let slot: String
        let forkedAhead: Bool
    }

    private struct State {
        var idle: [Member] = []
        var starting = 0
        var drained = false
        var serial = 0
    }

    let size: Int
    let executable: String
    let directory: String
    private let logger: Logger
    private let state = Mutex(State())
    /// Guest RAM bytes of the last VM handed to a member: new members register memory slots of
    /// that size ahead (`memory-hint` in their slot; KVMPrewarm).
    private let memoryHint = Mutex<UInt64?>(nil)
    /// The per-VM uids in use, scanned in the background (off the pooled start's path).
    let runningUIDs = RunningUIDTracker()
    /// How long a new member may take to say it is ready.
    static let readyTimeout = 20.0

    /// The shim: start the member in its slot, wait, then record how it ended where its VM's
    /// records are (the slot's `vm-directory`, written by the daemon before the hand-off), and
    /// remove the slot. The daemon writes the slot; user data never enters the script.
    static let shimScript = """
        slot=$1
        shift
        cd "$slot" || exit 127
        "$@" </dev/null &
        pid=$!
        exec 3<&-
        wait $pid
        status=$?
        if [ -s vm-directory ] && cd "$(cat vm-directory)"; then
          echo $status > vmm.exit.tmp && mv -f vmm.exit.tmp vmm.exit
        fi
        rm -rf -- "$slot"
        """

    init(size: Int, executable: String, stateDirectory: String, logger: Logger) {
        self.size = size
        self.executable = executable
        self.directory = stateDirectory + "/pool"
        self.logger = logger
    }

    /// Clears slots a previous daemon left without a VM, then fills the pool in the background.
    func start() {
        mkdir(directory, 0o700)
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) {
            for entry in entries where access("\(directory)/\(entry)/vm-directory", F_OK) != 0 {
                try? FileManager.default.removeItem(atPath: "\(directory)/\(entry)")
            }
        }
        runningUIDs.refreshInBackground()
        refill()
    }

    /// Members ready now.
    var readyCount: Int { state.withLock { $0.idle.count } }

    /// The oldest ready member that is still alive and fits (`jailed`: the VM runs in a jail; a
    /// member that forked its VMM ahead into a PID namespace takes jailed VMs only), or nil (the
    /// caller starts a VMM the usual way). The caller `refill()`s once its start is over: a
    /// replacement starting meanwhile (a shell, an exec, a KVM VM and its memory slots) would
    /// take CPU from the VM being handed over, on a small host its whole first milliseconds.
    func take(jailed: Bool) -> Member? {
        while true {
            guard let member = state.withLock({ state -> Member? in
                guard let index = state.idle.firstIndex(where: { jailed || !$0.forkedAhead }) else { return nil }
                return state.idle.remove(at: index)
            }) else { return nil }
            if ProcessProbe.isAlive(member.pid, startTime: nil) { return member }
            discard(member)
        }
    }

    /// Records the guest RAM size of a VM just handed over, for the members started from now on.
    func expect(memoryBytes: UInt64) {
        memoryHint.withLock { $0 = memoryBytes }
    }

    /// A member that will not get a VM: closing its socket ends it (its shim removes the slot).
    func discard(_ member: Member) {
        close(member.socket)
    }

    /// Ends every idle member and stops refilling; members already handed a VM are VMs now and
    /// keep running. Waits up to two seconds for them to go, then kills what is left.
    func drain() {
        let members = state.withLock { state -> [Member] in
            state.drained = true
            defer { state.idle = [] }
            return state.idle
        }
        for member in members { discard(member) }
        let deadline = Date().addingTimeInterval(2)
        for member in members {
            while ProcessProbe.isAlive(member.pid, startTime: nil) && Date() < deadline { usleep(5_000) }
            if ProcessProbe.isAlive(member.pid, startTime: nil) { kill(member.pid, SIGKILL) }
        }
    }

    /// Starts members in the background until idle and starting ones make `size`.
    func refill() {
        let count = state.withLock { state -> Int in
            guard !state.drained else { return 0 }
            let missing = max(0, size - state.idle.count - state.starting)
            state.starting += missing
            return missing
        }
        for _ in 0..<count {
            DispatchQueue.global().async { [self] in
                let member = startMember()
                let kept = state.withLock { state -> Bool in
                    state.starting -= 1
                    guard let member, !state.drained else { return false }
                    state.idle.append(member)
                    return true
                }
                if let member, !kept { discard(member) }
            }
        }
    }

    /// Spawns one member and waits for its `ready <pid>`; nil (logged) when it fails.
    private func startMember() -> Member? {
        let slot = state.withLock { state -> String in
            state.serial += 1
            return "\(directory)/\(getpid())-\(state.serial)"
        }
        guard mkdir(slot, 0o700) == 0 else {
            logger.error("warm pool: cannot create \(slot): \(String(cString: strerror(errno)))")
            return nil
        }
        if let bytes = memoryHint.withLock({ $0 }) {
            try? WarmPoolHandoff.writeSmallFile(slot + "/memory-hint", "\(bytes)\n")
        }
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            logger.error("warm pool: socketpair: \(String(cString: strerror(errno)))")
            rmdir(slot)
            return nil
        }
        let shim: Int32
        do {
            shim = try WarmPoolSpawn.spawn(slot: slot, executable: executable, socket: pair[1])
        } catch {
            logger.error("warm pool: cannot start a member: \(error)")
            close(pair[0])
            close(pair[1])
            rmdir(slot)
            return nil
        }
        close(pair[1])
        guard let (pid, forkedAhead) = Self.readReady(pair[0]) else {
            logger.error("warm pool: a member did not get ready within \(Int(Self.readyTimeout)) s (see \(slot)/vmm.log)")
            close(pair[0])  // it ends at end of file, or already has
            return nil
        }
        return Member(pid: pid, shim: shim, socket: pair[0], slot: slot, forkedAhead: forkedAhead)
    }

    /// Reads `ready <pid>` (with ` ahead` when it forked its VMM ahead) from a new member.
    private static func readReady(_ socket: Int32) -> (Int32, Bool)? {
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let deadline = Date().addingTimeInterval(readyTimeout)
        while Date() < deadline {
            let result = poll(&descriptor, 1, 200)
            if result < 0 && errno != EINTR { return nil }
            guard result > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 64)
            let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return nil }
            let text = String(decoding: buffer[0..<count], as: UTF8.self)
            let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
            guard words.count >= 2, words[0] == "ready", let pid = Int32(words[1]), pid > 0 else { return nil }
            return (pid, words.count > 2 && words[2] == "ahead")
        }
        return nil
    }

    /// Waits until a VMM handed a VM writes `up` on its socket (its vCPU threads are started):
    /// true; false at end of file (the VMM ended) or after `timeout` seconds.
    /// Runs on a thread of its own, so that no task of the daemon blocks in poll.
    static func waitUntilUp(_ socket: Int32, timeout: Double) async -> Bool {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
                let deadline = Date().addingTimeInterval(timeout)
                while Date() < deadline {
                    let result = poll(&descriptor, 1, 100)
                    if result < 0 && errno != EINTR { break }
                    guard result > 0 else { continue }
                    var buffer = [UInt8](repeating: 0, count: 16)
                    let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
                    continuation.resume(returning: count > 0 && buffer.starts(with: Array("up".utf8)))
                    return
                }
                continuation.resume(returning: false)
            }
        }
    }
}
