import Glibc
import Synchronization
import Testing
@testable import Devices

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let seconds: Atomic<Int64>
    init(_ start: Int64) { seconds = Atomic(start) }
    func advance(by delta: Int64) { seconds.add(delta, ordering: .relaxed) }
    var now: Int64 { seconds.load(ordering: .relaxed) }
}

@Suite struct CMOSRTCTests {
    /// 2024-02-29 13:45:56 UTC, a Thursday.
    static let leapDayAfternoon: Int64 = 1_709_214_356

    let clock = ManualClock(CMOSRTCTests.leapDayAfternoon)

    func makeRTC() -> CMOSRTC {
        let clock = clock
        return CMOSRTC(clock: { clock.now })
    }

    func cmos(_ rtc: CMOSRTC, _ index: UInt8) -> UInt8 {
        rtc.outb(0, index)
        return rtc.inb(1)
    }

    func setCMOS(_ rtc: CMOSRTC, _ index: UInt8, _ value: UInt8) {
        rtc.outb(0, index)
        rtc.outb(1, value)
    }

    @Test func bcdTimeAndDateByDefault() {
        let rtc = makeRTC()
        #expect(cmos(rtc, 0x00) == 0x56)
        #expect(cmos(rtc, 0x02) == 0x45)
        #expect(cmos(rtc, 0x04) == 0x13, "24-hour mode by default")
        #expect(cmos(rtc, 0x06) == 0x05, "Thursday, counting Sunday as 1")
        #expect(cmos(rtc, 0x07) == 0x29)
        #expect(cmos(rtc, 0x08) == 0x02)
        #expect(cmos(rtc, 0x09) == 0x24)
        #expect(cmos(rtc, 0x32) == 0x20, "century")
    }

    @Test func binaryModeWhenDMIsSet() {
        let rtc = makeRTC()
        setCMOS(rtc, 0x0B, 0x02 | 0x04)
        #expect(cmos(rtc, 0x00) == 56)
        #expect(cmos(rtc, 0x02) == 45)
        #expect(cmos(rtc, 0x04) == 13)
        #expect(cmos(rtc, 0x07) == 29)
        #expect(cmos(rtc, 0x08) == 2)
        #expect(cmos(rtc, 0x09) == 24)
        #expect(cmos(rtc, 0x32) == 20)
    }

    @Test func twelveHourModeSetsPMBit() {
        let rtc = makeRTC()
        setCMOS(rtc, 0x0B, 0x00)
        #expect(cmos(rtc, 0x04) == 0x81, "1 PM in BCD with bit 7")
        setCMOS(rtc, 0x0B, 0x04)
        #expect(cmos(rtc, 0x04) == 0x81)
        let midnight = CMOSRTC(clock: { 946_684_800 })  // 2000-01-01 00:00:00
        setCMOS(midnight, 0x0B, 0x00)
        #expect(cmos(midnight, 0x04) == 0x12, "12 AM")
        #expect(cmos(midnight, 0x32) == 0x20 && cmos(midnight, 0x09) == 0x00)
    }

    @Test func statusRegistersAreSane() {
        let rtc = makeRTC()
        #expect(cmos(rtc, 0x0A) & 0x80 == 0, "never update-in-progress")
        #expect(cmos(rtc, 0x0A) == 0x26)
        #expect(cmos(rtc, 0x0B) == 0x02)
        #expect(cmos(rtc, 0x0C) == 0x00)
        #expect(cmos(rtc, 0x0D) == 0x80, "valid RAM and time")
        setCMOS(rtc, 0x0D, 0x00)
        setCMOS(rtc, 0x0A, 0xA6)
        #expect(cmos(rtc, 0x0D) == 0x80 && cmos(rtc, 0x0A) == 0x26)
    }

    @Test func nmiMaskBitIsNotPartOfTheIndex() {
        let rtc = makeRTC()
        #expect(cmos(rtc, 0x80 | 0x00) == 0x56)
        #expect(cmos(rtc, 0x80 | 0x0D) == 0x80)
        #expect(rtc.inb(0) == 0xFF, "the index port is write-only")
    }

    @Test func timeFollowsTheClock() {
        let rtc = makeRTC()
        clock.advance(by: 4)
        #expect(cmos(rtc, 0x00) == 0x00 && cmos(rtc, 0x02) == 0x46)
        clock.advance(by: 10 * 3600 + 14 * 60)  // past midnight into March
        #expect(cmos(rtc, 0x04) == 0x00 && cmos(rtc, 0x07) == 0x01 && cmos(rtc, 0x08) == 0x03)
    }

    @Test func settingTheClockUnderSETKeepsAnOffset() {
        let rtc = makeRTC()
        setCMOS(rtc, 0x0B, 0x82)
        let frozen = cmos(rtc, 0x00)
        clock.advance(by: 5)
        #expect(cmos(rtc, 0x00) == frozen, "SET stops the clock")
        for (index, value): (UInt8, UInt8) in [(0x00, 0x00), (0x02, 0x30), (0x04, 0x08),
                                               (0x07, 0x15), (0x08, 0x01), (0x09, 0x30), (0x32, 0x20)] {
            setCMOS(rtc, index, value)
        }
        #expect(cmos(rtc, 0x09) == 0x30)
        setCMOS(rtc, 0x0B, 0x02)
        #expect(rtc.guestTime == 1_894_696_200, "2030-01-15 08:30:00")
        clock.advance(by: 61)
        #expect(cmos(rtc, 0x00) == 0x01 && cmos(rtc, 0x02) == 0x31, "and it keeps ticking")
        #expect(cmos(rtc, 0x06) == 0x03, "a Tuesday")
        #expect(cmos(rtc, 0x0B) == 0x02)
    }

    @Test func settingAFieldWithoutSET() {
        let rtc = makeRTC()
        setCMOS(rtc, 0x02, 0x10)
        #expect(rtc.guestTime == CMOSRTCTests.leapDayAfternoon - 35 * 60)
        setCMOS(rtc, 0x0B, 0x06)  // binary, 24h
        setCMOS(rtc, 0x09, 99)
        #expect(cmos(rtc, 0x08) == 3 && cmos(rtc, 0x07) == 1, "2099 has no 29 February: it rolls into March")
        setCMOS(rtc, 0x32, 19)
        #expect(cmos(rtc, 0x09) == 99 && cmos(rtc, 0x32) == 19)
        setCMOS(rtc, 0x0B, 0x04)  // binary, 12h: 11 PM
        setCMOS(rtc, 0x04, 0x80 | 11)
        setCMOS(rtc, 0x0B, 0x06)
        #expect(cmos(rtc, 0x04) == 23)
        setCMOS(rtc, 0x06, 1)  // the weekday is derived, writes are ignored
        #expect(cmos(rtc, 0x06) == 2, "1999-03-01 was a Monday")
    }

    @Test func plainRAMAndMemorySizes() {
        let rtc = makeRTC()
        setCMOS(rtc, 0x40, 0xA5)
        setCMOS(rtc, 0x7F, 0x5A)
        #expect(cmos(rtc, 0x40) == 0xA5 && cmos(rtc, 0x7F) == 0x5A)
        rtc.setMemorySize(belowFourGiB: 3 << 30, aboveFourGiB: 2 << 30)
        #expect(cmos(rtc, 0x15) == 0x80 && cmos(rtc, 0x16) == 0x02, "640 KiB base")
        #expect(cmos(rtc, 0x17) == 0xFF && cmos(rtc, 0x18) == 0xFF, "extended memory saturates")
        #expect(cmos(rtc, 0x30) == 0xFF && cmos(rtc, 0x31) == 0xFF)
        let above16M = ((3 << 30) - (16 << 20)) / (64 << 10)
        #expect(cmos(rtc, 0x34) == UInt8(above16M & 0xFF) && cmos(rtc, 0x35) == UInt8(above16M >> 8))
        #expect(cmos(rtc, 0x5B) == 0x00 && cmos(rtc, 0x5C) == 0x80 && cmos(rtc, 0x5D) == 0x00)
        rtc.setByte(0x11, at: 0x0F)
        #expect(rtc.byte(at: 0x0F) == 0x11 && cmos(rtc, 0x0F) == 0x11)
    }

    @Test func calendarMatchesGlibc() {
        var random = SplitMix64(seed: 0xC0FFEE)
        for _ in 0..<20_000 {
            // ±10,000 years around 1970.
            let seconds = Int64.random(in: -315_569_520_000...315_569_520_000, using: &random)
            var t = time_t(seconds)
            var expected = tm()
            gmtime_r(&t, &expected)
            let fields = CMOSRTC.Fields(unixSeconds: seconds)
            #expect(fields.year == Int64(expected.tm_year) + 1900)
            #expect(fields.month == Int64(expected.tm_mon) + 1 && fields.day == Int64(expected.tm_mday))
            #expect(fields.hour == Int64(expected.tm_hour) && fields.minute == Int64(expected.tm_min))
            #expect(fields.second == Int64(expected.tm_sec))
            #expect(fields.weekday == Int64(expected.tm_wday) + 1)
            #expect(fields.unixSeconds == seconds)
        }
    }

    @Test func hostClockIsTheRealTime() {
        let rtc = CMOSRTC()
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        #expect(abs(rtc.guestTime - Int64(now.tv_sec)) <= 2)
    }
}
