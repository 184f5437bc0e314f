import Foundation
import Hummingbird
import NIOCore

/// JSON bodies of the API: VMs, events, errors.
enum JSONResponse {
    static func make(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: value.serialized() + "\n")))
    }

    static func error(_ error: APIError, headers: HTTPFields = [:]) -> Response {
        var members: [(key: String, value: JSONValue)] = [("code", .string(error.code)), ("message", .string(error.message))]
        if let field = error.field { members.append(("field", .string(field))) }
        if let state = error.state { members.append(("state", .string(state.rawValue))) }
        return make(.object([("error", .object(members))]), status: HTTPResponse.Status(code: error.status), headers: headers)
    }

    static func date(_ date: Date?) -> JSONValue {
        guard let date else { return .null }
        return .string(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
    }

    static func optional<T>(_ value: T?, _ transform: (T) -> JSONValue) -> JSONValue {
        value.map(transform) ?? .null
    }

    /// A VM as `GET /vms/{name}` shows it; `live` is the VMM's own status reply, when asked for.
    static func vm(_ vm: VMRecord, paths: VMPaths, live: VMMStatus? = nil, includeLive: Bool = false) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = [
            ("name", .string(vm.name)),
            ("kernel", .string(vm.kernel)),
            ("initrd", optional(vm.initrd) { .string($0) }),
            ("cmdline", .string(vm.cmdline)),
            ("cpus", .int(Int64(vm.cpus))),
            ("memoryMiB", .int(Int64(vm.memoryMiB))),
            ("autostart", .bool(vm.autostart)),
            ("restartPolicy", .string(vm.restartPolicy.rawValue)),
            ("restore", optional(vm.restore) { .string($0) }),
            ("disks", .array(vm.disks.map { disk in
                .object([("path", .string(disk.path)), ("readOnly", .bool(disk.readOnly)),
                         ("backing", optional(disk.backing) { .string($0) })])
            })),
            ("nets", .array(vm.nets.map(net))),
            ("rng", .bool(vm.rng)),
            ("pit", optional(vm.pit) { .bool($0) }),  // null: the VMM decides
            ("resources", resources(vm.resources)),
            ("isolation", .object([
                ("seccomp", optional(vm.isolation.seccomp) { .string($0) }),
                ("jail", optional(vm.isolation.jail) { .bool($0) }),  // null: the daemon's default
                ("user", optional(vm.isolation.user) { .string($0) }),
                ("group", optional(vm.isolation.group) { .string($0) }),
            ])),
            ("image", optional(vm.image) { image in
                .object([("reference", .string(image.reference)),
                         ("command", optional(image.command) { .array($0.map(JSONValue.string)) }),
                         ("entrypoint", optional(image.entrypoint) { .string($0) }),
                         ("env", optional(image.env) { .array($0.map(JSONValue.string)) }),
                         ("workdir", optional(image.workdir) { .string($0) }),
                         ("user", optional(image.user) { .string($0) })])
            }),
            ("state", .string(vm.state.rawValue)),
            ("pid", optional(vm.pid) { .int(Int64($0)) }),
            ("startedAt", date(vm.startedAt)),
            ("uptimeSeconds", optional(vm.uptime()) { .double(($0 * 1000).rounded() / 1000) }),
            ("restartCount", .int(Int64(vm.restartCount))),
            ("lastExit", vm.lastExitAt == nil ? .null : .object([
                ("status", optional(vm.lastExitStatus) { .int(Int64($0)) }),
                ("reason", optional(vm.lastExitReason) { .string($0) }),
                ("at", date(vm.lastExitAt)),
            ])),
            ("createdAt", date(vm.createdAt)),
            ("updatedAt", date(vm.updatedAt)),
            ("stateChangedAt", date(vm.stateChangedAt)),
            ("paths", .object([
                ("directory", .string(paths.directory)),
                ("consoleLog", .string(paths.consoleLog)),
                ("apiSocket", .string(paths.apiSocket)),
            ])),
        ]
        if includeLive {
            members.append(("vmm", live.flatMap { try? JSONCoding.encode($0) } ?? .null))
        }
        return .object(members)
    }

    private static func net(_ net: NetDefinition) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = [("mode", .string(net.mode.rawValue))]
        if let tap = net.tap { members.append(("tap", .string(tap))) }
        members.append(("mac", optional(net.mac) { .string($0) }))
        return .object(members)
    }

    private static func resources(_ settings: ResourceSettings) -> JSONValue {
        .object([
            ("cpuWeight", optional(settings.cpuWeight) { .int(Int64($0)) }),
            ("cpuMax", optional(settings.cpuMax) {
                .object([("quotaMicros", .int(Int64($0.quotaMicros))), ("periodMicros", .int(Int64($0.periodMicros)))])
            }),
            ("memoryMaxMiB", optional(settings.memoryMaxMiB) { .int(Int64($0)) }),
            ("cpuAffinity", optional(settings.cpuAffinity) { .array($0.map { .int(Int64($0)) }) }),
        ])
    }

    static func event(_ event: VMEvent) -> JSONValue {
        .object([
            ("id", optional(event.id) { .int($0) }),
            ("time", date(event.time)),
            ("vm", optional(event.vm) { .string($0) }),
            ("type", .string(event.type)),
            ("state", optional(event.state) { .string($0.rawValue) }),
            ("message", .string(event.message)),
        ])
    }
}
