import Foundation
import Hummingbird
import NIOCore

/// The API's own description, the daemon's facts, and metrics.
extension ManagerAPI {
    func addServiceRoutes(to router: Router<ManagerRequestContext>) {
        let supervisor = supervisor
        let started = started
        let version = version
        let counters = counters

        router.get("/openapi.json") { request, _ -> Response in
            _ = try QueryParameters(request, allowed: [])
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.bytes)))
        }

        router.get("/info") { request, _ -> Response in
            _ = try QueryParameters(request, allowed: [])
            let vms = await supervisor.list()
            return JSONResponse.make(.object([
                ("version", .string(version)),
                ("pid", .int(Int64(getpid()))),
                ("stateDirectory", .string(supervisor.configuration.stateDirectory)),
                ("vms", .int(Int64(vms.count))),
                ("running", .int(Int64(vms.filter { $0.state == .running }.count))),
                ("uptimeSeconds", .double((Date().timeIntervalSince(started) * 1000).rounded() / 1000)),
            ]))
        }

        router.get("/metrics") { request, _ -> Response in
            _ = try QueryParameters(request, allowed: [])
            let vms = await supervisor.list()
            // Each VMM is asked for its exit counts concurrently (1 s timeout each).
            let samples = await withTaskGroup(of: MetricsExporter.VMSample.self) { group in
                for vm in vms {
                    group.addTask {
                        let live = await supervisor.liveStatus(of: vm)
                        return MetricsExporter.VMSample(record: vm, live: live, residentBytes: vm.pid.flatMap(ProcessProbe.residentBytes))
                    }
                }
                var result: [MetricsExporter.VMSample] = []
                for await sample in group { result.append(sample) }
                return result.sorted { $0.record.name < $1.record.name }
            }
            let text = MetricsExporter.render(samples, daemonUptime: Date().timeIntervalSince(started), requests: counters.snapshot)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }
}

/// The OpenAPI 3 document of this API (Sources/Manager/openapi.json, embedded at build time;
/// docs/openapi.json links to it).
enum OpenAPIDocument {
    static var bytes: [UInt8] { PackageResources.openapi_json }
}
