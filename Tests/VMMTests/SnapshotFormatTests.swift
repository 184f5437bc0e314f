import Testing
import KVM
@testable import VMM

@Suite struct SnapshotFormatTests {
    private func sample() -> SnapshotState {
        SnapshotState(
            kernelPath: "/k/vmlinux", commandLine: "console=ttyS0", cpus: 2, memoryBytes: 64 << 20, debugExitPort: 0x501,
            hostKind: "pvm", regions: [.init(guestBase: 0, size: 64 << 20, fileOffset: 0)],
            cpuid: [[CPUIDEntry(function: 1, ecx: 0x80, edx: 0x10)], [CPUIDEntry(function: 1, ebx: 1 << 24)]],
            vcpus: [VCPUState(blobs: VCPUStateKind.allCases.map { [UInt8](repeating: UInt8($0.rawValue), count: 8) },
                              msrs: [MSRValue(index: 0x10, value: 42)]),
                    VCPUState(blobs: VCPUStateKind.allCases.map { _ in [] }, msrs: [])],
            vm: VMState(blobs: VMStateKind.allCases.map { [UInt8](repeating: 7, count: $0.rawValue + 1) }),
            serial: [1, 2, 3], i8042: [4], rtc: [5, 6])
    }

    @Test func roundTrip() throws {
        var state = sample()
        #expect(try SnapshotState.decode(state.encoded()) == state)
        state.disks = [DiskSpec(path: "/d/root.img", id: "root"),
                       DiskSpec(path: "/d/clone.ovl", id: "data", backing: "/d/base.img")]
        #expect(try SnapshotState.decode(state.encoded()).disks == state.disks, "disks and their overlay bases")
    }

    @Test func everyTruncationAndBitFlipIsRefused() {
        let bytes = sample().encoded()
        for length in stride(from: 0, to: bytes.count, by: 7) {
            #expect(throws: SnapshotError.self) { try SnapshotState.decode(Array(bytes.prefix(length))) }
        }
        for index in stride(from: 0, to: bytes.count, by: 3) {
            var corrupted = bytes
            corrupted[index] ^= 0x10
            #expect(throws: SnapshotError.self) { try SnapshotState.decode(corrupted) }
        }
    }

    @Test func versionIsCheckedFirst() {
        var bytes = sample().encoded()
        bytes[8] = UInt8(SnapshotState.formatVersion + 1)
        #expect(throws: SnapshotError.version(found: SnapshotState.formatVersion + 1, supported: SnapshotState.formatVersion)) {
            try SnapshotState.decode(bytes)
        }
    }

    @Test func crcMatchesTheStandardCheckValue() {
        #expect(CRC32.checksum(Array("123456789".utf8)[...]) == 0xCBF4_3926)
    }

    @Test func cpuFeaturesTheHostLacksAreNamed() {
        let snapshot = [CPUIDEntry(function: 7, flags: 1, ebx: (1 << 5) | (1 << 3))]
        let host = [CPUIDEntry(function: 7, flags: 1, ebx: 1 << 3)]
        #expect(throws: SnapshotError.missingCPUFeatures("CPUID.7.ebx[5]")) {
            try CPUFeatureCheck.verify(snapshot: snapshot, host: host)
        }
        // Bits Vireo adds itself (hypervisor, HTT) are not host features.
        let leaf1 = [CPUIDEntry(function: 1, ecx: 1 << 31, edx: 1 << 28)]
        #expect(throws: Never.self) { try CPUFeatureCheck.verify(snapshot: leaf1, host: [CPUIDEntry(function: 1)]) }
    }
}
