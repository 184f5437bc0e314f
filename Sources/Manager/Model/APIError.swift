/// An error the API reports as `{"error": {"code", "message"}}` with an HTTP status.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    /// Stable machine-readable code, e.g. `invalid_field`.
    public var code: String
    /// One sentence saying exactly what is wrong.
    public var message: String
    /// The offending request field or query parameter, when there is one.
    public var field: String?
    /// The VM's current state, for invalid transitions.
    public var state: VMState?

    public init(status: Int, code: String, message: String, field: String? = nil, state: VMState? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.state = state
    }

    public var description: String { message }

    public static func malformedJSON(_ message: String) -> APIError {
        APIError(status: 400, code: "malformed_json", message: message)
    }
    public static func invalidField(_ field: String, _ message: String) -> APIError {
        APIError(status: 422, code: "invalid_field", message: message, field: field)
    }
    public static func unknownField(_ field: String, allowed: [String]) -> APIError {
        APIError(status: 422, code: "unknown_field",
                 message: "unknown field '\(field)'; the fields are \(allowed.joined(separator: ", "))", field: field)
    }
    public static func missingField(_ field: String, hint: String? = nil) -> APIError {
        APIError(status: 422, code: "missing_field",
                 message: "field '\(field)' is required" + (hint.map { " " + $0 } ?? ""), field: field)
    }
    public static func invalidQuery(_ parameter: String, _ message: String) -> APIError {
        APIError(status: 400, code: "invalid_query", message: message, field: parameter)
    }
    public static func notFound(vm name: String) -> APIError {
        APIError(status: 404, code: "not_found", message: "no VM named '\(name)'")
    }
    public static func duplicate(_ name: String) -> APIError {
        APIError(status: 409, code: "already_exists", message: "field 'name': a VM named '\(name)' already exists", field: "name")
    }
    public static func invalidState(_ message: String, state: VMState) -> APIError {
        APIError(status: 409, code: "invalid_state", message: message, state: state)
    }
    public static let payloadTooLarge = APIError(status: 413, code: "payload_too_large",
                                                 message: "the request body is larger than 1 MiB")
    public static func startFailed(_ message: String) -> APIError {
        APIError(status: 422, code: "start_failed", message: message)
    }
    public static func vmmUnavailable(_ message: String) -> APIError {
        APIError(status: 503, code: "vmm_unavailable", message: message)
    }
    public static func `internal`(_ message: String) -> APIError {
        APIError(status: 500, code: "internal", message: message)
    }
}
