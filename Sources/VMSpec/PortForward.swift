extension VMSpec {
    /// A host port published to the guest (`-p [IP:]HOST:GUEST[/tcp|udp]`, Docker's syntax): passt
    /// listens on the host's port and forwards each connection or datagram to the guest's port.
    public struct PortForward: Codable, Sendable, Equatable {
        public enum Transport: String, Codable, Sendable, CaseIterable { case tcp, udp }

        public var transport: Transport
        /// The host address passt binds (IPv4, dotted quad); nil: every address.
        public var hostAddress: String?
        public var hostPort: UInt16
        public var guestPort: UInt16

        public init(transport: Transport = .tcp, hostAddress: String? = nil, hostPort: UInt16, guestPort: UInt16) {
            self.transport = transport
            self.hostAddress = hostAddress
            self.hostPort = hostPort
            self.guestPort = guestPort
        }

        /// Parses Docker's `[IP:]HOST:GUEST[/tcp|udp]`; the error names what is wrong.
        public static func parse(_ text: String) throws(PortForwardError) -> PortForward {
            var body = Substring(text)
            var transport = Transport.tcp
            if let slash = body.lastIndex(of: "/") {
                let name = String(body[body.index(after: slash)...])
                guard let parsed = Transport(rawValue: name) else {
                    throw PortForwardError(text, "the protocol must be tcp or udp, got '\(name)'")
                }
                transport = parsed
                body = body[..<slash]
            }
            let parts = body.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            let address: String?
            let host: String, guest: String
            switch parts.count {
            case 2: (address, host, guest) = (nil, parts[0], parts[1])
            case 3: (address, host, guest) = (parts[0], parts[1], parts[2])
            default: throw PortForwardError(text, "expected [IP:]HOST_PORT:GUEST_PORT[/tcp|udp] (IPv4 addresses only)")
            }
            if let address, !address.isEmpty, VMSpec.parseIPv4(address) == nil {
                throw PortForwardError(text, "'\(address)' is not an IPv4 address (dotted quad)")
            }
            guard let hostPort = port(host) else { throw PortForwardError(text, "the host port must be 1–65535, got '\(host)'") }
            guard let guestPort = port(guest) else { throw PortForwardError(text, "the guest port must be 1–65535, got '\(guest)'") }
            return PortForward(transport: transport, hostAddress: address?.isEmpty == true ? nil : address,
                               hostPort: hostPort, guestPort: guestPort)
        }

        private static func port(_ text: String) -> UInt16? {
            guard !text.isEmpty, text.utf8.count <= 5, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let value = UInt16(text), value > 0 else { return nil }
            return value
        }

        /// Docker's spelling, e.g. `127.0.0.1:8080:80/tcp`.
        public var text: String { (hostAddress.map { $0 + ":" } ?? "") + "\(hostPort):\(guestPort)/\(transport.rawValue)" }
    }

    /// The dotted quad's four bytes, or nil.
    public static func parseIPv4(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.utf8.count <= 3, part.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let value = UInt8(part) else { return nil }
            bytes.append(value)
        }
        return bytes
    }
}

/// A `-p` value that is not `[IP:]HOST:GUEST[/tcp|udp]`.
public struct PortForwardError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ text: String, _ problem: String) { description = "'\(text)': \(problem)" }
}

extension VMSpec.Net {
    /// Addresses for the guest that the host chooses and gives passt, so the guest can configure its
    /// NIC statically (no DHCP exchange) and both sides agree on them.
    public struct IPv4: Codable, Sendable, Equatable {
        public var address: String
        public var prefixLength: Int
        public var gateway: String
        /// The address the guest sends DNS queries to (passt forwards them to the host's resolver).
        public var dns: String?

        public init(address: String, prefixLength: Int, gateway: String, dns: String? = nil) {
            self.address = address
            self.prefixLength = prefixLength
            self.gateway = gateway
            self.dns = dns
        }

        /// QEMU's user-network plan: guest .15, gateway (the host) .2, DNS .3 in 10.0.2.0/24.
        public static let userDefault = IPv4(address: "10.0.2.15", prefixLength: 24, gateway: "10.0.2.2", dns: "10.0.2.3")
    }
}
