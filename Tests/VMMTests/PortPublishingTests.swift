import Testing
import VMSpec
@testable import VMM

/// `--net user,publish=…,address=…` parsing and the passt options it becomes.
@Suite struct PortPublishingTests {
    @Test func netOptionsBecomePasstOptions() throws {
        let spec = try NetSpec.parse("user,publish=8080:80,publish=127.0.0.1:5353:53/udp,address=10.0.2.15/24,gateway=10.0.2.2,dns=10.0.2.3", index: 0)
        #expect(spec.ports == [VMSpec.PortForward(hostPort: 8080, guestPort: 80),
                               VMSpec.PortForward(transport: .udp, hostAddress: "127.0.0.1", hostPort: 5353, guestPort: 53)])
        #expect(spec.ipv4 == VMSpec.Net.IPv4.userDefault)
        #expect(PasstProcess.options(ports: spec.ports, ipv4: spec.ipv4) ==
                ["-t", "8080:80", "-u", "127.0.0.1/5353:53", "-a", "10.0.2.15", "-n", "24", "-g", "10.0.2.2", "--dns-forward", "10.0.2.3"])
        #expect(PasstProcess.options(ports: [], ipv4: nil).isEmpty)
        // Round trip through the spec, as the daemon hands it to the VMM.
        let config = VMConfig(spec: VMSpec(boot: .restore(directory: "/s"), devices: .init(nets: [VMSpec.Net(mode: .user, ports: spec.ports, ipv4: spec.ipv4)])))
        #expect(config.nets.first?.ports == spec.ports && config.nets.first?.ipv4 == spec.ipv4)
    }

    @Test func badNetOptionsAreRefused() {
        for text in ["user,publish=80", "user,publish=0:80", "user,publish=80:80/sctp", "tap=t0,publish=80:80",
                     "user,address=10.0.2.15", "user,gateway=10.0.2.2", "tap=t0,address=10.0.2.15/24,gateway=10.0.2.2"] {
            #expect(throws: VMMError.self, "\(text)") { try NetSpec.parse(text, index: 0) }
        }
    }
}
