/// The Linux x86 setup header (Documentation/arch/x86/boot.rst) as found in a bzImage and the zero page.
///
/// Offsets are absolute: the header sits at the same place in the image file and in `boot_params`.
public struct SetupHeader: Equatable, Sendable {
    /// Field offsets within the image / zero page.
    public enum Offset {
        public static let setupSects = 0x1F1
        public static let rootFlags = 0x1F2
        public static let syssize = 0x1F4
        public static let vidMode = 0x1FA
        public static let bootFlag = 0x1FE
        public static let jump = 0x200
        public static let header = 0x202
        public static let version = 0x206
        public static let typeOfLoader = 0x210
        public static let loadflags = 0x211
        public static let code32Start = 0x214
        public static let ramdiskImage = 0x218
        public static let ramdiskSize = 0x21C
        public static let heapEndPtr = 0x224
        public static let cmdLinePtr = 0x228
        public static let initrdAddrMax = 0x22C
        public static let kernelAlignment = 0x230
        public static let relocatableKernel = 0x234
        public static let minAlignment = 0x235
        public static let xloadflags = 0x236
        public static let cmdlineSize = 0x238
        public static let setupData = 0x250
        public static let prefAddress = 0x258
        public static let initSize = 0x260
        public static let handoverOffset = 0x264
        public static let kernelInfoOffset = 0x268
    }

    public static let start = Offset.setupSects
    /// The header area in boot_params ends here (edd_mbr_sig_buffer follows).
    public static let areaEnd = 0x290
    /// A 2.12+ header must reach at least past init_size.
    public static let minimumEnd = Offset.initSize + 4
    public static let bootFlagValue: UInt16 = 0xAA55
    /// "HdrS".
    public static let headerMagic: UInt32 = 0x5372_6448
    /// 2.12: first protocol with xloadflags (and so a declared 64-bit entry).
    public static let minimumVersion: UInt16 = 0x020C
    /// Version Vireo writes into a synthesized header (2.15).
    public static let synthesizedVersion: UInt16 = 0x020F
    /// type_of_loader "undefined/other".
    public static let loaderTypeOther: UInt8 = 0xFF

    // loadflags
    public static let loadedHigh: UInt8 = 1 << 0
    public static let canUseHeap: UInt8 = 1 << 7
    // xloadflags
    public static let xlfKernel64: UInt16 = 1 << 0
    public static let xlfCanBeLoadedAbove4G: UInt16 = 1 << 1
    /// Offset of the 64-bit entry from the start of the protected-mode kernel.
    public static let entry64Offset: UInt64 = 0x200

    public var setupSects: UInt8
    public var syssize: UInt32
    public var version: UInt16
    public var loadflags: UInt8
    public var initrdAddrMax: UInt32
    public var kernelAlignment: UInt32
    public var relocatable: Bool
    public var xloadflags: UInt16
    public var cmdlineSize: UInt32
    public var prefAddress: UInt64
    public var initSize: UInt32
    /// Raw header bytes from 0x1F1 to the end the kernel declares (0x202 + jump offset), for the zero page.
    public var raw: [UInt8]

    /// Reads the fields from an image whose header (up to `end`) was already bounds-checked.
    init(bytes: BootBytes, end: Int) {
        setupSects = bytes.u8(Offset.setupSects)
        syssize = bytes.u32(Offset.syssize)
        version = bytes.u16(Offset.version)
        loadflags = bytes.u8(Offset.loadflags)
        initrdAddrMax = bytes.u32(Offset.initrdAddrMax)
        kernelAlignment = bytes.u32(Offset.kernelAlignment)
        relocatable = bytes.u8(Offset.relocatableKernel) != 0
        xloadflags = bytes.u16(Offset.xloadflags)
        cmdlineSize = bytes.u32(Offset.cmdlineSize)
        prefAddress = bytes.u64(Offset.prefAddress)
        initSize = bytes.u32(Offset.initSize)
        raw = Array(bytes.slice(SetupHeader.start, end - SetupHeader.start))
    }
}
