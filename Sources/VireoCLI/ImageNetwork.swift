import Images
import VMSpec

/// The network of an image VM. Without `--net` and `-p` it has no NIC at all (the init brings up
/// loopback only): a sandbox is offline unless asked, and each NIC costs guest-kernel time at boot.
/// With `-p` (and no `--net`) it gets one passt NIC publishing the ports; with `--net user` the ports
/// go on the first user NIC. A user NIC gets fixed addresses the host chooses and hands both to
/// passt and to the init, which configures eth0 with a few ioctls instead of a DHCP exchange (every
/// guest syscall is slow on PVM hosts, and the host already knows the answer).
struct ImageNetwork {
    /// The `vireo run` options for the NICs (`--net …`), replacing the user's `--net` options.
    var netOptions: [String] = []
    /// What the init configures on eth0, when eth0 is a passt NIC.
    var guest: RunSpec.Network?

    /// Splits `--net` out of `passthrough` and rewrites it with the ports and fixed addresses.
    static func plan(published: [VMSpec.PortForward], passthrough: inout [String]) throws -> ImageNetwork {
        var nets: [String] = []
        var rest: [String] = []
        var index = 0
        while index < passthrough.count {
            let argument = passthrough[index]
            if argument == "--net", index + 1 < passthrough.count {
                nets.append(passthrough[index + 1])
                index += 2
                continue
            }
            if argument.hasPrefix("--net=") { nets.append(String(argument.dropFirst(6))) } else { rest.append(argument) }
            index += 1
        }
        passthrough = rest
        if nets.isEmpty && !published.isEmpty { nets = ["user"] }
        guard let userIndex = nets.firstIndex(where: { $0 == "user" || $0.hasPrefix("user,") }) else {
            if !published.isEmpty {
                throw ImageRunUsage("-p needs user networking (passt): add --net user, or leave --net out (--net tap=… publishes nothing)")
            }
            return ImageNetwork(netOptions: nets.flatMap { ["--net", $0] })
        }
        let fixed = VMSpec.Net.IPv4.userDefault
        let userGaveAddresses = nets[userIndex].split(separator: ",").contains { $0.hasPrefix("address=") || $0.hasPrefix("gateway=") }
        if !userGaveAddresses {
            nets[userIndex] += ",address=\(fixed.address)/\(fixed.prefixLength),gateway=\(fixed.gateway)" + (fixed.dns.map { ",dns=\($0)" } ?? "")
        }
        nets[userIndex] += published.map { ",publish=" + $0.text }.joined()
        // The init configures eth0 only: the first NIC, and only with addresses it knows.
        let guest = userIndex == 0 && !userGaveAddresses
            ? RunSpec.Network(address: fixed.address, prefixLength: fixed.prefixLength, gateway: fixed.gateway, dns: fixed.dns) : nil
        return ImageNetwork(netOptions: nets.flatMap { ["--net", $0] }, guest: guest)
    }
}
