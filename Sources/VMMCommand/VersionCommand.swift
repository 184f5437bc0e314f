import ArgumentParser
import KVM

/// `vireo version`: the Vireo version and what this host's KVM is.
package struct VersionCommand: ParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(commandName: "version", abstract: "Print Vireo's version and the host's KVM kind.")

    package func run() throws {
        print("vireo \(vireoVersion)")
        print("host: \(HostKind.detect())")
    }
}
