import KVM
import VMM
#if canImport(Glibc)
import Glibc
#endif

/// `vireo-vmm`'s entry: hand-parsed arguments, one VM, the VM's exit status as the process's.
package enum VMMMain {
    /// Parses `CommandLine.arguments` and runs; bad input prints one line and exits 2.
    package static func run() -> Never {
        runToExit {
            switch try VMMArguments.parse(Array(CommandLine.arguments.dropFirst())) {
            case let .help(text):
                print(text)
            case .version:
                print("vireo \(vireoVersion)")
                print("host: \(HostKind.detect())")
            case .pool:
                try WarmPoolMember.run()
            case let .run(flags):
                try SpecRunner(spec: try flags.vmSpec(), verbose: flags.verbose).run()
            }
        }
    }

    /// Runs `body` and exits: 0 when it returns, a VMExit's code, or 2 after one line for any other error.
    static func runToExit(_ body: () throws -> Void) -> Never {
        do {
            try body()
            exit(0)
        } catch let request as VMExit {
            exit(request.code)
        } catch {
            printError("vireo: \(error)\n")
            exit(2)
        }
    }
}
