extension SpecValidator {
    /// Published ports and fixed addresses: passt's (mode user) only, each host port once.
    static func validatePublishing(_ net: VMSpec.Net, field: String) throws(SpecError) {
        let ports = net.ports ?? []
        if net.mode != .user && !ports.isEmpty { throw SpecError("\(field).ports", " are only for mode user (passt publishes them)") }
        if net.mode != .user && net.ipv4 != nil { throw SpecError("\(field).ipv4", " is only for mode user") }
        guard ports.count <= SpecLimits.portForwards else {
            throw SpecError("\(field).ports", " may list at most \(SpecLimits.portForwards) ports, got \(ports.count)")
        }
        for (index, port) in ports.enumerated() {
            let name = "\(field).ports[\(index)]"
            guard port.hostPort > 0 else { throw SpecError("\(name).hostPort", " must be between 1 and 65535, got 0") }
            guard port.guestPort > 0 else { throw SpecError("\(name).guestPort", " must be between 1 and 65535, got 0") }
            if let address = port.hostAddress, VMSpec.parseIPv4(address) == nil {
                throw SpecError("\(name).hostAddress", " must be an IPv4 address (dotted quad), got \(JSONValue.string(address).serialized())")
            }
            if ports[..<index].contains(where: { $0.transport == port.transport && $0.hostPort == port.hostPort }) {
                throw SpecError("\(name).hostPort", ": host port \(port.hostPort)/\(port.transport.rawValue) is published twice")
            }
        }
        if let ipv4 = net.ipv4 {
            for (key, value) in [("address", ipv4.address), ("gateway", ipv4.gateway), ("dns", ipv4.dns ?? ipv4.gateway)]
            where VMSpec.parseIPv4(value) == nil {
                throw SpecError("\(field).ipv4.\(key)", " must be an IPv4 address (dotted quad), got \(JSONValue.string(value).serialized())")
            }
            guard (8...30).contains(ipv4.prefixLength) else {
                throw SpecError("\(field).ipv4.prefixLength", " must be between 8 and 30, got \(ipv4.prefixLength)")
            }
        }
    }
}
