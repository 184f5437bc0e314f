import Hummingbird

/// A request's query string, checked against the parameters an endpoint takes.
struct QueryParameters {
    private var values: [String: String] = [:]

    init(_ request: Request, allowed: [String]) throws(APIError) {
        for (key, value) in request.uri.queryParameters {
            let name = String(key)
            guard allowed.contains(name) else {
                let takes = allowed.isEmpty ? "this endpoint takes none" : "this endpoint takes \(allowed.joined(separator: ", "))"
                throw .invalidQuery(name, "unknown query parameter '\(name)'; \(takes)")
            }
            guard values[name] == nil else { throw .invalidQuery(name, "query parameter '\(name)' appears more than once") }
            values[name] = String(value)  // Hummingbird has decoded %XX already
        }
    }

    func bool(_ name: String) throws(APIError) -> Bool? {
        guard let text = values[name] else { return nil }
        switch text {
        case "true", "1", "": return true
        case "false", "0": return false
        default: throw .invalidQuery(name, "query parameter '\(name)' must be true or false, got '\(text)'")
        }
    }

    func int(_ name: String, in range: ClosedRange<Int64>) throws(APIError) -> Int64? {
        guard let text = values[name] else { return nil }
        guard let value = Int64(text) else {
            throw .invalidQuery(name, "query parameter '\(name)' must be an integer, got '\(text)'")
        }
        guard range.contains(value) else {
            throw .invalidQuery(name, "query parameter '\(name)' must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
        }
        return value
    }

    func string(_ name: String) -> String? { values[name] }
}
