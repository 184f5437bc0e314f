import Foundation
import Hummingbird
import NIOCore
import Synchronization

/// Set when the daemon shuts down, so endless streams end.
public final class ShutdownFlag: Sendable {
    private let value = Atomic<Bool>(false)
    public init() {}
    public var isSet: Bool { value.load(ordering: .acquiring) }
    public func set() { value.store(true, ordering: .releasing) }
}

/// The REST API: builds the router whose routes `docs/openapi.json` documents.
public struct ManagerAPI: Sendable {
    public let supervisor: Supervisor
    let validator: DefinitionValidator
    let store: Store?
    let started: Date
    let shutdown: ShutdownFlag
    let counters = RequestCounters()
    /// Vireo's version, for `GET /info`.
    let version: String

    public init(supervisor: Supervisor, store: Store?, validator: DefinitionValidator = DefinitionValidator(),
                shutdown: ShutdownFlag = ShutdownFlag(), version: String) {
        self.supervisor = supervisor
        self.store = store
        self.validator = validator
        self.shutdown = shutdown
        self.version = version
        started = Date()
    }

    /// The router with every endpoint, behind the JSON error middleware.
    public func buildRouter() -> Router<ManagerRequestContext> {
        // Registered twice: first to learn the route table the middleware needs for 405s.
        let scratch = Router(context: ManagerRequestContext.self)
        addRoutes(to: scratch)
        let table = scratch.routes.map { (method: $0.method.rawValue, path: $0.path.description) }

        let router = Router(context: ManagerRequestContext.self)
        router.add(middleware: ErrorMiddleware(routes: table, counters: counters))
        addRoutes(to: router)
        return router
    }

    private func addRoutes(to router: Router<ManagerRequestContext>) {
        addServiceRoutes(to: router)
        addVMRoutes(to: router)
        addStreamRoutes(to: router)
    }

    // MARK: Request helpers

    /// The `{name}` path parameter, checked like a name in a body.
    static func name(_ context: ManagerRequestContext) throws(APIError) -> String {
        let name = context.parameters.get("name") ?? ""
        do throws(APIError) {
            try DefinitionValidator.validateName(name, subject: "path parameter 'name'")
        } catch {
            throw APIError(status: 400, code: "invalid_name", message: error.message, field: "name")
        }
        return name
    }

    /// The body as JSON (at most 1 MiB).
    static func jsonBody(_ request: Request) async throws -> JSONValue {
        let buffer = try await request.body.collect(upTo: VMLimits.maxBodyBytes)
        do {
            return try JSONParser.parse(Array(buffer.readableBytesView))
        } catch {
            throw APIError.malformedJSON(error.description)
        }
    }

    /// Actions take their options in the query string: a body is a client mistake worth reporting.
    static func requireEmptyBody(_ request: Request) async throws {
        let buffer = try await request.body.collect(upTo: VMLimits.maxBodyBytes)
        guard buffer.readableBytesView.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) else {
            throw APIError(status: 400, code: "unexpected_body", message: "this endpoint takes no request body; its options are query parameters")
        }
    }
}
