import ArgumentParser
import VMM

/// `vireo run`'s options for the optional virtio devices: vsock, balloon, virtio console.
struct DeviceOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Add a virtio-vsock device: the guest's CID (3–4294967294) and the host's Unix socket (Firecracker's protocol: host clients write 'CONNECT <port>\\n'; guest connections to port P go to PATH_P).", valueName: "cid=N,socket=PATH"))
    var vsock: String?

    @Flag(name: .long, help: "Add a virtio-balloon device (set its size with 'balloon <MiB>' on the --api-socket).")
    var balloon = false

    @Option(name: .customLong("balloon-target"), help: ArgumentHelp("Memory the balloon takes from the guest from the start, e.g. 64M (implies --balloon).", valueName: "size"))
    var balloonTarget: String?

    @Option(name: .customLong("virtio-console"), help: ArgumentHelp("Add a virtio console (hvc0): guest output appended to a file, or a Unix socket whose client gets the output and types the input.", valueName: "PATH|file=PATH|socket=PATH"))
    var virtioConsole: String?
}
