/// One member of a tar archive, its long names and PAX attributes already applied.
public struct TarEntry: Sendable, Equatable {
    /// What a member is.
    public enum Kind: Sendable, Equatable {
        case file, hardLink, symlink, directory, characterDevice, blockDevice, fifo
    }

    public var path: String
    public var kind: Kind
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: Int64
    public var modificationTime: Int64
    /// The target of a symlink or hard link.
    public var linkTarget: String
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32
    /// PAX `SCHILY.xattr.NAME` attributes.
    public var xattrs: [String: [UInt8]]

    public init(path: String, kind: Kind, mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0, size: Int64 = 0,
                modificationTime: Int64 = 0, linkTarget: String = "", deviceMajor: UInt32 = 0, deviceMinor: UInt32 = 0,
                xattrs: [String: [UInt8]] = [:]) {
        self.path = path
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.modificationTime = modificationTime
        self.linkTarget = linkTarget
        self.deviceMajor = deviceMajor
        self.deviceMinor = deviceMinor
        self.xattrs = xattrs
    }
}
