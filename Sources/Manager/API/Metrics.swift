import Foundation
import Synchronization

/// Requests served, by method and status, for `vireo_api_requests_total`.
final class RequestCounters: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func count(method: String, status: Int) {
        counts.withLock { $0["\(method) \(status)", default: 0] += 1 }
    }

    var snapshot: [(method: String, status: String, count: Int)] {
        counts.withLock { $0 }.sorted { $0.key < $1.key }.map { entry in
            let parts = entry.key.split(separator: " ")
            return (String(parts[0]), String(parts[1]), entry.value)
        }
    }
}

/// `/metrics` in the Prometheus text format (version 0.0.4), written by hand: every value is read
/// fresh at scrape time from the Supervisor and the VMMs, so there is no registry to keep in sync.
enum MetricsExporter {
    /// What one scrape knows about one VM.
    struct VMSample {
        var record: VMRecord
        /// The VMM's `status`, for running and paused VMs.
        var live: VMMStatus?
        var residentBytes: Int64?
    }

    static func render(_ samples: [VMSample], daemonUptime: Double, requests: [(method: String, status: String, count: Int)]) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
            let text = labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",")
            out += labels.isEmpty ? name : "\(name){\(text)}"
            out += " \(format(value))\n"
        }

        family("vireo_daemon_uptime_seconds", "gauge", "Seconds since the daemon started.")
        sample("vireo_daemon_uptime_seconds", [], daemonUptime)

        family("vireo_vms", "gauge", "Number of VMs in each state.")
        for state in VMState.allCases {
            sample("vireo_vms", [("state", state.rawValue)], Double(samples.filter { $0.record.state == state }.count))
        }

        family("vireo_vm_state", "gauge", "1 for the state each VM is in, 0 for the others.")
        for vm in samples {
            for state in VMState.allCases {
                sample("vireo_vm_state", [("vm", vm.record.name), ("state", state.rawValue)], vm.record.state == state ? 1 : 0)
            }
        }

        family("vireo_vm_uptime_seconds", "gauge", "Seconds since the VM's current run started (0 when not running).")
        for vm in samples { sample("vireo_vm_uptime_seconds", [("vm", vm.record.name)], vm.record.uptime() ?? 0) }

        family("vireo_vm_memory_bytes", "gauge", "Guest RAM configured for the VM.")
        for vm in samples { sample("vireo_vm_memory_bytes", [("vm", vm.record.name)], Double(vm.record.memoryMiB) * 1_048_576) }

        family("vireo_vm_vcpus", "gauge", "vCPUs configured for the VM.")
        for vm in samples { sample("vireo_vm_vcpus", [("vm", vm.record.name)], Double(vm.record.cpus)) }

        family("vireo_vm_resident_bytes", "gauge", "Resident memory of the VM's VMM process (guest RAM touched plus VMM overhead).")
        for vm in samples {
            if let bytes = vm.residentBytes { sample("vireo_vm_resident_bytes", [("vm", vm.record.name)], Double(bytes)) }
        }

        family("vireo_vm_restarts_total", "counter", "Starts made by the restart policy since the user last started the VM.")
        for vm in samples { sample("vireo_vm_restarts_total", [("vm", vm.record.name)], Double(vm.record.restartCount)) }

        family("vireo_vm_exits_total", "counter", "vCPU exits of the VM's current run, by kind, as counted by its VMM.")
        for vm in samples {
            guard let counts = vm.live?.exits, case let .object(exits)? = try? JSONCoding.encode(counts) else { continue }
            for (kind, value) in exits {
                if let count = value.intValue { sample("vireo_vm_exits_total", [("vm", vm.record.name), ("kind", kind)], Double(count)) }
            }
        }

        family("vireo_api_requests_total", "counter", "API requests served, by method and HTTP status.")
        for entry in requests {
            sample("vireo_api_requests_total", [("method", entry.method), ("status", entry.status)], Double(entry.count))
        }
        return out
    }

    private static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    private static func format(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
