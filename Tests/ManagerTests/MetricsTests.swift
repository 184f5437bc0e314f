import Foundation
import Testing
@testable import Manager

/// The hand-written Prometheus exposition.
@Suite struct MetricsTests {
    @Test func rendersFamiliesAndSamples() {
        var running = VMRecord(definition: VMDefinition(name: "web", kernel: "/k", cpus: 2, memoryMiB: 64))
        running.state = .running
        running.startedAt = Date().addingTimeInterval(-5)
        running.restartCount = 3
        let stopped = VMRecord(definition: VMDefinition(name: "db", kernel: "/k"))
        let live = VMMStatus(state: "running", vcpus: 2, exits: ExitCounts(io: 42, mmio: 7), devices: .object([]), isolation: .null)
        let text = MetricsExporter.render([
            .init(record: stopped, live: nil, residentBytes: nil),
            .init(record: running, live: live, residentBytes: 8192),
        ], daemonUptime: 12.5, requests: [("GET", "200", 9)])

        for line in ["vireo_daemon_uptime_seconds 12.5", "vireo_vms{state=\"running\"} 1", "vireo_vms{state=\"defined\"} 1",
                     "vireo_vm_state{vm=\"web\",state=\"running\"} 1", "vireo_vm_state{vm=\"web\",state=\"paused\"} 0",
                     "vireo_vm_memory_bytes{vm=\"web\"} 67108864", "vireo_vm_vcpus{vm=\"web\"} 2", "vireo_vm_resident_bytes{vm=\"web\"} 8192",
                     "vireo_vm_restarts_total{vm=\"web\"} 3", "vireo_vm_exits_total{vm=\"web\",kind=\"io\"} 42",
                     "vireo_vm_exits_total{vm=\"web\",kind=\"mmio\"} 7", "vireo_vm_uptime_seconds{vm=\"db\"} 0",
                     "vireo_api_requests_total{method=\"GET\",status=\"200\"} 9", "# TYPE vireo_vm_exits_total counter"] {
            #expect(text.contains(line + "\n"), "missing: \(line)")
        }
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.split(separator: " ").count == 2, "bad line: \(line)")
        }
    }
}
