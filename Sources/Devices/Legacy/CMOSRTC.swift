import Glibc
import Synchronization

/// The PC's CMOS RAM with its MC146818 real-time clock, read through an index port (0x70) and a
/// data port (0x71).
///
/// Register it at `CMOSRTC.basePort` (0x70) with length `portCount` (2). Time comes from an
/// injectable clock (Unix seconds, UTC). Guest writes to the time registers are accepted and kept
/// as an offset from that clock, as QEMU does, so a guest that sets the clock sees it keep
/// ticking; the host clock is never touched. The clock never reports an update in progress and
/// raises no interrupts (no alarm, periodic or update-ended IRQ 8).
public final class CMOSRTC: BusDevice {
    /// Index port; the data port is the next one.
    public static let basePort: UInt64 = 0x70
    /// Number of ports the device decodes.
    public static let portCount: UInt64 = 2

    /// The host's wall clock: `clock_gettime(CLOCK_REALTIME)` seconds, UTC.
    public static let hostClock: @Sendable () -> Int64 = {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec)
    }

    // Register indices and bits.
    static let seconds = 0x00, minutes = 0x02, hours = 0x04, weekday = 0x06
    static let dayOfMonth = 0x07, month = 0x08, year = 0x09, century = 0x32
    static let registerA = 0x0A, registerB = 0x0B, registerC = 0x0C, registerD = 0x0D
    static let bSET: UInt8 = 0x80, bUIE: UInt8 = 0x10, bBinary: UInt8 = 0x04, b24Hour: UInt8 = 0x02
    static let dValid: UInt8 = 0x80

    /// A broken-down UTC time. Fields may hold out-of-range values the guest wrote; converting back
    /// to seconds normalises them rather than failing.
    struct Fields: Equatable {
        var year: Int64, month: Int64, day: Int64, hour: Int64, minute: Int64, second: Int64

        init(year: Int64, month: Int64, day: Int64, hour: Int64, minute: Int64, second: Int64) {
            (self.year, self.month, self.day) = (year, month, day)
            (self.hour, self.minute, self.second) = (hour, minute, second)
        }

        init(unixSeconds: Int64) {
            let days = unixSeconds.floorDiv(86_400)
            let secondOfDay = unixSeconds - days * 86_400
            let (y, m, d) = CMOSRTC.civil(fromDays: days)
            self.init(year: y, month: m, day: d, hour: secondOfDay / 3600,
                      minute: secondOfDay / 60 % 60, second: secondOfDay % 60)
        }

        var unixSeconds: Int64 {
            // Carry an out-of-range month into the year; days, hours and so on just add up.
            let y = year &+ (month - 1).floorDiv(12)
            let m = (month - 1) - (month - 1).floorDiv(12) * 12 + 1
            let days = CMOSRTC.days(fromCivil: y, m, 1) &+ (day - 1)
            return days &* 86_400 &+ hour &* 3600 &+ minute &* 60 &+ second
        }

        /// 1 = Sunday, as the MC146818 counts.
        var weekday: Int64 {
            let days = unixSeconds.floorDiv(86_400)
            return (days + 4).floorMod(7) + 1  // 1970-01-01 was a Thursday
        }
    }

    struct State {
        var index = 0
        var ram = [UInt8](repeating: 0, count: 128)
        /// Guest time minus host clock, in seconds.
        var offset: Int64 = 0
        /// While register B's SET bit is up the clock is frozen and time writes collect here.
        var frozen: Fields?
    }

    private let clock: @Sendable () -> Int64
    let state: Mutex<State>

    /// Creates the CMOS with a clock returning Unix seconds (UTC); the default is the host's.
    public init(clock: @escaping @Sendable () -> Int64 = CMOSRTC.hostClock) {
        self.clock = clock
        var initial = State()
        initial.ram[Self.registerA] = 0x26  // 32.768 kHz time base, 1024 Hz periodic rate
        initial.ram[Self.registerB] = Self.b24Hour  // 24-hour, BCD, no interrupts: what Linux expects
        state = Mutex(initial)
    }

    /// Stores a raw CMOS byte (index 0–127), for the VMM to seed firmware fields.
    public func setByte(_ value: UInt8, at index: Int) {
        guard (0..<128).contains(index) else { return }
        state.withLock { $0.ram[index] = value }
    }

    /// Reads a raw CMOS byte (index 0–127) as stored, bypassing the clock registers.
    public func byte(at index: Int) -> UInt8 {
        guard (0..<128).contains(index) else { return 0xFF }
        return state.withLock { $0.ram[index] }
    }

    /// Fills the memory-size fields firmware and old kernels read, laid out as QEMU's pc_cmos_init.
    public func setMemorySize(belowFourGiB: UInt64, aboveFourGiB: UInt64) {
        let kib: UInt64 = 1024, mib: UInt64 = 1024 * 1024
        let base = min(belowFourGiB / kib, 640)
        let extended = min(belowFourGiB > mib ? (belowFourGiB - mib) / kib : 0, 0xFFFF)
        let above16M = min(belowFourGiB > 16 * mib ? (belowFourGiB - 16 * mib) / (64 * kib) : 0, 0xFFFF)
        let high = aboveFourGiB / (64 * kib)
        let fields: [(Int, UInt64)] = [
            (0x15, base), (0x16, base >> 8),
            (0x17, extended), (0x18, extended >> 8), (0x30, extended), (0x31, extended >> 8),
            (0x34, above16M), (0x35, above16M >> 8),
            (0x5B, high), (0x5C, high >> 8), (0x5D, high >> 16),
        ]
        state.withLock { s in
            for (index, value) in fields { s.ram[index] = UInt8(truncatingIfNeeded: value) }
        }
    }

    /// The time the guest sees, in Unix seconds.
    public var guestTime: Int64 {
        state.withLock { s in s.frozen?.unixSeconds ?? clock() &+ s.offset }
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        state.withLock { s in
            for index in 0..<data.count {
                switch byteRegister(offset, index, count: Self.portCount) {
                case 1: data[index] = readData(&s)
                default: data[index] = 0xFF  // the index port is write-only
                }
            }
        }
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        state.withLock { s in
            for index in 0..<data.count {
                switch byteRegister(offset, index, count: Self.portCount) {
                case 0: s.index = Int(data[index] & 0x7F)  // bit 7 is the NMI mask, not part of the index
                case 1: writeData(data[index], &s)
                default: break
                }
            }
        }
    }

    private func now(_ s: State) -> Fields {
        s.frozen ?? Fields(unixSeconds: clock() &+ s.offset)
    }

    private func readData(_ s: inout State) -> UInt8 {
        let b = s.ram[Self.registerB]
        switch s.index {
        case Self.seconds: return encode(now(s).second, b)
        case Self.minutes: return encode(now(s).minute, b)
        case Self.hours: return encodeHour(now(s).hour, b)
        case Self.weekday: return encode(now(s).weekday, b)
        case Self.dayOfMonth: return encode(now(s).day, b)
        case Self.month: return encode(now(s).month, b)
        case Self.year: return encode(now(s).year.floorMod(100), b)
        case Self.century: return encode(now(s).year.floorDiv(100), b)
        case Self.registerA: return s.ram[Self.registerA] & 0x7F  // UIP never set: we never update
        case Self.registerC: return 0  // no interrupt flags, ever
        case Self.registerD: return Self.dValid  // battery good, RAM and time valid
        default: return s.ram[s.index]
        }
    }

    private func writeData(_ value: UInt8, _ s: inout State) {
        let b = s.ram[Self.registerB]
        switch s.index {
        case Self.seconds, Self.minutes, Self.hours, Self.dayOfMonth, Self.month, Self.year, Self.century:
            var fields = now(s)
            switch s.index {
            case Self.seconds: fields.second = decode(value, b)
            case Self.minutes: fields.minute = decode(value, b)
            case Self.hours: fields.hour = decodeHour(value, b)
            case Self.dayOfMonth: fields.day = decode(value, b)
            case Self.month: fields.month = decode(value, b)
            case Self.year: fields.year = fields.year.floorDiv(100) * 100 + decode(value, b)
            default: fields.year = decode(value, b) * 100 + fields.year.floorMod(100)
            }
            if s.frozen != nil { s.frozen = fields } else { s.offset = fields.unixSeconds &- clock() }
        case Self.weekday, Self.registerC, Self.registerD:
            break  // the weekday follows from the date; C and D are read-only
        case Self.registerA:
            s.ram[Self.registerA] = value & 0x7F
        case Self.registerB:
            var newB = value
            if newB & Self.bSET != 0 {
                newB &= ~Self.bUIE  // SET clears the update-ended interrupt enable, per the datasheet
                if s.frozen == nil { s.frozen = now(s) }
            } else if let fields = s.frozen {
                // Dropping SET restarts the clock from what the guest wrote.
                s.offset = fields.unixSeconds &- clock()
                s.frozen = nil
            }
            s.ram[Self.registerB] = newB
        default:
            s.ram[s.index] = value
        }
    }

    private func encode(_ value: Int64, _ b: UInt8) -> UInt8 {
        let value = value.floorMod(100)  // anything wider cannot be represented in a register
        if b & Self.bBinary != 0 { return UInt8(value) }
        return UInt8(value / 10) << 4 | UInt8(value % 10)
    }

    private func decode(_ value: UInt8, _ b: UInt8) -> Int64 {
        if b & Self.bBinary != 0 { return Int64(value) }
        return Int64(value >> 4) * 10 + Int64(value & 0x0F)
    }

    private func encodeHour(_ hour: Int64, _ b: UInt8) -> UInt8 {
        if b & Self.b24Hour != 0 { return encode(hour, b) }
        let twelve = hour % 12 == 0 ? 12 : hour % 12
        return encode(twelve, b) | (hour >= 12 ? 0x80 : 0)  // bit 7 = PM in 12-hour mode
    }

    private func decodeHour(_ value: UInt8, _ b: UInt8) -> Int64 {
        if b & Self.b24Hour != 0 { return decode(value, b) }
        return decode(value & 0x7F, b) % 12 + (value & 0x80 != 0 ? 12 : 0)
    }

    // Howard Hinnant's civil-calendar conversions (proleptic Gregorian), exact for any Int64 day count we use.
    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = y.floorDiv(400)
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = z.floorDiv(146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

extension Int64 {
    /// Division rounding towards negative infinity, for dates before 1970.
    @inline(__always)
    fileprivate func floorDiv(_ divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }

    @inline(__always)
    fileprivate func floorMod(_ divisor: Int64) -> Int64 { self - floorDiv(divisor) * divisor }
}
