extension RunSpec {
    /// A terminal's size in character cells.
    public struct TerminalSize: Sendable, Equatable {
        public var rows: UInt16
        public var columns: UInt16
        public init(rows: UInt16, columns: UInt16) {
            self.rows = rows
            self.columns = columns
        }
    }

    /// The guest's eth0: address/prefix, default gateway, and the DNS server for /etc/resolv.conf.
    public struct Network: Sendable, Equatable {
        public var address: String
        public var prefixLength: Int
        public var gateway: String
        public var dns: String?
        public init(address: String, prefixLength: Int, gateway: String, dns: String?) {
            self.address = address
            self.prefixLength = prefixLength
            self.gateway = gateway
            self.dns = dns
        }
    }

    /// One `--ulimit NAME=SOFT[:HARD]` (Docker's syntax; -1 or "unlimited" is no limit).
    public struct ResourceLimit: Sendable, Equatable {
        /// Linux's RLIMIT_* number (the same on every architecture Vireo runs).
        public var resource: Int32
        public var name: String
        /// nil: unlimited (RLIM_INFINITY).
        public var soft: UInt64?
        public var hard: UInt64?

        /// Docker's names and Linux's RLIMIT_* numbers (asm-generic/resource.h).
        public static let resources: [(name: String, number: Int32)] = [
            ("cpu", 0), ("fsize", 1), ("data", 2), ("stack", 3), ("core", 4), ("rss", 5), ("nproc", 6), ("nofile", 7),
            ("memlock", 8), ("as", 9), ("locks", 10), ("sigpending", 11), ("msgqueue", 12), ("nice", 13), ("rtprio", 14),
            ("rttime", 15),
        ]

        public static func parse(_ text: String) throws -> ResourceLimit {
            guard let equals = text.firstIndex(of: "=") else {
                throw ImageError("--ulimit '\(text)': expected NAME=SOFT[:HARD], e.g. nofile=1024:2048")
            }
            let name = String(text[..<equals])
            guard let resource = resources.first(where: { $0.name == name }) else {
                throw ImageError("--ulimit '\(text)': unknown limit '\(name)' (one of \(resources.map(\.name).joined(separator: ", ")))")
            }
            let values = text[text.index(after: equals)...].split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard values.count == 1 || values.count == 2 else {
                throw ImageError("--ulimit '\(text)': expected NAME=SOFT[:HARD], e.g. nofile=1024:2048")
            }
            func value(_ word: String) throws -> UInt64? {
                if word == "-1" || word == "unlimited" { return nil }
                guard !word.isEmpty, word.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let number = UInt64(word), number < UInt64.max else {
                    throw ImageError("--ulimit '\(text)': '\(word)' is not a number (or -1/unlimited)")
                }
                return number
            }
            let soft = try value(values[0])
            let hard = values.count == 2 ? try value(values[1]) : soft
            if let hard, soft.map({ $0 > hard }) ?? true {
                throw ImageError("--ulimit '\(text)': the soft limit is above the hard limit")
            }
            return ResourceLimit(resource: resource.number, name: name, soft: soft, hard: hard)
        }
    }
}
