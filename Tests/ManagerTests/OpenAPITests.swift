import Foundation
import Testing
@testable import Manager

/// docs/openapi.json is valid OpenAPI 3 and documents exactly the routes the server has.
@Suite struct OpenAPITests {
    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    private func document() throws -> JSONValue {
        try JSONParser.parse(OpenAPIDocument.bytes)
    }

    /// The routes the real router registers, as "METHOD /path/{param}".
    private func registeredRoutes() throws -> Set<String> {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-openapi-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try Store(path: directory + "/vireo.sqlite")
        let supervisor = Supervisor(configuration: .init(stateDirectory: directory, vmmExecutable: "/bin/false"),
                                    store: store, events: EventBus(), logger: .init(label: "test"))
        let router = ManagerAPI(supervisor: supervisor, store: store, version: "test").buildRouter()
        return Set(router.routes.map { "\($0.method.rawValue) \($0.path.description)" })
    }

    @Test func everyRouteIsDocumentedAndEveryDocumentedRouteExists() throws {
        let paths = try #require(try document()["paths"], "no paths")
        guard case let .object(entries) = paths else { Issue.record("paths is not an object"); return }
        var documented = Set<String>()
        for (path, item) in entries {
            guard case let .object(operations) = item else { continue }
            for (method, _) in operations where ["get", "put", "post", "delete", "patch", "head", "options"].contains(method) {
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        let registered = try registeredRoutes()
        #expect(registered.subtracting(documented).isEmpty, "routes missing from the document: \(registered.subtracting(documented).sorted())")
        #expect(documented.subtracting(registered).isEmpty, "documented routes the server lacks: \(documented.subtracting(registered).sorted())")
        #expect(registered.count >= 15)
    }

    @Test func theServedDocumentIsTheCommittedOne() throws {
        let committed = try Data(contentsOf: Self.repositoryRoot.appendingPathComponent("docs/openapi.json"))
        #expect(Array(committed) == OpenAPIDocument.bytes)
        #expect(try document()["openapi"]?.stringValue?.hasPrefix("3.") == true)
    }

    /// Python's openapi-spec-validator (scripts/deps installs it).
    @Test func validatesWithOpenAPISpecValidator() throws {
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = ["python3", "-c", "import openapi_spec_validator"]
        check.standardError = FileHandle.nullDevice
        try check.run()
        check.waitUntilExit()
        guard check.terminationStatus == 0 else {
            #expect(ProcessInfo.processInfo.environment["VIREO_REQUIRE_GUESTS"] != "1",
                    "openapi-spec-validator is not installed: run scripts/deps")
            return
        }
        let validate = Process()
        validate.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let path = Self.repositoryRoot.appendingPathComponent("docs/openapi.json").path
        validate.arguments = ["python3", "-c", "import json,sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')", path]
        let output = Pipe()
        validate.standardOutput = output
        validate.standardError = output
        try validate.run()
        validate.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(validate.terminationStatus == 0, "openapi-spec-validator: \(text)")
        #expect(text.contains("valid"))
    }
}
