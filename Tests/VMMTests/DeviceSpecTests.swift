import Testing
@testable import VMM

@Suite struct DeviceSpecTests {
    func message(_ body: () throws(VMMError) -> Void) -> String? {
        do { try body() } catch { return error.description }
        return nil
    }

    @Test func vsockSpecs() throws {
        let spec = try VsockSpec.parse("cid=3,socket=/tmp/v.sock")
        #expect(spec.cid == 3 && spec.socketPath == "/tmp/v.sock")
        #expect(try VsockSpec.parse("socket=/s,cid=4294967294").cid == 4_294_967_294)
        #expect(message { () throws(VMMError) in _ = try VsockSpec.parse("cid=2,socket=/s") }?.contains("out of range") == true)
        #expect(message { () throws(VMMError) in _ = try VsockSpec.parse("cid=4294967295,socket=/s") }?.contains("out of range") == true)
        #expect(message { () throws(VMMError) in _ = try VsockSpec.parse("cid=0,socket=/s") }?.contains("3 to 4294967294") == true)
        #expect(message { () throws(VMMError) in _ = try VsockSpec.parse("cid=x,socket=/s") }?.contains("number") == true)
        #expect(message { () throws(VMMError) in _ = try VsockSpec.parse("cid=5") }?.contains("cid=N,socket=PATH") == true)
        #expect(message { () throws(VMMError) in _ = try VsockSpec.parse("cid=5,socket=/s,extra") }?.contains("unknown option") == true)
        let long = "/" + String(repeating: "a", count: 100)
        #expect(message { () throws(VMMError) in _ = try VsockSpec.parse("cid=5,socket=\(long)") }?.contains("too long") == true)
    }

    @Test func balloonTargetMustFitRAM() throws {
        try BalloonSpec(targetBytes: 64 << 20).validate(memoryBytes: 64 << 20)
        #expect(message { () throws(VMMError) in try BalloonSpec(targetBytes: 65 << 20).validate(memoryBytes: 64 << 20) }?.contains("larger than the guest's RAM") == true)
    }

    @Test func consoleSpecs() throws {
        #expect(try ConsoleSpec.parse("/tmp/hvc.log") == ConsoleSpec(kind: .file, path: "/tmp/hvc.log"))
        #expect(try ConsoleSpec.parse("file=/tmp/x") == ConsoleSpec(kind: .file, path: "/tmp/x"))
        #expect(try ConsoleSpec.parse("socket=/tmp/hvc.sock") == ConsoleSpec(kind: .socket, path: "/tmp/hvc.sock"))
        #expect(message { () throws(VMMError) in _ = try ConsoleSpec.parse("socket=") } != nil)
    }

    @Test func passtIsFoundOnPath() {
        // Debian installs it in /usr/bin; the lookup only reports what exists and is executable.
        if let path = PasstProcess.locate() { #expect(path.hasSuffix("/passt")) }
    }
}
