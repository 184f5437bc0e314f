import Memory

extension BzImage {
    /// Copies the protected-mode kernel to its load address after checking that it and the
    /// init_size area it will decompress into fit in RAM; nothing is written on failure.
    public func load(_ image: UnsafeRawBufferPointer, into memory: GuestMemory) throws(BzImageError) -> LoadedKernel {
        guard image.count == fileSize else { throw .imageMismatch(parsedSize: fileSize, givenSize: image.count) }
        let address = loadAddress(in: memory)
        let size = UInt64(kernelSize)
        if let problem = KernelPlacement.problem(address: address, size: size, memory: memory) {
            throw .doesNotFit(address: address, size: size, problem: problem, what: "protected-mode kernel")
        }
        let runtime = runtimeStart(loadAddress: address)
        let initSize = UInt64(header.initSize)
        if let problem = KernelPlacement.problem(address: runtime, size: initSize, memory: memory) {
            throw .doesNotFit(address: runtime, size: initSize, problem: problem, what: "decompression area (init_size)")
        }
        do {
            try memory.write(UnsafeRawBufferPointer(rebasing: image[setupSize...]), at: address)
        } catch {
            throw .memory(error)
        }
        let end = max(address + size, runtime + initSize)
        return LoadedKernel(
            format: .bzImage,
            entry64: entry64(loadAddress: address),
            pvhEntry: nil,
            isLinux: true,
            range: address..<end,
            setupHeader: header,
            commandLineLimit: min(Int(header.cmdlineSize), BootLayout.commandLineMaxSize - 1),
            initrdAddressMax: UInt64(header.initrdAddrMax))
    }

    /// Loads from an array.
    public func load(_ image: [UInt8], into memory: GuestMemory) throws(BzImageError) -> LoadedKernel {
        try withBootBytes(image) { (raw) throws(BzImageError) in try load(raw, into: memory) }
    }
}
