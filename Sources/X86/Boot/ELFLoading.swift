import Memory

extension ELFKernel {
    /// Copies every PT_LOAD segment to its p_paddr and zeroes its bss.
    ///
    /// All segments are checked (inside RAM, clear of Vireo's boot structures) before the first
    /// byte is written, so a refused image leaves guest memory untouched.
    public func load(_ image: UnsafeRawBufferPointer, into memory: GuestMemory) throws(ELFError) -> LoadedKernel {
        try load(from: InMemoryKernelSource(image), into: memory)
    }

    /// The same, reading each segment from `source` straight into guest RAM (a read that fails
    /// part way leaves guest memory partly written: the VM is not started then).
    public func load(from source: some KernelSource, into memory: GuestMemory) throws(ELFError) -> LoadedKernel {
        guard source.size == fileSize else { throw .imageMismatch(parsedSize: fileSize, givenSize: source.size) }
        for segment in segments {
            if let problem = KernelPlacement.problem(address: segment.physicalAddress, size: segment.memorySize, memory: memory) {
                throw .segmentNotLoadable(index: segment.index, address: segment.physicalAddress,
                                          size: segment.memorySize, problem: problem)
            }
        }
        for segment in segments {
            do {
                try source.copy(at: Int(segment.fileOffset), count: Int(segment.fileSize), to: segment.physicalAddress, in: memory)
            } catch {
                switch error {
                case let .memory(error): throw .memory(error)
                case let .read(error): throw .unreadable(error)
                }
            }
            let bss = segment.memorySize - segment.fileSize
            if bss > 0 {
                do { try memory.zero(at: segment.physicalAddress + segment.fileSize, count: Int(bss)) } catch { throw .memory(error) }
            }
        }
        return LoadedKernel(
            format: is64Bit ? .elf64 : .elf32,
            entry64: is64Bit ? entry : nil,
            pvhEntry: pvhEntry,
            isLinux: isLinux,
            range: lowestAddress..<endAddress,
            setupHeader: nil,
            commandLineLimit: BootLayout.commandLineMaxSize - 1,
            initrdAddressMax: nil)
    }

    /// Loads from an array.
    public func load(_ image: [UInt8], into memory: GuestMemory) throws(ELFError) -> LoadedKernel {
        try withBootBytes(image) { (raw) throws(ELFError) in try load(raw, into: memory) }
    }
}
