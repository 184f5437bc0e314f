/// Model-specific registers set on every vCPU before it first runs (the state firmware leaves).
public enum BootMSRs {
    public static let sysenterCS: UInt32 = 0x174
    public static let sysenterESP: UInt32 = 0x175
    public static let sysenterEIP: UInt32 = 0x176
    public static let star: UInt32 = 0xC000_0081
    public static let lstar: UInt32 = 0xC000_0082
    public static let cstar: UInt32 = 0xC000_0083
    public static let syscallMask: UInt32 = 0xC000_0084
    public static let kernelGSBase: UInt32 = 0xC000_0102
    public static let tsc: UInt32 = 0x10
    public static let miscEnable: UInt32 = 0x1A0
    public static let mtrrDefType: UInt32 = 0x2FF

    /// Index/value pairs: syscall MSRs cleared, fast strings on, MTRRs enabled with write-back default.
    public static var initial: [(index: UInt32, value: UInt64)] {
        [
            (sysenterCS, 0), (sysenterESP, 0), (sysenterEIP, 0),
            (star, 0), (lstar, 0), (cstar, 0), (syscallMask, 0), (kernelGSBase, 0),
            (miscEnable, 1),               // FAST_STRING
            (mtrrDefType, (1 << 11) | 6),  // MTRRs enabled, default type write-back
        ]
    }
}
