import Testing
@testable import VMM

@Suite struct CPUListTests {
    @Test func parsesListsAndRanges() {
        #expect(CPUList.parse("0") == [0])
        #expect(CPUList.parse("0,1") == [0, 1])
        #expect(CPUList.parse("0-3") == [0, 1, 2, 3])
        #expect(CPUList.parse("5,0-2,1") == [0, 1, 2, 5])
        #expect(CPUList.parse("0-1\n") == [0, 1])
    }

    @Test func rejectsMalformedLists() {
        for text in ["", ",", "a", "1-", "-1", "3-1", "1,,2", "1-2-3", "0x1", "99999", " - "] {
            #expect(CPUList.parse(text) == nil, "\(text)")
        }
    }

    @Test func formatsCompactly() {
        #expect(CPUList.format([0, 1, 2, 5]) == "0-2,5")
        #expect(CPUList.format([3]) == "3")
        #expect(CPUList.format([2, 0, 1, 1]) == "0-2")
        #expect(CPUList.format([]) == "")
    }

    @Test func onlineCPUsIncludeAllowedOnes() {
        let online = CPUList.online()
        #expect(!online.isEmpty)
        #expect(Set(CPUList.allowed()).isSubset(of: Set(online)))
    }
}
