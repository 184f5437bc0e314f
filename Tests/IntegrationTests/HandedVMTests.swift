import Testing
@testable import VMMRun

/// The warm-pool hand-off as the VMM reads it (`vm 1`, the VM directory, the daemon's timeline,
/// then the spec after a `spec` line): the spec is everything after that line, byte for byte, lines
/// inside it never count as timeline marks, and a hand-off without one is refused.
@Suite struct HandedVMTests {
    /// Five descriptors that are not open: the parser only counts them.
    let fds: [Int32] = [900, 901, 902, 903, 904]

    @Test func theSpecIsEverythingAfterItsLine() throws {
        let spec = "{\n  \"version\": 1,\nt fake=5\n  \"x\": \"a\\nb\"\n}"
        let handed = try WarmPoolMember.HandedVM(bytes: Array(("vm 1\n/srv/vms/a\nt daemon: routed=12.5\nt daemon: spec made=12.75\nspec\n" + spec).utf8), fds: fds)
        #expect(handed.directoryPath == "/srv/vms/a")
        #expect(handed.timeline.map(\.0) == ["daemon: routed", "daemon: spec made"])
        #expect(handed.spec == Array(spec.utf8))
    }

    @Test func aHandOffWithoutASpecIsRefused() {
        #expect(throws: UsageError.self) { try WarmPoolMember.HandedVM(bytes: Array("vm 1\n/srv/vms/a\nt daemon: routed=12.5\n".utf8), fds: fds) }
    }

    @Test func oddLinesAreLeftOutOrRefused() throws {
        let handed = try WarmPoolMember.HandedVM(bytes: Array("vm 1\n/srv/vms/a\nt =1\nt a;b=2\nt nan=x\nt ok=3\nspec".utf8), fds: fds)
        #expect(handed.timeline.map(\.0) == ["ok"] && handed.spec == [])
        #expect(throws: UsageError.self) { try WarmPoolMember.HandedVM(bytes: Array("vm 1\nrelative/dir\nspec\n{}".utf8), fds: fds) }
    }

    @Test func anInvalidInlineSpecIsOneClearError() {
        #expect(throws: UsageError.self) { try SpecFile.parse(Array("{\"version\": 99}".utf8), what: "pool: the hand-off's spec") }
        let error = #expect(throws: UsageError.self) { try SpecFile.parse(Array("not json".utf8), what: "pool: the hand-off's spec") }
        #expect(error?.description.hasPrefix("pool: the hand-off's spec: ") == true, "\(error?.description ?? "no error")")
    }
}
