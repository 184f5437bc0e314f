import ArgumentParser
// VireoCLI reaches VMExit, UsageError, printError and vireoVersion through this module, as before
// they moved into the ArgumentParser-free VMMRun that the lean `vireo-vmm` links alone.
@_exported import VMMRun
#if canImport(Glibc)
import Glibc
#endif

/// Parses the process arguments for `root` and runs the command; bad input prints one line and
/// exits 2, a VM's exit status (`VMExit`) becomes the process's.
package func runCommandLine(_ root: any ParsableCommand.Type) -> Never {
    do {
        var command = try root.parseAsRoot(nil)
        try command.run()
        Glibc.exit(0)
    } catch let exitRequest as VMExit {
        Glibc.exit(exitRequest.code)
    } catch {
        let code = root.exitCode(for: error)
        if code == .success {
            print(root.fullMessage(for: error))
            Glibc.exit(0)
        }
        let message = root.message(for: error)
        printError("vireo: \(message.isEmpty ? "\(error)" : message)\n")
        Glibc.exit(2)
    }
}

extension UsageError {
    /// The same line as ArgumentParser's own validation errors (for `validate()`).
    var validation: ValidationError { ValidationError(description) }
}
