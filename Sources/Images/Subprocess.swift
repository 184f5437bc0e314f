import Foundation

/// Runs the host tools images need (gzip, zstd, mke2fs, skopeo): output to a log file, one-line errors.
enum Tool {
    /// The absolute path of `name` on PATH, or nil.
    static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin:/usr/sbin:/sbin"
        for dir in (path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"]) {
            let candidate = dir + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `name arguments` to completion, appending its output to `log`; throws naming the log on failure.
    static func run(_ name: String, _ arguments: [String], log: String, package: String) throws {
        guard let executable = find(name) else {
            throw ImageError("\(name) is not installed (Debian package \(package); scripts/deps installs it)")
        }
        FileManager.default.createFile(atPath: log, contents: nil)
        guard let output = FileHandle(forWritingAtPath: log) else { throw ImageError("cannot write the log \(log)") }
        defer { try? output.close() }
        output.write(Data("$ \(name) \(arguments.joined(separator: " "))\n".utf8))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { throw ImageError("cannot run \(name): \(error)") }
        process.waitUntilExit()
        guard process.terminationReason == .exit && process.terminationStatus == 0 else {
            throw ImageError("\(name) failed (status \(process.terminationStatus)); its output is in \(log)")
        }
    }
}

/// A layer's uncompressed tar stream: the file itself, or a `gzip -dc`/`zstd -dc` pipe.
final class LayerStream {
    let fd: Int32
    private let process: Process?
    private let file: FileHandle?
    private let errors: Pipe?
    let compression: String

    /// Opens `path`, choosing the decompressor from its first bytes (not the declared media type).
    init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw ImageError("cannot open layer \(path)") }
        let magic = [UInt8](handle.readData(ofLength: 4))
        try handle.seek(toOffset: 0)
        let tool: (String, String)?
        if magic.starts(with: [0x1f, 0x8b]) { tool = ("gzip", "gzip") }
        else if magic.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) { tool = ("zstd", "zstd") }
        else { tool = nil }
        guard let (name, package) = tool else {
            compression = "none"
            file = handle
            fd = handle.fileDescriptor
            process = nil
            errors = nil
            return
        }
        guard let executable = Tool.find(name) else {
            throw ImageError("the layer is \(name)-compressed but \(name) is not installed (Debian package \(package))")
        }
        compression = name
        let pipe = Pipe()
        let errorPipe = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-dc"]
        process.standardInput = handle
        process.standardOutput = pipe
        process.standardError = errorPipe
        do { try process.run() } catch { throw ImageError("cannot run \(name): \(error)") }
        try? pipe.fileHandleForWriting.close()
        try? errorPipe.fileHandleForWriting.close()
        self.process = process
        file = handle
        errors = errorPipe
        fd = pipe.fileHandleForReading.fileDescriptor
        self.pipe = pipe
    }

    private var pipe: Pipe?

    /// Waits for the decompressor; throws when it reported corrupt input.
    func finish() throws {
        guard let process else { return }
        pipe.map { _ = try? $0.fileHandleForReading.readToEnd() }
        let message = errors.flatMap { try? $0.fileHandleForReading.readToEnd() }.map { String(decoding: $0, as: UTF8.self) } ?? ""
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ImageError("\(compression) could not decompress the layer: \(message.split(separator: "\n").first ?? "status \(process.terminationStatus)")")
        }
    }

    /// Stops a decompressor still running (after a refused layer).
    func cancel() {
        if let process, process.isRunning { process.terminate(); process.waitUntilExit() }
    }
}
