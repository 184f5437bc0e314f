import KVM
import Memory
import Synchronization

/// Registers guest RAM with KVM on a thread of its own while the machine is assembled: the first
/// KVM_SET_USER_MEMORY_REGION of a VM waits for an SRCU grace period in the kernel (4–6 ms on an
/// idle host, off-CPU), which the device setup, the kernel's and initrd's reads into guest RAM and
/// the vCPUs' creation overlap. KVM's own locks order it against the other VM ioctls; `finish()`
/// joins it before the first vCPU state that names guest addresses (MSRs) is set.
final class MemorySlotSetup: Sendable {
    private final class Failure: Sendable {
        let message = Mutex<String?>(nil)
    }

    private let thread: OSThread?
    private let failure = Failure()

    /// Slots a warm-pool VMM registered ahead (KVMPrewarm), with guest RAM mapped over them.
    static var registered: MemorySlotSetup { MemorySlotSetup() }

    private init() { thread = nil }

    init(vm: VirtualMachine, memory: GuestMemory) {
        let failure = self.failure
        let regions = memory.regions
        thread = OSThread(name: "vireo-memslots") {
            do throws(KVMError) {
                for (slot, region) in regions.enumerated() {
                    try vm.setMemoryRegion(slot: UInt32(slot), guestAddress: region.guestBase, size: region.size, host: region.host)
                }
            } catch {
                failure.message.withLock { $0 = error.description }
            }
        }
    }

    deinit { thread?.join() }  // a machine that failed to assemble never leaves the thread behind

    /// Waits for the slots; the KVM error as a VMMError when one was refused.
    func finish() throws(VMMError) {
        thread?.join()
        if let message = failure.message.withLock({ $0 }) { throw .kvm(message) }
    }
}
