import Hummingbird
import Logging
import NIOCore

/// Turns every failure into the API's JSON error shape with the right status: our APIErrors,
/// Hummingbird's own (unknown route → 404, or 405 when the path exists with other methods; a body
/// over the limit → 413), and anything unexpected → 500. Also counts requests for `/metrics`.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = ManagerRequestContext

    /// Every registered route as (method, path pattern), to tell 405 from 404.
    let routes: [(method: String, segments: [Substring])]
    let counters: RequestCounters

    init(routes: [(method: String, path: String)], counters: RequestCounters) {
        self.routes = routes.map { ($0.method, $0.path.split(separator: "/")) }
        self.counters = counters
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response: Response
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > VMLimits.maxBodyBytes {
            // Refused unread: closing the connection spares reading the body to keep it alive.
            response = JSONResponse.error(.payloadTooLarge, headers: [.connection: "close"])
        } else {
            do {
                response = try await next(request, context)
            } catch let error as APIError {
                response = JSONResponse.error(error)
            } catch is NIOTooManyBytesError {
                response = JSONResponse.error(.payloadTooLarge, headers: [.connection: "close"])
            } catch let error as HTTPError {
                response = translate(error, request: request)
            } catch let error as SocketError {
                response = JSONResponse.error(.vmmUnavailable("cannot reach the VMM: \(error)"))
            } catch {
                context.logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
                response = JSONResponse.error(.internal("internal error: \(error)"))
            }
        }
        counters.count(method: request.method.rawValue, status: response.status.code)
        return response
    }

    private func translate(_ error: HTTPError, request: Request) -> Response {
        let path = request.uri.path
        if error.status == .notFound {
            let segments = path.split(separator: "/")
            let methods = routes.filter { Self.matches($0.segments, segments) }.map(\.method)
            if !methods.isEmpty {
                let allowed = Array(Set(methods)).sorted()
                let apiError = APIError(status: 405, code: "method_not_allowed",
                                        message: "\(request.method.rawValue) is not allowed on \(path); use \(allowed.joined(separator: ", "))")
                return JSONResponse.error(apiError, headers: [.allow: allowed.joined(separator: ", ")])
            }
            return JSONResponse.error(APIError(status: 404, code: "no_route", message: "no endpoint \(request.method.rawValue) \(path); see /openapi.json"))
        }
        if error.status == .contentTooLarge { return JSONResponse.error(.payloadTooLarge, headers: [.connection: "close"]) }
        let message = error.body ?? error.status.reasonPhrase
        return JSONResponse.error(APIError(status: error.status.code, code: error.status.code >= 500 ? "internal" : "bad_request", message: message))
    }

    private static func matches(_ pattern: [Substring], _ path: [Substring]) -> Bool {
        pattern.count == path.count && zip(pattern, path).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
    }
}
