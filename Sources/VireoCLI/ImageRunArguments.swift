import Images
import VMSpec

/// `vireo run [OPTIONS] --image REF [--] [CMD ARGS…]` split into the image's own options, the
/// options `vireo run` itself takes (passed on untouched), and the command. As with `docker run`,
/// everything after the image reference is the command.
struct ImageRunArguments {
    var reference = ""
    var command: [String] = []
    var environment: [String] = []
    var workingDirectory: String?
    var user: String?
    var entrypoint: String?
    var hostname: String?
    var stateDirectory: String?
    var kernel: String?
    var initrd: String?
    var extraCmdline: String?
    var insecureRegistry = false
    /// `--cold`: boot the guest kernel even when a warm-start snapshot could be restored.
    var cold = false
    /// `-p [IP:]HOST:GUEST[/tcp|udp]`, in order.
    var published: [VMSpec.PortForward] = []
    /// `--ulimit NAME=SOFT[:HARD]`.
    var resourceLimits: [RunSpec.ResourceLimit] = []
    /// `-t`: a terminal for the program.
    var terminal = false
    /// `--spare-disks N`: N empty disk slots (ids vireo-slot-0…) that disks can be hot attached to
    /// through the VMM's `--api-socket` (`attach-disk`): a pod's containers (containerd shim).
    var spareDisks = 0
    /// The most spare slots: 10 virtio devices fit the VM, and an image run has 3 of its own.
    static let maximumSpareDisks = 7
    /// Options for `vireo run` (memory, cpus, net, isolation, …).
    var passthrough: [String] = []

    /// Options that take a value, by every spelling.
    nonisolated(unsafe) private static let valued: [String: WritableKeyPath<ImageRunArguments, String?>] = [
        "--workdir": \.workingDirectory, "-w": \.workingDirectory, "--user": \.user, "-u": \.user,
        "--entrypoint": \.entrypoint, "--hostname": \.hostname, "--state-dir": \.stateDirectory,
        "--kernel": \.kernel, "--initrd": \.initrd, "--cmdline": \.extraCmdline,
    ]

    /// Parses the arguments after `run`; throws a one-line usage error.
    static func parse(_ arguments: [String]) throws -> ImageRunArguments {
        var result = ImageRunArguments()
        var index = 0
        var sawImage = false
        while index < arguments.count {
            var argument = arguments[index]
            var inlineValue: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                inlineValue = String(argument[argument.index(after: equals)...])
                argument = String(argument[..<equals])
            }
            func value() throws -> String {
                if let inlineValue { return inlineValue }
                index += 1
                guard index < arguments.count else { throw ImageRunUsage("\(argument) needs a value") }
                return arguments[index]
            }
            if argument == "--image" {
                result.reference = try value()
                guard !result.reference.isEmpty else { throw ImageRunUsage("--image needs an image reference") }
                var rest = Array(arguments[(index + 1)...])
                if rest.first == "--" { rest.removeFirst() }
                result.command = rest
                sawImage = true
                break
            } else if argument == "--env" || argument == "-e" {
                result.environment.append(try value())
            } else if let path = valued[argument] {
                result[keyPath: path] = try value()
            } else if argument == "-p" || argument == "--publish" {
                let text = try value()
                do { result.published.append(try VMSpec.PortForward.parse(text)) } catch {
                    throw ImageRunUsage("-p \(error)")
                }
                if let last = result.published.last,
                   result.published.dropLast().contains(where: { $0.transport == last.transport && $0.hostPort == last.hostPort }) {
                    throw ImageRunUsage("-p '\(text)': host port \(last.hostPort)/\(last.transport.rawValue) is published twice")
                }
            } else if argument == "--ulimit" {
                let text = try value()
                do { result.resourceLimits.append(try RunSpec.ResourceLimit.parse(text)) } catch {
                    throw ImageRunUsage("\(error)")
                }
            } else if argument == "-t" || argument == "--tty" {
                result.terminal = true
            } else if argument == "-it" || argument == "-ti" {
                result.terminal = true  // stdin is always attached; -i is accepted out of Docker habit
            } else if argument == "-i" || argument == "--interactive" {
                // stdin is always attached: accepted out of Docker habit
            } else if argument == "--insecure-registry" {
                result.insecureRegistry = true
            } else if argument == "--spare-disks" {
                let text = try value()
                guard let count = Int(text), (0...maximumSpareDisks).contains(count) else {
                    throw ImageRunUsage("--spare-disks takes a number from 0 to \(maximumSpareDisks) (an image VM holds at most 10 virtio devices); got '\(text)'")
                }
                result.spareDisks = count
            } else if argument == "--cold" {
                result.cold = true
            } else if argument == "--restore" {
                throw ImageRunUsage("--restore cannot be used with --image")
            } else {
                result.passthrough.append(arguments[index])
            }
            index += 1
        }
        guard sawImage else { throw ImageRunUsage("--image needs an image reference") }
        var passthrough = result.passthrough
        _ = try ImageNetwork.plan(published: result.published, passthrough: &passthrough)  // refuse -p without passt now
        return result
    }
}

/// A mistake on the `vireo run --image` command line.
struct ImageRunUsage: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
