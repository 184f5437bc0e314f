internal import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// One CPUID leaf/subleaf as KVM carries it (`struct kvm_cpuid_entry2`).
public struct CPUIDEntry: Equatable, Sendable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32

    public init(function: UInt32, index: UInt32 = 0, flags: UInt32 = 0,
                eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.function = function; self.index = index; self.flags = flags
        self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
    }

    /// KVM_CPUID_FLAG_SIGNIFCANT_INDEX: the subleaf index matters for this leaf.
    public static let significantIndex: UInt32 = 1
}

/// A KVM capability Vireo asks about.
public enum KVMCapability: Sendable {
    case irqchip, userMemory, pit2, immediateExit, setTSSAddress, maxVCPUs, recommendedVCPUs, getTSCKHz
    case irqfd, ioeventfd, tscDeadlineTimer

    var raw: Int32 {
        switch self {
        case .irqchip: return Int32(CKVM_CAP_IRQCHIP)
        case .userMemory: return Int32(CKVM_CAP_USER_MEMORY)
        case .pit2: return Int32(CKVM_CAP_PIT2)
        case .immediateExit: return Int32(CKVM_CAP_IMMEDIATE_EXIT)
        case .setTSSAddress: return Int32(CKVM_CAP_SET_TSS_ADDR)
        case .maxVCPUs: return Int32(CKVM_CAP_MAX_VCPUS)
        case .recommendedVCPUs: return Int32(CKVM_CAP_NR_VCPUS)
        case .getTSCKHz: return Int32(CKVM_CAP_GET_TSC_KHZ)
        case .irqfd: return Int32(CKVM_CAP_IRQFD)
        case .ioeventfd: return Int32(CKVM_CAP_IOEVENTFD)
        case .tscDeadlineTimer: return Int32(CKVM_CAP_TSC_DEADLINE_TIMER)
        }
    }
}

/// An open handle on /dev/kvm: capabilities, supported CPUID, VM creation.
public final class KVMSystem: Sendable {
    public let fd: Int32
    /// Size of each vCPU's kvm_run mapping.
    public let vcpuMmapSize: Int

    public init(path: String = "/dev/kvm") throws(KVMError) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .open(path: path, errno: errno) }
        self.fd = fd
        let version = ckvm_get_api_version(fd)
        guard version == Int32(CKVM_API_VERSION) else {
            close(fd)
            throw version < 0 ? .ioctl("KVM_GET_API_VERSION", errno: -version) : .apiVersion(version)
        }
        let size = ckvm_get_vcpu_mmap_size(fd)
        guard size > 0 else {
            close(fd)
            throw .ioctl("KVM_GET_VCPU_MMAP_SIZE", errno: -size)
        }
        vcpuMmapSize = Int(size)
    }

    deinit { close(fd) }

    /// The capability's value (0 when absent).
    public func capability(_ cap: KVMCapability) -> Int {
        Int(max(0, ckvm_check_extension(fd, cap.raw)))
    }

    /// Throws unless every capability Vireo relies on is present.
    public func requireCapabilities() throws(KVMError) {
        let needed: [(KVMCapability, String)] = [
            (.irqchip, "KVM_CAP_IRQCHIP"), (.userMemory, "KVM_CAP_USER_MEMORY"), (.pit2, "KVM_CAP_PIT2"),
            (.immediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
        ]
        for (cap, name) in needed where capability(cap) == 0 { throw .missingCapability(name) }
    }

    /// Largest vCPU count KVM accepts for one VM.
    public var maxVCPUs: Int {
        let limit = capability(.maxVCPUs)
        return limit > 0 ? limit : Swift.max(capability(.recommendedVCPUs), 4)
    }

    /// The CPUID leaves KVM can expose to a guest on this host.
    public func supportedCPUID() throws(KVMError) -> [CPUIDEntry] {
        let container = UnsafeMutablePointer<ckvm_cpuid>.allocate(capacity: 1)
        defer { container.deallocate() }
        memset(container, 0, MemoryLayout<ckvm_cpuid>.size)
        _ = try check(ckvm_get_supported_cpuid(fd, container), "KVM_GET_SUPPORTED_CPUID")
        let count = Int(container.pointee.nent)
        return withUnsafePointer(to: &container.pointee.entries) { tuple in
            tuple.withMemoryRebound(to: kvm_cpuid_entry2.self, capacity: Int(CKVM_MAX_CPUID_ENTRIES)) { entries in
                (0..<count).map { i in
                    let e = entries[i]
                    return CPUIDEntry(function: e.function, index: e.index, flags: e.flags,
                                      eax: e.eax, ebx: e.ebx, ecx: e.ecx, edx: e.edx)
                }
            }
        }
    }

    /// Creates an empty VM.
    public func createVM() throws(KVMError) -> VirtualMachine {
        let vmfd = try check(ckvm_create_vm(fd, 0), "KVM_CREATE_VM")
        return VirtualMachine(fd: vmfd, system: self)
    }
}
