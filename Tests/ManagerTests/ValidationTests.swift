import Testing
@testable import Manager

/// Request bodies → definitions: every error names its field.
@Suite struct ValidationTests {
    let validator = DefinitionValidator { path in
        switch path {
        case "/k/vmlinux", "/k/initrd": return .regularFile
        case "/k": return .notRegularFile
        case "/k/secret": return .unreadable
        default: return .missing
        }
    }

    private func create(_ json: String) throws -> VMDefinition {
        try validator.create(from: try JSONParser.parse(json))
    }

    private func expectFailure(_ json: String, status: Int = 422, code: String, field: String?, contains text: String? = nil,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try create(json)
            Issue.record("accepted \(json)", sourceLocation: sourceLocation)
        } catch let error as APIError {
            #expect(error.status == status, "\(error)", sourceLocation: sourceLocation)
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            #expect(error.field == field, "\(error)", sourceLocation: sourceLocation)
            if let field { #expect(error.message.contains("'\(field)'"), "\(error)", sourceLocation: sourceLocation) }
            if let text { #expect(error.message.contains(text), "\(error.message)", sourceLocation: sourceLocation) }
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func defaultsAndAllFields() throws {
        let minimal = try create(#"{"name":"a","kernel":"/k/vmlinux"}"#)
        #expect(minimal == VMDefinition(name: "a", kernel: "/k/vmlinux"))
        #expect(minimal.cmdline == "console=ttyS0" && minimal.cpus == 1 && minimal.memoryMiB == 512 && minimal.restartPolicy == .no)
        let full = try create(#"{"name":"web-1","kernel":"/k/vmlinux","initrd":"/k/initrd","cmdline":"console=ttyS0 quiet","cpus":4,"memoryMiB":2048,"autostart":true,"restartPolicy":"on-failure"}"#)
        #expect(full == VMDefinition(name: "web-1", kernel: "/k/vmlinux", initrd: "/k/initrd", cmdline: "console=ttyS0 quiet",
                                     cpus: 4, memoryMiB: 2048, autostart: true, restartPolicy: .onFailure))
        #expect(try create(#"{"name":"a","kernel":"/k/vmlinux","initrd":null}"#).initrd == nil)
    }

    @Test func names() throws {
        for good in ["a", "0", "web-1", "a-b-c", String(repeating: "z", count: 63), "9lives"] {
            #expect(try create(#"{"name":"\#(good)","kernel":"/k/vmlinux"}"#).name == good)
        }
        for bad in ["", "-a", "A", "a_b", "a.b", "a b", "a/b", String(repeating: "z", count: 64), "ü"] {
            expectFailure(#"{"name":"\#(bad)","kernel":"/k/vmlinux"}"#, code: "invalid_field", field: "name")
        }
    }

    @Test func unknownMissingAndRepeatedFields() {
        expectFailure(#"{"name":"a","kernel":"/k/vmlinux","disk":"x"}"#, code: "unknown_field", field: "disk", contains: "memoryMiB")
        expectFailure(#"{"kernel":"/k/vmlinux"}"#, code: "missing_field", field: "name")
        expectFailure(#"{"name":"a"}"#, code: "missing_field", field: "kernel")
        expectFailure(#"{"name":"a","kernel":"/k/vmlinux","cpus":1,"cpus":2}"#, code: "invalid_field", field: "cpus", contains: "more than once")
        expectFailure(#"[]"#, status: 400, code: "malformed_json", field: nil)
    }

    @Test func typesAndRanges() {
        let base = #""name":"a","kernel":"/k/vmlinux""#
        expectFailure("{\(base),\"cpus\":\"2\"}", code: "invalid_field", field: "cpus", contains: "a string")
        expectFailure("{\(base),\"cpus\":2.0}", code: "invalid_field", field: "cpus", contains: "a number")
        expectFailure("{\(base),\"cpus\":false}", code: "invalid_field", field: "cpus", contains: "a boolean")
        expectFailure("{\(base),\"cpus\":null}", code: "invalid_field", field: "cpus", contains: "null")
        expectFailure("{\(base),\"cpus\":0}", code: "invalid_field", field: "cpus", contains: "between 1 and 254, got 0")
        expectFailure("{\(base),\"cpus\":255}", code: "invalid_field", field: "cpus")
        expectFailure("{\(base),\"memoryMiB\":-1}", code: "invalid_field", field: "memoryMiB", contains: "got -1")
        expectFailure("{\(base),\"memoryMiB\":8}", code: "invalid_field", field: "memoryMiB", contains: "between 16 and 1048576 MiB")
        expectFailure("{\(base),\"memoryMiB\":1e30}", code: "invalid_field", field: "memoryMiB", contains: "integer")
        expectFailure("{\(base),\"autostart\":\"true\"}", code: "invalid_field", field: "autostart")
        expectFailure("{\(base),\"restartPolicy\":\"unless-stopped\"}", code: "invalid_field", field: "restartPolicy", contains: "no, on-failure, always")
        expectFailure("{\(base),\"cmdline\":\"\(String(repeating: "x", count: 2048))\"}", code: "invalid_field", field: "cmdline", contains: "2048")
        expectFailure("{\(base),\"cmdline\":\"a\\u0000b\"}", code: "invalid_field", field: "cmdline", contains: "control")
    }

    @Test func paths() {
        expectFailure(#"{"name":"a","kernel":"relative/vmlinux"}"#, code: "invalid_field", field: "kernel", contains: "absolute")
        expectFailure(#"{"name":"a","kernel":"/nope"}"#, code: "invalid_field", field: "kernel", contains: "no such file")
        expectFailure(#"{"name":"a","kernel":"/k"}"#, code: "invalid_field", field: "kernel", contains: "not a regular file")
        expectFailure(#"{"name":"a","kernel":"/k/secret"}"#, code: "invalid_field", field: "kernel", contains: "not readable")
        expectFailure(#"{"name":"a","kernel":"/k/vmlinux","initrd":"/nope"}"#, code: "invalid_field", field: "initrd")
    }

    @Test func updates() throws {
        let existing = VMDefinition(name: "a", kernel: "/k/vmlinux", cpus: 2)
        let updated = try validator.update(existing, with: try JSONParser.parse(#"{"memoryMiB":1024,"name":"a"}"#))
        #expect(updated.memoryMiB == 1024 && updated.cpus == 2)
        let cleared = try validator.update(VMDefinition(name: "a", kernel: "/k/vmlinux", initrd: "/k/initrd"), with: .object([("initrd", .null)]))
        #expect(cleared.initrd == nil)
        #expect(throws: APIError.self) { try validator.update(existing, with: try JSONParser.parse(#"{"name":"b"}"#)) }
        #expect(throws: APIError.self) { try validator.update(existing, with: try JSONParser.parse(#"{"cpus":-2}"#)) }
    }
}
