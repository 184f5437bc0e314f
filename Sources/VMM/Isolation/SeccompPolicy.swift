internal import CVireoSystem
#if canImport(Glibc)
import Glibc
#endif

/// Which allowlist a thread's filter comes from; the raw value is the name the SIGSYS report and
/// `--verbose` print.
public enum SeccompRole: String, CaseIterable, Sendable {
    /// Main, signal, API, log-rotation and vsock-connector threads: the process-wide base filter.
    case control
    /// The exit loop of a vCPU and in-line device emulation.
    case vcpu = "vCPU"
    /// Console input.
    case deviceIO = "device I/O"
    /// Virtio workers.
    case device
}

/// What a seccomp filter does with a syscall.
public enum SeccompAction: Equatable, Sendable {
    case allow
    /// SECCOMP_RET_KILL_PROCESS: the kernel kills the whole process with SIGSYS.
    case killProcess
    /// SECCOMP_RET_TRAP: SIGSYS to the thread, whose handler reports the syscall and ends the VMM.
    case trap
    /// SECCOMP_RET_LOG: allowed, but the kernel logs it (audit type 1326).
    case log
    /// SECCOMP_RET_ERRNO: the call fails with this errno.
    case errno(Int32)

    /// The SECCOMP_RET_* value.
    public var value: UInt32 {
        switch self {
        case .allow: return CSYS_SECCOMP_RET_ALLOW
        case .killProcess: return CSYS_SECCOMP_RET_KILL_PROCESS
        case .trap: return CSYS_SECCOMP_RET_TRAP
        case .log: return CSYS_SECCOMP_RET_LOG
        case let .errno(code): return CSYS_SECCOMP_RET_ERRNO | (UInt32(code) & 0xFFFF)
        }
    }
}

/// A test on one syscall argument (0–5). seccomp sees 64-bit arguments as two 32-bit words;
/// most checks compare the low word, which is what the kernel itself uses for `int` and
/// `unsigned int` parameters (ioctl's request, open's flags, socket's domain).
public enum ArgumentCheck: Equatable, Sendable {
    /// low word == value
    case equals(argument: Int, value: UInt32)
    /// low word is one of `values`
    case oneOf(argument: Int, values: [UInt32])
    /// low word != value
    case notEqual(argument: Int, value: UInt32)
    /// high word == 0 and (low word & mask) == 0: e.g. no PROT_EXEC in mmap's prot.
    case bitsClear(argument: Int, mask: UInt32)
    /// (low word & mask) != 0: e.g. CLONE_THREAD in clone's flags.
    case anyBitSet(argument: Int, mask: UInt32)
}

/// How one syscall is treated: allowed when any alternative's checks all pass (no alternatives:
/// always), otherwise the policy's default action.
public struct SyscallRule: Equatable, Sendable {
    public var name: String
    public var alternatives: [[ArgumentCheck]]
    /// The action taken when an alternative matches (usually allow; `errno(ENOSYS)` for clone3).
    public var action: SeccompAction

    public init(_ name: String, when alternatives: [[ArgumentCheck]] = [], action: SeccompAction = .allow) {
        self.name = name
        self.alternatives = alternatives
        self.action = action
    }
}

/// Why a policy could not be compiled.
public enum SeccompPolicyError: Error, Equatable, CustomStringConvertible {
    case unknownSyscall(String)
    case unknownIoctl(String)
    case duplicateSyscall(String)
    case assembler(BPFError)

    public var description: String {
        switch self {
        case let .unknownSyscall(name): return "unknown syscall '\(name)' in a seccomp policy"
        case let .unknownIoctl(name): return "unknown ioctl '\(name)' in a seccomp policy"
        case let .duplicateSyscall(name): return "syscall '\(name)' appears twice in a seccomp policy"
        case let .assembler(error): return error.description
        }
    }
}

/// An allowlist for one thread role, compiled to a seccomp BPF program.
public struct SeccompPolicy: Equatable, Sendable {
    public var role: SeccompRole
    public var rules: [SyscallRule]
    public var defaultAction: SeccompAction

    public init(role: SeccompRole, rules: [SyscallRule], defaultAction: SeccompAction) {
        self.role = role
        self.rules = rules
        self.defaultAction = defaultAction
    }

    /// Offsets into struct seccomp_data.
    static let nrOffset: UInt32 = 0
    static let archOffset: UInt32 = 4
    static func lowWord(_ argument: Int) -> UInt32 { 16 + 8 * UInt32(argument) }
    static func highWord(_ argument: Int) -> UInt32 { 20 + 8 * UInt32(argument) }
    /// x32 syscalls carry this bit in the number with the x86-64 audit arch.
    static let x32Bit: UInt32 = 0x4000_0000

    /// The program: wrong architecture or an x32 call kills the process; each rule in order (put
    /// hot syscalls first: ioctl for KVM_RUN); anything else gets the default action.
    public func compile() throws(SeccompPolicyError) -> [BPFInstruction] {
        var asm = BPFAssembler()
        let archOK = asm.newLabel()
        asm.load(offset: SeccompPolicy.archOffset)
        asm.jump(if: .equal, CSYS_AUDIT_ARCH_X86_64, to: archOK)
        asm.ret(SeccompAction.killProcess.value)
        asm.bind(archOK)
        let nativeCall = asm.newLabel()
        asm.load(offset: SeccompPolicy.nrOffset)
        asm.jump(if: .greaterOrEqual, SeccompPolicy.x32Bit, to: nil, else: nativeCall)
        asm.ret(SeccompAction.killProcess.value)
        asm.bind(nativeCall)
        var seen = Set<String>()
        for rule in rules {
            guard seen.insert(rule.name).inserted else { throw .duplicateSyscall(rule.name) }
            guard let number = Syscalls.number(rule.name) else { throw .unknownSyscall(rule.name) }
            let nextRule = asm.newLabel()
            asm.jump(if: .equal, UInt32(number), to: nil, else: nextRule)
            if rule.alternatives.isEmpty {
                asm.ret(rule.action.value)
            } else {
                for checks in rule.alternatives {
                    let failed = asm.newLabel()
                    for check in checks { emit(check, into: &asm, failing: failed) }
                    asm.ret(rule.action.value)
                    asm.bind(failed)
                }
                asm.ret(defaultAction.value)
            }
            // Only the jump above reaches this label, so the accumulator still holds the number.
            asm.bind(nextRule)
        }
        asm.ret(defaultAction.value)
        do {
            return try asm.assemble()
        } catch {
            throw .assembler(error)
        }
    }

    private func emit(_ check: ArgumentCheck, into asm: inout BPFAssembler, failing failed: BPFAssembler.Label) {
        switch check {
        case let .equals(argument, value):
            asm.load(offset: SeccompPolicy.lowWord(argument))
            asm.jump(if: .equal, value, to: nil, else: failed)
        case let .oneOf(argument, values):
            let matched = asm.newLabel()
            asm.load(offset: SeccompPolicy.lowWord(argument))
            for value in values { asm.jump(if: .equal, value, to: matched) }
            asm.jump(to: failed)
            asm.bind(matched)
        case let .notEqual(argument, value):
            asm.load(offset: SeccompPolicy.lowWord(argument))
            asm.jump(if: .equal, value, to: failed)
        case let .bitsClear(argument, mask):
            asm.load(offset: SeccompPolicy.highWord(argument))
            asm.jump(if: .equal, 0, to: nil, else: failed)
            asm.load(offset: SeccompPolicy.lowWord(argument))
            asm.jump(if: .anyBitSet, mask, to: failed)
        case let .anyBitSet(argument, mask):
            asm.load(offset: SeccompPolicy.lowWord(argument))
            asm.jump(if: .anyBitSet, mask, to: nil, else: failed)
        }
    }

    /// Names of the syscalls this policy allows at all (conditionally or not).
    public var allowedSyscalls: [String] { rules.filter { $0.action == .allow }.map(\.name) }
}

/// x86-64 syscall numbers and names (table generated from <asm/unistd_64.h>).
public enum Syscalls {
    private static let byName: [String: Int] = {
        var table: [String: Int] = [:]
        for number in 0..<Int(csys_syscall_count()) {
            if let name = csys_syscall_name(Int32(number)) { table[String(cString: name)] = number }
        }
        return table
    }()

    /// The number of `name`, or nil.
    public static func number(_ name: String) -> Int? { byName[name] }

    /// The name of syscall `number`, or nil.
    public static func name(_ number: Int) -> String? {
        guard number >= 0, number <= Int(Int32.max), let pointer = csys_syscall_name(Int32(number)) else { return nil }
        return String(cString: pointer)
    }
}

/// ioctl request numbers by their C name (KVM and terminal requests).
public enum IoctlRequests {
    private static let byName: [String: UInt32] = {
        var count: Int32 = 0
        guard let table = csys_ioctl_table(&count) else { return [:] }
        var result: [String: UInt32] = [:]
        for index in 0..<Int(count) { result[String(cString: table[index].name)] = table[index].request }
        return result
    }()

    /// The request number of `name` (e.g. "KVM_RUN"), or nil.
    public static func value(_ name: String) -> UInt32? { byName[name] }

    /// The request numbers of `names`; throws on an unknown name.
    static func values(_ names: [String]) throws(SeccompPolicyError) -> [UInt32] {
        var result: [UInt32] = []
        for name in names {
            guard let value = byName[name] else { throw .unknownIoctl(name) }
            result.append(value)
        }
        return result
    }
}
