import Foundation
import Testing

/// Issue 12, finding 4: `vireo run` as root without `--uid`/`--jail` says once that the VMM keeps
/// root's privileges; with `--uid` it says nothing of the kind.
@Suite(.enabled { try TestEnvironment.available("RootWarningTests", .kvm, .root, .micro("poweroff")) })
struct RootWarningTests {
    private static let warning = "running the VMM as root without --uid or --jail"

    private func stderr(_ extra: [String]) throws -> String {
        let kernel = try #require(TestEnvironment.micro("poweroff"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin"] + extra)
        defer { guest.stop() }
        #expect(guest.waitForExit(timeout: 30) == 0, "stderr: \(guest.errorOutput)")
        return guest.errorOutput
    }

    @Test func rootWithoutUIDWarnsOnce() throws {
        let output = try stderr([])
        #expect(output.components(separatedBy: RootWarningTests.warning).count == 2, "\(output)")
        #expect(output.contains("docs/security.md"))
    }

    @Test func aGivenUIDSilencesIt() throws {
        #expect(!(try stderr(["--uid", "nobody"])).contains(RootWarningTests.warning))
    }
}
