import Hummingbird
import Images

/// `/vms`: definitions (create, inspect, update, delete) and lifecycle actions.
extension ManagerAPI {
    func addVMRoutes(to router: Router<ManagerRequestContext>) {
        let supervisor = supervisor
        let validator = validator

        router.get("/vms") { request, _ -> Response in
            _ = try QueryParameters(request, allowed: [])
            let vms = await supervisor.list()
            return JSONResponse.make(.array(vms.map { JSONResponse.vm($0, paths: supervisor.paths(for: $0.name)) }))
        }

        router.post("/vms") { request, _ -> Response in
            _ = try QueryParameters(request, allowed: [])
            var definition = try validator.create(from: try await ManagerAPI.jsonBody(request))
            if var section = definition.image {
                // A local image must lie under the image roots like a kernel; a pull or an unpack
                // takes a while, so it runs off the event loop.
                if section.reference.hasPrefix("/") { section.reference = try validator.confine(section.reference, "image.reference") }
                let stateDirectory = supervisor.configuration.stateDirectory
                let wanted = section
                let record = try await Task.detached { () throws(APIError) -> ImageRecord in
                    try ImageVM.importImage(wanted, stateDirectory: stateDirectory)
                }.value
                section.reference = record.reference
                definition.image = section
            }
            let vm = try await supervisor.create(definition)
            return JSONResponse.make(JSONResponse.vm(vm, paths: supervisor.paths(for: vm.name)), status: .created,
                                     headers: [.location: "/vms/\(vm.name)"])
        }

        router.get("/vms/{name}") { request, context -> Response in
            _ = try QueryParameters(request, allowed: [])
            let vm = try await supervisor.record(try ManagerAPI.name(context))
            let live = await supervisor.liveStatus(of: vm)
            return JSONResponse.make(JSONResponse.vm(vm, paths: supervisor.paths(for: vm.name), live: live, includeLive: true))
        }

        router.patch("/vms/{name}") { request, context -> Response in
            _ = try QueryParameters(request, allowed: [])
            let name = try ManagerAPI.name(context)
            let body = try await ManagerAPI.jsonBody(request)
            let vm = try await supervisor.update(name, with: body)
            return JSONResponse.make(JSONResponse.vm(vm, paths: supervisor.paths(for: name)))
        }

        router.delete("/vms/{name}") { request, context -> Response in
            let query = try QueryParameters(request, allowed: ["force"])
            try await supervisor.delete(try ManagerAPI.name(context), force: try query.bool("force") ?? false)
            return Response(status: .noContent)
        }

        router.post("/vms/{name}/snapshot") { request, context -> Response in
            _ = try QueryParameters(request, allowed: [])
            let name = try ManagerAPI.name(context)
            guard case let .object(pairs) = try await ManagerAPI.jsonBody(request) else {
                throw APIError.malformedJSON("the body must be a JSON object {\"path\": \"/absolute/dir\"}")
            }
            for (key, _) in pairs where key != "path" { throw APIError.unknownField(key, allowed: ["path"]) }
            guard let pathValue = pairs.first(where: { $0.key == "path" })?.value else { throw APIError.missingField("path") }
            guard let path = pathValue.stringValue else {
                throw APIError.invalidField("path", "field 'path' must be a string, got \(pathValue.typeDescription)")
            }
            let (vm, milliseconds) = try await supervisor.snapshot(name, to: path)
            return JSONResponse.make(.object([
                ("snapshot", .object([("path", .string(path)), ("ms", .int(Int64(milliseconds)))])),
                ("vm", JSONResponse.vm(vm, paths: supervisor.paths(for: name))),
            ]), status: .created)
        }

        action("start", on: router) { name, _ in try await supervisor.start(name) }
        action("stop", timeout: true, on: router) { name, timeout in try await supervisor.stop(name, timeout: timeout) }
        action("kill", on: router) { name, _ in try await supervisor.kill(name) }
        action("pause", on: router) { name, _ in try await supervisor.pause(name) }
        action("resume", on: router) { name, _ in try await supervisor.resume(name) }
        action("restart", timeout: true, on: router) { name, timeout in try await supervisor.restart(name, timeout: timeout) }
    }

    /// `POST /vms/{name}/<verb>`: no body; `?timeout=SECONDS` where the action waits for a stop.
    private func action(_ verb: String, timeout: Bool = false, on router: Router<ManagerRequestContext>,
                        _ perform: @escaping @Sendable (String, Double?) async throws -> VMRecord) {
        let supervisor = supervisor
        router.post("/vms/{name}/\(verb)") { request, context -> Response in
            let query = try QueryParameters(request, allowed: timeout ? ["timeout"] : [])
            let seconds = try query.int("timeout", in: 0...3600).map(Double.init)
            let name = try ManagerAPI.name(context)
            try await ManagerAPI.requireEmptyBody(request)
            let vm = try await perform(name, seconds)
            return JSONResponse.make(JSONResponse.vm(vm, paths: supervisor.paths(for: name)))
        }
    }
}
