import Glibc
import Testing
@testable import Devices

/// Device state from a snapshot is untrusted (issue 12, finding 9): out-of-range values are refused
/// with an error naming the field, never a trap later.
@Suite struct HostileStateTests {
    private func rtcState(offset: Int64) -> [UInt8] {
        var bytes = CMOSRTC(clock: { 1_709_214_356 }).saveState()
        bytes.replaceSubrange((bytes.count - 8)..., with: withUnsafeBytes(of: offset.littleEndian, Array.init))
        return bytes
    }

    @Test func cmosOffsetOutOfRangeIsRefused() throws {
        let rtc = CMOSRTC(clock: { 1_709_214_356 })
        for offset in [Int64.max, Int64.min, CMOSRTC.maximumOffset + 1, -CMOSRTC.maximumOffset - 1] {
            #expect(throws: StateError.invalid(what: "the CMOS RTC (time offset \(offset) s is out of range)")) {
                try rtc.restoreState(rtcState(offset: offset))
            }
        }
        // The largest accepted offset still reads as a time without trapping.
        try rtc.restoreState(rtcState(offset: CMOSRTC.maximumOffset))
        rtc.outb(0, 9)
        _ = rtc.inb(1)
        try rtc.restoreState(rtcState(offset: -CMOSRTC.maximumOffset))
        rtc.outb(0, 9)
        _ = rtc.inb(1)
    }
}
