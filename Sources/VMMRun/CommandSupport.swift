#if canImport(Glibc)
import Glibc
#endif

/// The version `vireo version` prints.
public let vireoVersion = "0.1.0"

/// Carries a VM's exit status out of `run()` without ArgumentParser treating it as an error message.
package struct VMExit: Error {
    package let code: Int32
    package init(code: Int32) { self.code = code }
}

/// Bad user input: reported as one line, exit status 2.
package struct UsageError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// Writes a message to stderr unbuffered (stdio's `stderr` global is not concurrency-safe in Swift 6).
package func printError(_ message: String) {
    var text = message
    text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}

