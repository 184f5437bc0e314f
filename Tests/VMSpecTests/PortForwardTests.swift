import Testing
import VMSpec

/// Docker's `-p` syntax and the validator's rules for published ports and fixed addresses.
@Suite struct PortForwardTests {
    @Test func dockerSyntaxParses() throws {
        #expect(try VMSpec.PortForward.parse("8080:80") == VMSpec.PortForward(hostPort: 8080, guestPort: 80))
        #expect(try VMSpec.PortForward.parse("127.0.0.1:8080:80/tcp") == VMSpec.PortForward(hostAddress: "127.0.0.1", hostPort: 8080, guestPort: 80))
        #expect(try VMSpec.PortForward.parse("53:53/udp") == VMSpec.PortForward(transport: .udp, hostPort: 53, guestPort: 53))
        #expect(try VMSpec.PortForward.parse(":8080:80").hostAddress == nil)
        #expect(try VMSpec.PortForward.parse("127.0.0.1:8080:80/udp").text == "127.0.0.1:8080:80/udp")
    }

    @Test(arguments: [
        ("80", "expected [IP:]HOST_PORT:GUEST_PORT"), ("0:80", "host port must be 1–65535, got '0'"),
        ("70000:80", "host port must be 1–65535, got '70000'"), ("80:x", "guest port must be 1–65535, got 'x'"),
        ("80:80/sctp", "tcp or udp, got 'sctp'"), ("1.2.3:80:80", "'1.2.3' is not an IPv4 address"),
        ("[::1]:80:80", "expected [IP:]HOST_PORT:GUEST_PORT"), ("a:b:c:d", "expected [IP:]HOST_PORT:GUEST_PORT"),
        ("+80:80", "host port must be 1–65535"),
    ])
    func badValuesSayWhatIsWrong(text: String, problem: String) {
        do {
            _ = try VMSpec.PortForward.parse(text)
            Issue.record("'\(text)' was accepted")
        } catch {
            #expect(error.description.hasPrefix("'\(text)': ") && error.description.contains(problem), "\(error)")
        }
    }

    @Test func validatorChecksPortsAndAddresses() throws {
        func spec(_ net: VMSpec.Net) -> VMSpec { VMSpec(boot: .restore(directory: "/s"), devices: .init(nets: [net])) }
        let good = VMSpec.Net(mode: .user, ports: [.init(hostPort: 8080, guestPort: 80), .init(transport: .udp, hostPort: 8080, guestPort: 80)],
                              ipv4: .userDefault)
        try SpecValidator.validate(spec(good))
        let text = try spec(good).jsonText()
        #expect(try VMSpec.parse(Array(text.utf8)) == spec(good), "\(text)")
        let bad: [(VMSpec.Net, String)] = [
            (VMSpec.Net(mode: .tap, tap: "t0", ports: [.init(hostPort: 1, guestPort: 1)]), "field 'nets[0].ports' are only for mode user"),
            (VMSpec.Net(mode: .user, ports: [.init(hostPort: 80, guestPort: 1), .init(hostPort: 80, guestPort: 2)]),
             "field 'nets[0].ports[1].hostPort': host port 80/tcp is published twice"),
            (VMSpec.Net(mode: .user, ports: [.init(hostAddress: "localhost", hostPort: 80, guestPort: 1)]), "field 'nets[0].ports[0].hostAddress' must be an IPv4 address"),
            (VMSpec.Net(mode: .user, ports: [.init(hostPort: 0, guestPort: 1)]), "field 'nets[0].ports[0].hostPort' must be between 1 and 65535"),
            (VMSpec.Net(mode: .user, ipv4: .init(address: "10.0.2.15", prefixLength: 31, gateway: "10.0.2.2")), "field 'nets[0].ipv4.prefixLength' must be between 8 and 30"),
            (VMSpec.Net(mode: .user, ipv4: .init(address: "10.0.2.15", prefixLength: 24, gateway: "gw")), "field 'nets[0].ipv4.gateway' must be an IPv4 address"),
            (VMSpec.Net(mode: .user, ports: Array(repeating: .init(hostPort: 1, guestPort: 1), count: 65)), "may list at most 64 ports"),
        ]
        for (net, message) in bad {
            #expect(throws: SpecError.self) { try SpecValidator.validate(spec(net)) }
            do { try SpecValidator.validate(spec(net)) } catch { #expect(error.message(.api).hasPrefix(message) || error.message(.api).contains(message), "\(error.message(.api))") }
        }
        // A spec written before ports existed still reads (the fields are optional).
        let old = #"{"version":1,"machine":{"cpus":1,"memoryBytes":536870912},"boot":{"restore":"/s"},"devices":{"disks":[],"nets":[{"mode":"user"}],"rng":false,"debugExit":false},"console":{"toStdout":true,"fromStdin":true},"control":{},"resources":{},"isolation":{"seccomp":"on","jail":false}}"#
        #expect(try VMSpec.parse(Array(old.utf8)).devices.nets == [VMSpec.Net(mode: .user)])
    }
}
