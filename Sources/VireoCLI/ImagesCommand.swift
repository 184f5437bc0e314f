import ArgumentParser
import Images
import VMMCommand

/// `vireo images`: list, remove and measure the cached images.
struct ImagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "images",
        abstract: "List the cached images, remove them, or show the cache's disk use.",
        subcommands: [ImagesListCommand.self, ImagesRemoveCommand.self, ImagesDiskUsageCommand.self],
        defaultSubcommand: ImagesListCommand.self
    )
}

/// Options every `vireo images` subcommand shares.
struct ImageStoreOption: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: ArgumentHelp("State directory holding the image cache.", valueName: "dir"))
    var stateDirectory: String?
}

struct ImagesListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the cached images.")
    @OptionGroup var store: ImageStoreOption

    func run() throws {
        let cache = try openStore(store)
        print("IMAGE ID      SIZE        BASE  REFERENCE")
        for record in cache.records() {
            let base = ImageStore.allocatedBytes(cache.basePath(record.configDigest))
            let size = ImageCache.format(record.size).padding(toLength: 10, withPad: " ", startingAt: 0)
            print("\(record.shortID)  \(size)  \(base > 0 ? "yes " : "no  ")  \(record.reference)")
        }
    }
}

struct ImagesRemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove images (refused while a VM runs on one).")
    @OptionGroup var store: ImageStoreOption
    @Argument(help: ArgumentHelp("References or image IDs.", valueName: "ref"))
    var references: [String]

    func run() throws {
        let cache = try openStore(store)
        for reference in references {
            do {
                let freed = try cache.remove(reference)
                print("removed \(reference) (freed \(ImageCache.format(freed)))")
            } catch let error as ImageError {
                throw ValidationError(error.description)
            }
        }
    }
}

struct ImagesDiskUsageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "du", abstract: "Show the image cache's disk use (allocated bytes).")
    @OptionGroup var store: ImageStoreOption

    func run() throws {
        let cache = try openStore(store)
        let usage = cache.diskUsage()
        print("blobs  \(ImageCache.format(usage.blobs))")
        print("bases  \(ImageCache.format(usage.bases))")
        print("runs   \(ImageCache.format(usage.runs))")
        print("total  \(ImageCache.format(usage.blobs + usage.bases + usage.runs))  (\(cache.root))")
    }
}

private func openStore(_ option: ImageStoreOption) throws -> ImageStore {
    do { return try ImageCache.open(option.stateDirectory) } catch let error as ImageError {
        throw ValidationError(error.description)
    }
}
