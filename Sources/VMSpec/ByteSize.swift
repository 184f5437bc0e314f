/// Parses human sizes: `512M`, `1G`, `1.5G` is refused, a bare number means MiB (like QEMU's -m).
public enum ByteSize {
    public static func parse(_ text: String) -> UInt64? {
        var digits = Substring(text)
        while digits.first == " " { digits = digits.dropFirst() }
        while digits.last == " " { digits = digits.dropLast() }
        guard !digits.isEmpty else { return nil }
        var multiplier: UInt64 = 1 << 20
        let lower = digits.lowercased()
        let suffixes: [(String, UInt64)] = [
            ("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40), ("pib", 1 << 50),
            ("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("tb", 1 << 40), ("pb", 1 << 50),
            ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40), ("p", 1 << 50), ("b", 1),
        ]
        for (suffix, value) in suffixes where lower.hasSuffix(suffix) {
            multiplier = value
            digits = digits.dropLast(suffix.count)
            break
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let number = UInt64(digits) else {
            return nil
        }
        let (product, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }

    /// `536870912` → `512 MiB`.
    public static func format(_ bytes: UInt64) -> String {
        let units: [(UInt64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (size, name) in units where bytes >= size && bytes % size == 0 { return "\(bytes / size) \(name)" }
        return "\(bytes) bytes"
    }
}

