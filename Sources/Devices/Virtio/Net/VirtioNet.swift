import Memory
import Synchronization

/// Counters of one virtio-net device (read from any thread).
public struct VirtioNetStatistics: Sendable, Equatable {
    public var rxPackets: UInt64 = 0
    public var rxBytes: UInt64 = 0
    public var txPackets: UInt64 = 0
    public var txBytes: UInt64 = 0
    /// Frames from the backend the guest never got: larger than its buffer, or no driver running.
    public var rxDropped: UInt64 = 0
    /// Guest frames not sent: malformed (short, offload flags that were not negotiated) or refused by the backend.
    public var txDropped: UInt64 = 0
    /// Times a frame had to wait because the guest had no receive buffer posted.
    public var rxWaits: UInt64 = 0
    /// Times the backend could not take a frame and transmission paused until it could.
    public var txWaits: UInt64 = 0
    /// The backend closed (e.g. passt exited): no more traffic.
    public var backendClosed = false

    public init() {}
}

/// virtio-net (type 1, virtio 1.2 §5.1): one receive and one transmit queue over a `NetBackend`.
///
/// Features: VIRTIO_NET_F_MAC (the MAC in config space), VIRTIO_NET_F_STATUS (link up) and
/// VIRTIO_NET_F_MTU (1500 by default), and no offloads at all — no CSUM, GUEST_CSUM, TSO/UFO or
/// MRG_RXBUF — so every frame is a complete Ethernet frame with valid checksums in both directions,
/// and each one fits one receive buffer (Linux then posts 1518-byte buffers; the MTU feature keeps
/// a DHCP server's larger MTU option from making the guest expect bigger frames). Every buffer starts
/// with the 12-byte `virtio_net_hdr` (VERSION_1 layout, `num_buffers` = 1 on receive).
///
/// Receive: a frame is read from the backend first, then a buffer popped. With no buffer the frame
/// is held (backpressure: nothing more is read from the backend, whose own buffers then fill) and
/// delivery resumes when the driver refills the receive queue and notifies it. Frames larger than
/// the guest's buffer are dropped and counted, never truncated. Transmit: a frame the backend cannot
/// take is held and transmission pauses until the backend's descriptor is writable again (watched
/// through an `EventPoller`), so the guest's transmit ring fills and its driver stops the queue.
/// @unchecked Sendable: The frame buffers and held chains are touched only by the device's worker, under the transport's engine lock; counters other threads read sit in a Mutex.
public final class VirtioNet: VirtioDevice, @unchecked Sendable {
    public static let receiveQueue = 0, transmitQueue = 1
    public static let queueSize: UInt16 = 256
    /// virtio_net_hdr with num_buffers (always this size with VERSION_1).
    public static let headerSize = 12
    /// Largest Ethernet frame accepted either way (64 KiB of payload plus the Ethernet header).
    public static let maxFrameLength = 65536 + 14
    /// Smallest frame: an Ethernet header.
    public static let minFrameLength = 14
    /// Frames moved per wake before the worker yields to other work (it re-kicks itself).
    static let batchLimit = 256

    public static let featureMTU: UInt64 = 1 << 3
    public static let featureMAC: UInt64 = 1 << 5
    public static let featureStatus: UInt64 = 1 << 16
    static let linkUp: UInt16 = 1
    static let headerNeedsChecksum: UInt8 = 1
    static let gsoNone: UInt8 = 0

    public let mac: [UInt8]
    /// The largest MTU the driver may use (VIRTIO_NET_F_MTU): frames then fit Linux's small buffers.
    public let mtu: UInt16
    public let backend: any NetBackend
    private let poller: EventPoller
    let kick: EventFD
    private let log: @Sendable (String) -> Void
    private let counters = Mutex(VirtioNetStatistics())

    // Worker-thread state (serialised by the transport).
    let frame: UnsafeMutableRawBufferPointer
    var frameLength: Int?
    var heldChain: DescriptorChain?
    let txFrame: UnsafeMutableRawBufferPointer
    var txHeldLength: Int?
    private var writableArmed = false
    private var closedLogged = false

    /// `mac` must be 6 bytes; `log` gets one line when the backend goes away.
    public init(backend: any NetBackend, mac: [UInt8], mtu: UInt16 = 1500,
                log: @escaping @Sendable (String) -> Void = VirtioMMIOTransport.logToStandardError) throws(EventFDError) {
        precondition(mac.count == 6, "a MAC address is 6 bytes")
        self.backend = backend
        self.mac = mac
        self.mtu = mtu
        self.log = log
        poller = try EventPoller()
        kick = try EventFD()
        frame = .allocate(byteCount: VirtioNet.maxFrameLength, alignment: 16)
        txFrame = .allocate(byteCount: VirtioNet.maxFrameLength, alignment: 16)
        poller.add(backend.fd, events: [.oneShot], token: 0)  // armed for writability only when a send would block
    }

    deinit {
        frame.deallocate()
        txFrame.deallocate()
    }

    public var statistics: VirtioNetStatistics { counters.withLock { $0 } }

    public var deviceType: VirtioDeviceType { .network }
    public var deviceFeatures: UInt64 { VirtioNet.featureMTU | VirtioNet.featureMAC | VirtioNet.featureStatus }
    public var queueMaxSizes: [UInt16] { [VirtioNet.queueSize, VirtioNet.queueSize] }

    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        var config = VirtioConfigSpace(size: 12)
        for (index, byte) in mac.enumerated() { config.set(byte, at: index) }
        config.set(VirtioNet.linkUp, at: 6)         // status
        config.set(UInt16(1), at: 8)                // max_virtqueue_pairs (meaningful only with MQ)
        config.set(mtu, at: 10)
        config.read(offset: offset, into: data)
    }

    /// Sources: 0 the backend (input), 1 the poller (backend writable again), 2 the self-kick.
    public var eventSources: [Int32] { [backend.fd, poller.fd, kick.fd] }

    public func activate(_ activation: VirtioActivation) throws(VirtioError) {
        // Frames may have arrived while no driver ran: look at the backend with the new queues.
        kick.signal()
    }

    public func reset() {
        heldChain = nil
        if frameLength != nil {
            frameLength = nil
            counters.withLock { $0.rxDropped += 1 }
        }
        if txHeldLength != nil {
            txHeldLength = nil
            counters.withLock { $0.txDropped += 1 }
        }
    }

    public func processQueue(_ index: Int, activation: VirtioActivation) throws(VirtioError) {
        switch index {
        case VirtioNet.receiveQueue: try receive(activation)
        case VirtioNet.transmitQueue: try transmit(activation)
        default: break
        }
    }

    public func handleEvent(source: Int, activation: VirtioActivation?) throws(VirtioError) {
        switch source {
        case 0:
            if let activation { try receive(activation) } else { discardInput() }
        case 1:
            _ = poller.drain()
            writableArmed = false
            if let activation { try transmit(activation) } else { _ = backend.flush() }
        default:
            kick.consume()
            if let activation {
                try receive(activation)
                try transmit(activation)
            } else {
                discardInput()
            }
        }
    }

    // MARK: receive (backend → guest)

    private func receive(_ activation: VirtioActivation) throws(VirtioError) {
        guard let queue = activation.queue(VirtioNet.receiveQueue) else { return }
        for _ in 0..<VirtioNet.batchLimit {
            if frameLength == nil {
                switch backend.receive(into: frame) {
                case let .frame(length): frameLength = length
                case .wouldBlock: return
                case .closed: backendClosed(); return
                }
            }
            guard let length = frameLength else { return }
            let popped: DescriptorChain?
            if let held = heldChain { popped = held } else { popped = try queue.popAvailable() }
            guard let chain = popped else {
                // No buffer: keep the frame; the driver's next refill notifies the queue.
                counters.withLock { $0.rxWaits += 1 }
                return
            }
            heldChain = nil
            guard chain.writableLength >= VirtioNet.headerSize + VirtioNet.minFrameLength else {
                throw .malformedRequest("net receive buffer of \(chain.writableLength) bytes cannot hold a header and a frame")
            }
            guard chain.writableLength >= VirtioNet.headerSize + length else {
                // Too big for this driver's buffers (they are all alike): drop it, keep the buffer.
                heldChain = chain
                frameLength = nil
                counters.withLock { $0.rxDropped += 1 }
                continue
            }
            var header = [UInt8](repeating: 0, count: VirtioNet.headerSize)
            header[10] = 1  // num_buffers = 1 (no MRG_RXBUF)
            try chain.writeBytes(header, to: activation.memory, offset: 0)
            try chain.write(to: activation.memory, offset: VirtioNet.headerSize,
                            from: UnsafeRawBufferPointer(rebasing: frame[0..<length]))
            try queue.addUsed(head: chain.head, length: UInt32(VirtioNet.headerSize + length))
            frameLength = nil
            counters.withLock {
                $0.rxPackets += 1
                $0.rxBytes += UInt64(length)
            }
        }
        kick.signal()  // more may be waiting: come back after other work
    }

    /// No driver: a NIC without a driver drops what arrives.
    private func discardInput() {
        var dropped: UInt64 = 0
        if frameLength != nil { frameLength = nil; dropped += 1 }
        for _ in 0..<VirtioNet.batchLimit {
            switch backend.receive(into: frame) {
            case .frame: dropped += 1
            case .wouldBlock:
                counters.withLock { $0.rxDropped += dropped }
                return
            case .closed:
                counters.withLock { $0.rxDropped += dropped }
                backendClosed()
                return
            }
        }
        counters.withLock { $0.rxDropped += dropped }
        kick.signal()
    }

    private func backendClosed() {
        counters.withLock { $0.backendClosed = true }
        if !closedLogged {
            closedLogged = true
            log("virtio-net: the network backend closed; the NIC gets no more traffic")
        }
    }

    // MARK: transmit (guest → backend)

    private func transmit(_ activation: VirtioActivation) throws(VirtioError) {
        guard let queue = activation.queue(VirtioNet.transmitQueue) else { return }
        if let held = txHeldLength {
            guard sendHeld(held) else { return }
        }
        for _ in 0..<VirtioNet.batchLimit {
            guard let chain = try queue.popAvailable() else { return }
            let frameBytes = chain.readableLength - VirtioNet.headerSize
            var valid = frameBytes >= VirtioNet.minFrameLength && frameBytes <= VirtioNet.maxFrameLength
            if valid {
                let header = try chain.readBytes(from: activation.memory, offset: 0, count: VirtioNet.headerSize)
                // Neither checksum nor segmentation offload was offered: such frames are invalid.
                valid = header[0] & VirtioNet.headerNeedsChecksum == 0 && header[1] == VirtioNet.gsoNone
            }
            if valid {
                _ = try chain.read(from: activation.memory, offset: VirtioNet.headerSize,
                                   into: UnsafeMutableRawBufferPointer(rebasing: txFrame[0..<frameBytes]))
            } else {
                counters.withLock { $0.txDropped += 1 }
            }
            // The frame is copied out: the buffer goes back to the driver at once.
            try queue.addUsed(head: chain.head, length: 0)
            if valid && !sendHeld(frameBytes) { return }
        }
        kick.signal()
    }

    /// Sends `txFrame[0..<length]`; false (and the frame held, the poller armed) when the backend would block.
    private func sendHeld(_ length: Int) -> Bool {
        let result = backend.send(UnsafeRawBufferPointer(rebasing: txFrame[0..<length]))
        switch result {
        case .sent:
            txHeldLength = nil
            counters.withLock {
                $0.txPackets += 1
                $0.txBytes += UInt64(length)
            }
            return true
        case .failed:
            txHeldLength = nil
            counters.withLock { $0.txDropped += 1 }
            return true
        case .wouldBlock:
            if txHeldLength == nil { counters.withLock { $0.txWaits += 1 } }
            txHeldLength = length
            if !writableArmed {
                writableArmed = true
                poller.modify(backend.fd, events: [.writable, .oneShot], token: 0)
            }
            return false
        }
    }
}
