import Hummingbird
import NIOCore

/// Endpoints that stream: console logs, the interactive console, lifecycle events.
extension ManagerAPI {
    func addStreamRoutes(to router: Router<ManagerRequestContext>) {
        let supervisor = supervisor
        let shutdown = shutdown
        let store = store

        // The console log: the rotated generation, then the current file; `follow` keeps streaming.
        router.get("/vms/{name}/logs") { request, context -> Response in
            let query = try QueryParameters(request, allowed: ["follow", "tail"])
            let follow = try query.bool("follow") ?? false
            let tail = try query.int("tail", in: 0...10_000_000).map(Int.init)
            let name = try ManagerAPI.name(context)
            _ = try await supervisor.record(name)
            let log = ConsoleLog(paths: supervisor.paths(for: name))
            let (initial, start) = log.readAll(tailLines: tail)
            let channel = context.channel
            return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: ResponseBody { writer in
                if !initial.isEmpty { try await writer.write(ByteBuffer(bytes: initial)) }
                var position = start
                while follow, !shutdown.isSet, channel?.isActive ?? true {
                    try await Task.sleep(for: .milliseconds(100))
                    guard (try? await supervisor.record(name)) != nil else { break }  // deleted
                    let fresh = log.readNew(since: &position)
                    if !fresh.isEmpty { try await writer.write(ByteBuffer(bytes: fresh)) }
                }
                try await writer.finish(nil)
            })
        }

        // Full duplex: the request body is typed into the guest, the response is its console.
        // Ends when the client ends its body or goes away, or the VM stops.
        router.post("/vms/{name}/console") { request, context -> Response in
            _ = try QueryParameters(request, allowed: [])
            let vm = try await supervisor.record(try ManagerAPI.name(context))
            guard vm.state == .running || vm.state == .paused else {
                throw APIError.invalidState("cannot attach to the console of VM '\(vm.name)': it is \(vm.state.rawValue) (the console needs running or paused)", state: vm.state)
            }
            let relay = try await ConsoleRelay.attach(socketPath: supervisor.paths(for: vm.name).apiSocket, expectedPID: vm.pid)
            let channel = context.channel
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: ResponseBody { writer in
                let input = Task {
                    do {
                        for try await buffer in request.body { try relay.send(buffer.readableBytesView) }
                    } catch {}
                    // The client is done (detached): end the output side too.
                    relay.hangUp()
                }
                // A client that vanished while the guest is silent, or a daemon shutting down, ends it too.
                let watch = Task {
                    while channel?.isActive ?? true, !shutdown.isSet, !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(250))
                    }
                    relay.hangUp()
                }
                for await chunk in relay.output {
                    do { try await writer.write(ByteBuffer(bytes: chunk)) } catch { break }
                }
                input.cancel()
                watch.cancel()
                relay.close()
                try? await writer.finish(nil)
            })
        }

        // Lifecycle events as JSON lines; `since=ID` first replays stored events after ID.
        router.get("/events") { request, context -> Response in
            let query = try QueryParameters(request, allowed: ["since", "vm"])
            let since = try query.int("since", in: 0...Int64.max)
            let vm = query.string("vm")
            if let vm {
                do throws(APIError) { try DefinitionValidator.validateName(vm, subject: "query parameter 'vm'") } catch {
                    throw APIError.invalidQuery("vm", error.message)
                }
            }
            let stream = supervisor.events.subscribe()
            let channel = context.channel
            return Response(status: .ok, headers: [.contentType: "application/x-ndjson", .cacheControl: "no-cache"],
                            body: ResponseBody { writer in
                var last: Int64 = 0
                if let since, let store {
                    for event in try store.events(after: since, vm: vm) {
                        try await writer.write(ByteBuffer(string: JSONResponse.event(event).serialized() + "\n"))
                        last = event.id ?? last
                    }
                }
                // Events and a watch on the client, merged: a client that left is noticed even
                // when no event comes.
                let (merged, sink) = AsyncStream<VMEvent?>.makeStream()
                let forward = Task {
                    for await event in stream { sink.yield(event) }
                    sink.finish()
                }
                let watch = Task {
                    while channel?.isActive ?? true, !shutdown.isSet, !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(500))
                    }
                    sink.finish()
                }
                defer { forward.cancel(); watch.cancel() }
                for await item in merged {
                    guard let event = item, (event.id ?? .max) > last, vm == nil || event.vm == vm else { continue }
                    try await writer.write(ByteBuffer(string: JSONResponse.event(event).serialized() + "\n"))
                }
                try? await writer.finish(nil)
            })
        }
    }
}
