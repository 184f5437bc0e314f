import Glibc
import Testing
@testable import VMM

@Suite struct SeccompPolicyTests {
    let pid: Int32 = 4242
    let trap = SeccompAction.trap.value
    let allow = SeccompAction.allow.value

    func ioctl(_ name: String) -> UInt64 { UInt64(IoctlRequests.value(name)!) }

    @Test func syscallTableMatchesTheABI() {
        let known = ["read": 0, "write": 1, "mmap": 9, "mprotect": 10, "ioctl": 16, "clone": 56, "fork": 57,
                     "execve": 59, "kill": 62, "openat": 257, "seccomp": 317, "clone3": 435]
        for (name, number) in known {
            #expect(Syscalls.number(name) == number, "\(name)")
            #expect(Syscalls.name(number) == name)
        }
        #expect(Syscalls.name(-1) == nil)
        #expect(Syscalls.name(100_000) == nil)
    }

    @Test func ioctlTableHasTheKVMRequests() {
        #expect(IoctlRequests.value("KVM_RUN") == 0xAE80)
        #expect(IoctlRequests.value("KVM_GET_VCPU_EVENTS") == 0x8040_AE9F)
        #expect(IoctlRequests.value("TCGETS") == 0x5401)
        #expect(IoctlRequests.value("KVM_NOPE") == nil)
    }

    @Test func everyRolePolicyCompiles() throws {
        for mode in [SeccompMode.on, .kill, .log] {
            let deny = try #require(mode.denyAction)
            for policy in [try SeccompProfiles.control(pid: pid, deny: deny), try SeccompProfiles.vcpu(pid: pid, deny: deny),
                           try SeccompProfiles.deviceIO(pid: pid, deny: deny), try SeccompProfiles.device(pid: pid, deny: deny)] {
                let program = try policy.compile()
                #expect(program.count < 1024, "\(policy.role.rawValue): \(program.count) instructions")
                #expect(program.last?.code == BPFOpcode.returnConstant)
            }
        }
        #expect(SeccompMode.off.denyAction == nil)
    }

    @Test func wrongArchitectureAndX32AreKilled() throws {
        let program = try SeccompProfiles.control(pid: pid, deny: .trap).compile()
        var i386 = SeccompData("read")
        i386.arch = 0x4000_0003
        #expect(i386.run(program) == SeccompAction.killProcess.value)
        var x32 = SeccompData("read")
        x32.nr |= 0x4000_0000
        #expect(x32.run(program) == SeccompAction.killProcess.value)
    }

    @Test func vcpuRoleAllowsTheExitLoopOnly() throws {
        let program = try SeccompProfiles.vcpu(pid: pid, deny: .trap).compile()
        #expect(SeccompData("ioctl", 5, ioctl("KVM_RUN")).run(program) == allow)
        // Only the low 32 bits of the request count (the kernel takes an unsigned int).
        #expect(SeccompData("ioctl", 5, 0xFFFF_FFFF_0000_0000 | ioctl("KVM_RUN")).run(program) == allow)
        #expect(SeccompData("ioctl", 5, ioctl("KVM_SET_VCPU_EVENTS")).run(program) == allow)
        #expect(SeccompData("ioctl", 4, ioctl("KVM_SET_USER_MEMORY_REGION")).run(program) == trap)
        #expect(SeccompData("ioctl", 4, ioctl("KVM_CREATE_VCPU")).run(program) == trap)
        #expect(SeccompData("ioctl", 4, ioctl("KVM_GET_CLOCK")).run(program) == trap)
        #expect(SeccompData("write", 1).run(program) == allow)
        #expect(SeccompData("execve").run(program) == trap)
        #expect(SeccompData("socket", UInt64(AF_UNIX)).run(program) == trap)
        #expect(SeccompData("clone", 0x0001_0000).run(program) == trap)
        // No opens and no renames at all: the console log rotates on its own thread (issue 11).
        let rotation = UInt64(O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_NOFOLLOW | O_CLOEXEC)
        #expect(SeccompData("openat", UInt64(bitPattern: -100), 0, rotation).run(program) == trap)
        #expect(SeccompData("openat", UInt64(bitPattern: -100), 0, UInt64(O_RDONLY)).run(program) == trap)
        #expect(SeccompData("rename").run(program) == trap)
        #expect(SeccompData("tgkill", UInt64(pid), 7, UInt64(SIGUSR1)).run(program) == allow)
        #expect(SeccompData("tgkill", 1, 7, UInt64(SIGKILL)).run(program) == trap)
    }

    @Test func memoryNeverBecomesExecutable() throws {
        for policy in [try SeccompProfiles.control(pid: pid, deny: .trap), try SeccompProfiles.vcpu(pid: pid, deny: .trap)] {
            let program = try policy.compile()
            let readWrite = UInt64(PROT_READ | PROT_WRITE)
            #expect(SeccompData("mmap", 0, 4096, readWrite, 0x22).run(program) == allow)
            #expect(SeccompData("mmap", 0, 4096, 0, 0x22).run(program) == allow)
            #expect(SeccompData("mmap", 0, 4096, readWrite | UInt64(PROT_EXEC), 0x22).run(program) == trap)
            #expect(SeccompData("mmap", 0, 4096, readWrite | (1 << 40), 0x22).run(program) == trap)
            #expect(SeccompData("mprotect", 0, 4096, readWrite).run(program) == allow)
            #expect(SeccompData("mprotect", 0, 4096, UInt64(PROT_READ | PROT_EXEC)).run(program) == trap)
            #expect(SeccompData("pkey_mprotect", 0, 4096, readWrite, 0).run(program) == trap)
        }
    }

    @Test func controlRoleArgumentFilters() throws {
        let program = try SeccompProfiles.control(pid: pid, deny: .killProcess).compile()
        let kill = SeccompAction.killProcess.value
        #expect(SeccompData("clone", 0x003D_0F00).run(program) == allow)  // pthread_create's flags
        #expect(SeccompData("clone", 0x0100_0011).run(program) == kill)   // fork-like
        #expect(SeccompData("clone3").run(program) == SeccompAction.errno(ENOSYS).value)
        #expect(SeccompData("socket", UInt64(AF_UNIX), 1).run(program) == allow)
        #expect(SeccompData("socket", UInt64(AF_INET), 1).run(program) == kill)
        #expect(SeccompData("rt_sigaction", UInt64(SIGUSR1)).run(program) == allow)
        #expect(SeccompData("rt_sigaction", UInt64(SIGSYS)).run(program) == kill)
        #expect(SeccompData("kill", UInt64(pid), UInt64(SIGKILL)).run(program) == allow)
        #expect(SeccompData("kill", 1, UInt64(SIGKILL)).run(program) == kill)
        #expect(SeccompData("ioctl", 0, ioctl("TCSETS")).run(program) == allow)
        #expect(SeccompData("ioctl", 6, ioctl("KVM_GET_CLOCK")).run(program) == allow)
        #expect(SeccompData("ioctl", 6, ioctl("KVM_SET_USER_MEMORY_REGION")).run(program) == kill)
        #expect(SeccompData("prctl", 15).run(program) == allow)      // PR_SET_NAME
        #expect(SeccompData("prctl", 38, 1).run(program) == kill)    // PR_SET_NO_NEW_PRIVS: not needed later
        #expect(SeccompData("seccomp", 1).run(program) == allow)
        #expect(SeccompData("openat", 0, 0, 0).run(program) == allow)
        for name in ["execve", "execveat", "fork", "vfork", "ptrace", "mount", "setuid", "bpf", "process_vm_writev"] {
            #expect(SeccompData(name).run(program) == kill, "\(name)")
        }
    }

    @Test func deviceRoleOnlyRaisesInterrupts() throws {
        let program = try SeccompProfiles.deviceIO(pid: pid, deny: .log).compile()
        let log = SeccompAction.log.value
        #expect(SeccompData("read", 0).run(program) == allow)
        #expect(SeccompData("ioctl", 4, ioctl("KVM_IRQ_LINE")).run(program) == allow)
        #expect(SeccompData("ioctl", 5, ioctl("KVM_RUN")).run(program) == log)
        // The serial's interrupt is an irqfd pulse (an eventfd write) where KVM has irqfd.
        #expect(SeccompData("write", 9).run(program) == allow)
        #expect(SeccompData("openat").run(program) == log)
        #expect(SeccompData("socket").run(program) == log)
    }

    @Test func virtioWorkerRoleHasFileIOButOpensNothing() throws {
        let program = try SeccompProfiles.device(pid: pid, deny: .trap).compile()
        for allowed in ["read", "write", "pread64", "pwrite64", "preadv", "pwritev", "fsync", "fdatasync", "fallocate",
                        "epoll_wait", "epoll_ctl", "futex", "madvise", "exit", "recvmsg", "sendmsg", "accept4"] {
            #expect(SeccompData(allowed, 3).run(program) == allow, "\(allowed)")
        }
        for denied in ["openat", "open", "socket", "connect", "clone", "clone3", "fork", "execve", "rename", "unlink",
                       "mkdir", "ioctl", "bind", "listen", "eventfd2", "epoll_create1", "kill", "ptrace"] {
            #expect(SeccompData(denied, 3).run(program) == trap, "\(denied)")
        }
    }

    /// Issue 12: the control thread keeps `connect` only for a vsock device's host connects; it
    /// keeps `openat` (runtime snapshots, console log rotation), confined by the jail's mount namespace.
    @Test func controlRoleConnectsOnlyWithAVsockDevice() throws {
        let without = try SeccompProfiles.control(pid: pid, hostConnects: false, deny: .trap)
        let with = try SeccompProfiles.control(pid: pid, hostConnects: true, deny: .trap)
        #expect(!without.allowedSyscalls.contains("connect") && with.allowedSyscalls.contains("connect"))
        #expect(Set(with.allowedSyscalls).subtracting(without.allowedSyscalls) == ["connect"])
        #expect(SeccompData("connect", 3).run(try without.compile()) == trap)
        #expect(SeccompData("connect", 3).run(try with.compile()) == allow)
        for kept in ["openat", "mkdirat", "renameat", "accept4"] {
            #expect(SeccompData(kept, 3).run(try without.compile()) == allow, "\(kept)")
        }
    }

    /// Filters stack on the base one, so a call a role allows but the base denies is still denied
    /// (the device role listed preadv/pwritev, the base did not, and virtio-blk's first preadv
    /// stopped the VMM).
    @Test func theBaseFilterAllowsWhatEveryRoleAllows() throws {
        let base = try SeccompProfiles.control(pid: pid, deny: .trap).compile()
        let roles = [try SeccompProfiles.vcpu(pid: pid, deny: .trap), try SeccompProfiles.device(pid: pid, deny: .trap),
                     try SeccompProfiles.deviceIO(pid: pid, deny: .trap)]
        for role in roles {
            for rule in role.rules where rule.action == .allow && rule.alternatives.isEmpty {
                #expect(SeccompData(rule.name, 3).run(base) == allow, "\(role.role) allows \(rule.name), the base does not")
            }
        }
    }

    @Test func policyErrorsNameTheProblem() {
        let unknown = SeccompPolicy(role: .control, rules: [SyscallRule("no_such_call")], defaultAction: .trap)
        #expect(throws: SeccompPolicyError.unknownSyscall("no_such_call")) { try unknown.compile() }
        let duplicate = SeccompPolicy(role: .control, rules: [SyscallRule("read"), SyscallRule("read")], defaultAction: .trap)
        #expect(throws: SeccompPolicyError.duplicateSyscall("read")) { try duplicate.compile() }
        #expect(throws: SeccompPolicyError.unknownIoctl("KVM_NOPE")) { try IoctlRequests.values(["KVM_NOPE"]) }
    }

    @Test func actionValues() {
        #expect(SeccompAction.allow.value == 0x7FFF_0000)
        #expect(SeccompAction.killProcess.value == 0x8000_0000)
        #expect(SeccompAction.trap.value == 0x0003_0000)
        #expect(SeccompAction.log.value == 0x7FFC_0000)
        #expect(SeccompAction.errno(ENOSYS).value == 0x0005_0000 | UInt32(ENOSYS))
    }
}
