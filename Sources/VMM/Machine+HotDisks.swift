import Devices
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Hot attach of disks to empty virtio-blk slots (a pod's containers, `vireo run --image
// --spare-disks N`): the backing arrives as descriptors over the control socket, because a jailed
// VMM cannot open host paths. The guest sees a config-change interrupt and the new capacity
// (virtio 1.2 §5.2.6.2), as a warm start's restored disks do.

/// Attach and detach requests, one at a time: each checks a slot's state and then changes it.
private let hotDiskRequests = Mutex<Void>(())

extension Machine {
    /// `attach-disk ID` with `descriptors` (taken over: closed on every failure): one raw image
    /// (read-write), or an overlay, its map and its read-only base.
    public func attachDisk(id: String, descriptors: [Int32]) -> ControlReply {
        hotDiskRequests.withLock { _ in attachDiskAlone(id: id, descriptors: descriptors) }
    }

    private func attachDiskAlone(id: String, descriptors: [Int32]) -> ControlReply {
        func refuse(_ message: String) -> ControlReply {
            for fd in descriptors { close(fd) }
            return .failure(message)
        }
        guard let slot = blockSlot(id) else { return refuse("no disk with id=\(ControlServer.printable(id)) in this VM") }
        guard let block = slot.device as? VirtioBlock else { return refuse("no disk with id=\(ControlServer.printable(id))") }
        guard block.advertisedCapacity == 0, !block.holdsHotAttachedDisk.load(ordering: .relaxed) else {
            return refuse("disk \(ControlServer.printable(id)) is not empty; detach what it holds first")
        }
        let backend: any BlockBackend
        do {
            switch descriptors.count {
            case 1: backend = try FileBlockBackend(descriptor: descriptors[0], name: "attached disk \(id)", readOnly: false)
            case 3: backend = try OverlayBlockBackend(overlayFD: descriptors[0], mapFD: descriptors[1], baseFD: descriptors[2], name: "attached disk \(id)")
            default: return refuse("attach-disk takes 1 descriptor (a raw image) or 3 (overlay, map, base) passed with the request; got \(descriptors.count)")
            }
        } catch {
            return .failure("attach-disk \(ControlServer.printable(id)): \(error)")  // the backends closed what they were given
        }
        guard backend.size >= VirtioBlock.sectorSize else { return .failure("attach-disk \(ControlServer.printable(id)): the disk is empty") }
        do { try block.attach(backend) } catch { return .failure("attach-disk \(ControlServer.printable(id)): \(error)") }
        block.holdsHotAttachedDisk.store(true, ordering: .relaxed)
        slot.transport.signalConfigChange()
        return ControlReply(ok: true, state: "attached")
    }

    /// `detach-disk ID`: the slot is empty again (capacity 0, a config-change interrupt); its old
    /// backing is closed once the device's worker has switched away from it.
    public func detachDisk(id: String) -> ControlReply {
        hotDiskRequests.withLock { _ in detachDiskAlone(id: id) }
    }

    private func detachDiskAlone(id: String) -> ControlReply {
        guard let slot = blockSlot(id), let block = slot.device as? VirtioBlock else {
            return .failure("no disk with id=\(ControlServer.printable(id)) in this VM")
        }
        guard block.holdsHotAttachedDisk.load(ordering: .relaxed) else {
            return .failure("disk \(ControlServer.printable(id)) holds no disk attached with attach-disk")
        }
        do { try block.attach(EmptyBlockBackend()) } catch { return .failure("detach-disk \(ControlServer.printable(id)): \(error)") }
        block.holdsHotAttachedDisk.store(false, ordering: .relaxed)
        slot.transport.signalConfigChange()
        return ControlReply(ok: true, state: "detached")
    }

    private func blockSlot(_ id: String) -> VirtioDevices.Slot? {
        virtio.slots.first { ($0.device as? VirtioBlock)?.serialName == id }
    }
}
