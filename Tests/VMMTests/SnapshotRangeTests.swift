import Testing
import KVM
@testable import VMM

/// Every snapshot field is range-checked on restore (issue 12): regions that overflow or overlap
/// are refused with a clear error, never a trap.
@Suite struct SnapshotRangeTests {
    private func state(regions: [SnapshotState.Region], memory: UInt64) -> SnapshotState {
        SnapshotState(
            kernelPath: "/k", commandLine: "", cpus: 1, memoryBytes: memory, debugExitPort: nil, hostKind: "pvm",
            regions: regions, cpuid: [[]], vcpus: [VCPUState(blobs: VCPUStateKind.allCases.map { _ in [] }, msrs: [])],
            vm: VMState(blobs: VMStateKind.allCases.map { _ in [] }), serial: [], i8042: [], rtc: [])
    }

    @Test func overflowingAndOverlappingRegionsAreRefused() throws {
        let ok = state(regions: [.init(guestBase: 0, size: 1 << 20, fileOffset: 0)], memory: 1 << 20)
        #expect(try SnapshotState.decode(ok.encoded()) == ok)
        let cases: [[SnapshotState.Region]] = [
            [.init(guestBase: UInt64.max - 4095, size: 1 << 20, fileOffset: 0)],          // wraps around
            [.init(guestBase: 1 << 52, size: 4096, fileOffset: 0)],                       // past the address space
            [.init(guestBase: 0, size: 1 << 20, fileOffset: 0), .init(guestBase: 4096, size: 4096, fileOffset: 1 << 20)],
        ]
        for regions in cases {
            let memory = regions.reduce(0) { $0 + $1.size }
            #expect(throws: SnapshotError.corrupt("snapshot state for a memory region is invalid")) {
                try SnapshotState.decode(state(regions: regions, memory: memory).encoded())
            }
        }
    }
}
