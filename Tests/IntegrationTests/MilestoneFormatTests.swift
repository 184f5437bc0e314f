import Testing
import VMSpec

/// The VMM's timings in `-v` and the warm pool's `vireo: pool:` line: fixed decimals without
/// Foundation, and a negative step (a moment another thread took before the step before it) is
/// printed with its sign instead of trapping the VMM.
@Suite struct MilestoneFormatTests {
    @Test func positiveValuesHaveFixedDecimals() {
        #expect(format3(0) == "0.000")
        #expect(format3(0.0006) == "0.001")
        #expect(format3(1.25) == "1.250")
        #expect(format3(12.0407) == "12.041")
        #expect(format6(73267.936413) == "73267.936413")
        #expect(format6(0.000001) == "0.000001")
    }

    @Test func negativeValuesKeepTheirSign() {
        #expect(format3(-0.081) == "-0.081")
        #expect(format3(-0.5) == "-0.500")
        #expect(format3(-2.0006) == "-2.001")
        #expect(format6(-0.000081) == "-0.000081")
        #expect(format6(-3.5) == "-3.500000")
    }
}
