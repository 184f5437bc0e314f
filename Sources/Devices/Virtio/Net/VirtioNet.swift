import Memory
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

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
    // Counters: relaxed atomic adds per packet, never a lock (status reads come from any thread).
    private let rxPackets = Atomic<UInt64>(0), rxBytes = Atomic<UInt64>(0)
    private let txPackets = Atomic<UInt64>(0), txBytes = Atomic<UInt64>(0)
    private let rxDropped = Atomic<UInt64>(0), txDropped = Atomic<UInt64>(0)
    private let rxWaits = Atomic<UInt64>(0), txWaits = Atomic<UInt64>(0)
    private let closedFlag = Atomic<Bool>(false)

    // Worker-thread state (serialised by the transport).
    let frame: UnsafeMutableRawBufferPointer
    var frameLength: Int?
    var heldChain: DescriptorChain?
    let txFrame: UnsafeMutableRawBufferPointer
    var txHeldLength: Int?
    /// iovecs over guest buffers for the backend, one list per direction (worker thread only).
    private let rxVectors = UnsafeMutableBufferPointer<iovec>.allocate(capacity: NetVectors.capacity)
    private let txVectors = UnsafeMutableBufferPointer<iovec>.allocate(capacity: NetVectors.capacity)
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
        rxVectors.deallocate()
        txVectors.deallocate()
    }

    public var statistics: VirtioNetStatistics {
        var s = VirtioNetStatistics()
        s.rxPackets = rxPackets.load(ordering: .relaxed)
        s.rxBytes = rxBytes.load(ordering: .relaxed)
        s.txPackets = txPackets.load(ordering: .relaxed)
        s.txBytes = txBytes.load(ordering: .relaxed)
        s.rxDropped = rxDropped.load(ordering: .relaxed)
        s.txDropped = txDropped.load(ordering: .relaxed)
        s.rxWaits = rxWaits.load(ordering: .relaxed)
        s.txWaits = txWaits.load(ordering: .relaxed)
        s.backendClosed = closedFlag.load(ordering: .relaxed)
        return s
    }

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
            rxDropped.wrappingAdd(1, ordering: .relaxed)
        }
        if txHeldLength != nil {
            txHeldLength = nil
            txDropped.wrappingAdd(1, ordering: .relaxed)
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

    /// The virtio_net_hdr of every received frame: no flags, GSO none, num_buffers 1 (no MRG_RXBUF).
    private static let receiveHeader: (UInt64, UInt32) = (0, UInt32(1 << 16).littleEndian)

    /// Frames go from the backend straight into the guest's buffer (one readv for a TAP, one copy
    /// out of passt's stream for the stream backend). With no buffer posted, one frame is taken
    /// into the device's own and held (so nothing more is read: backpressure) until the driver
    /// refills the queue and notifies it.
    private func receive(_ activation: VirtioActivation) throws(VirtioError) {
        guard let queue = activation.queue(VirtioNet.receiveQueue) else { return }
        let memory = activation.memory
        for _ in 0..<VirtioNet.batchLimit {
            let popped: DescriptorChain?
            if let held = heldChain { popped = held } else { popped = try queue.popAvailable() }
            guard let chain = popped else {
                if frameLength == nil {
                    switch backend.receive(into: frame) {
                    case let .frame(length): frameLength = length
                    case .wouldBlock: return
                    case .closed: backendClosed(); return
                    }
                }
                rxWaits.wrappingAdd(1, ordering: .relaxed)
                return
            }
            heldChain = nil
            guard chain.writableLength >= VirtioNet.headerSize + VirtioNet.minFrameLength else {
                throw .malformedRequest("net receive buffer of \(chain.writableLength) bytes cannot hold a header and a frame")
            }
            let capacity = chain.writableLength - VirtioNet.headerSize
            let length: Int
            let gathered = frameLength == nil
                ? try chain.gather(writable: true, from: VirtioNet.headerSize, length: capacity, memory: memory, into: rxVectors)
                : (count: 0, bytes: 0)
            if frameLength == nil && gathered.bytes == capacity {
                switch backend.receive(into: UnsafeBufferPointer(rebasing: rxVectors[0..<gathered.count]), capacity: capacity, spill: frame) {
                case .wouldBlock: heldChain = chain; return
                case .closed: heldChain = chain; backendClosed(); return
                case let .frame(received): length = received
                }
            } else {
                // A frame that waited for a buffer (or came with a snapshot), or a buffer in more
                // pieces than the vectors hold: through the device's own buffer.
                if frameLength == nil {
                    switch backend.receive(into: frame) {
                    case let .frame(received): frameLength = received
                    case .wouldBlock: heldChain = chain; return
                    case .closed: heldChain = chain; backendClosed(); return
                    }
                }
                length = frameLength!
                if length <= capacity {
                    try chain.write(to: memory, offset: VirtioNet.headerSize, from: UnsafeRawBufferPointer(rebasing: frame[0..<length]))
                }
                frameLength = nil
            }
            guard length <= capacity else {
                // Too big for this driver's buffers (they are all alike): drop it, keep the buffer.
                heldChain = chain
                rxDropped.wrappingAdd(1, ordering: .relaxed)
                continue
            }
            var header = VirtioNet.receiveHeader
            try withUnsafeBytes(of: &header) { (raw) throws(VirtioError) in
                _ = try chain.write(to: memory, offset: 0, from: UnsafeRawBufferPointer(rebasing: raw[0..<VirtioNet.headerSize]))
            }
            try queue.addUsed(head: chain.head, length: UInt32(VirtioNet.headerSize + length))
            rxPackets.wrappingAdd(1, ordering: .relaxed)
            rxBytes.wrappingAdd(UInt64(length), ordering: .relaxed)
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
                rxDropped.wrappingAdd(dropped, ordering: .relaxed)
                return
            case .closed:
                rxDropped.wrappingAdd(dropped, ordering: .relaxed)
                backendClosed()
                return
            }
        }
        rxDropped.wrappingAdd(dropped, ordering: .relaxed)
        kick.signal()
    }

    private func backendClosed() {
        closedFlag.store(true, ordering: .relaxed)
        if !closedLogged {
            closedLogged = true
            log("virtio-net: the network backend closed; the NIC gets no more traffic")
        }
    }

    // MARK: transmit (guest → backend)

    /// Frames go from the guest's buffers straight to the backend (one writev/sendmsg); only a
    /// frame the backend cannot take now is copied, held, and sent once it is writable again.
    private func transmit(_ activation: VirtioActivation) throws(VirtioError) {
        guard let queue = activation.queue(VirtioNet.transmitQueue) else { return }
        let memory = activation.memory
        if let held = txHeldLength {
            guard sendHeld(held) else { return }
        }
        for _ in 0..<VirtioNet.batchLimit {
            guard let chain = try queue.popAvailable() else { return }
            let frameBytes = chain.readableLength - VirtioNet.headerSize
            var valid = frameBytes >= VirtioNet.minFrameLength && frameBytes <= VirtioNet.maxFrameLength
            if valid {
                // flags and gso_type, the header's first two bytes.
                var header: (UInt8, UInt8) = (0, 0)
                try withUnsafeMutableBytes(of: &header) { (raw) throws(VirtioError) in
                    _ = try chain.read(from: memory, offset: 0, into: raw)
                }
                // Neither checksum nor segmentation offload was offered: such frames are invalid.
                valid = header.0 & VirtioNet.headerNeedsChecksum == 0 && header.1 == VirtioNet.gsoNone
            }
            guard valid else {
                txDropped.wrappingAdd(1, ordering: .relaxed)
                try queue.addUsed(head: chain.head, length: 0)
                continue
            }
            let gathered = try chain.gather(writable: false, from: VirtioNet.headerSize, length: frameBytes,
                                            memory: memory, into: txVectors)
            let result: NetSendResult
            if gathered.bytes == frameBytes {
                result = backend.send(gathering: UnsafeBufferPointer(rebasing: txVectors[0..<gathered.count]),
                                      length: frameBytes, scratch: txFrame)
            } else {
                // More pieces than the vectors hold (or a chain rewritten under us): copy it first.
                let copied = try chain.read(from: memory, offset: VirtioNet.headerSize,
                                            into: UnsafeMutableRawBufferPointer(rebasing: txFrame[0..<frameBytes]))
                result = backend.send(UnsafeRawBufferPointer(rebasing: txFrame[0..<copied]))
            }
            switch result {
            case .sent:
                txPackets.wrappingAdd(1, ordering: .relaxed)
                txBytes.wrappingAdd(UInt64(frameBytes), ordering: .relaxed)
            case .failed:
                txDropped.wrappingAdd(1, ordering: .relaxed)
            case .wouldBlock:
                // Keep a copy: the buffer goes back to the driver now, the frame waits for the backend.
                let copied = try chain.read(from: memory, offset: VirtioNet.headerSize,
                                            into: UnsafeMutableRawBufferPointer(rebasing: txFrame[0..<frameBytes]))
                hold(copied)
            }
            try queue.addUsed(head: chain.head, length: 0)
            if result == .wouldBlock { return }
        }
        kick.signal()
    }

    /// Sends `txFrame[0..<length]`; false (and the frame held, the poller armed) when the backend would block.
    private func sendHeld(_ length: Int) -> Bool {
        let result = backend.send(UnsafeRawBufferPointer(rebasing: txFrame[0..<length]))
        switch result {
        case .sent:
            txHeldLength = nil
            txPackets.wrappingAdd(1, ordering: .relaxed)
            txBytes.wrappingAdd(UInt64(length), ordering: .relaxed)
            return true
        case .failed:
            txHeldLength = nil
            txDropped.wrappingAdd(1, ordering: .relaxed)
            return true
        case .wouldBlock:
            hold(length)
            return false
        }
    }

    /// `txFrame[0..<length]` waits until the backend's descriptor is writable.
    private func hold(_ length: Int) {
        if txHeldLength == nil { txWaits.wrappingAdd(1, ordering: .relaxed) }
        txHeldLength = length
        if !writableArmed {
            writableArmed = true
            poller.modify(backend.fd, events: [.writable, .oneShot], token: 0)
        }
    }
}
