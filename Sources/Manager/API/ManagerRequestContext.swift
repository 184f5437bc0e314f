import Hummingbird
import NIOCore

/// The request context of the API: Hummingbird's basics plus the connection's channel, so that
/// endless streams (`logs -f`, `/events`) notice a client that went away.
public struct ManagerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Nil in tests that build the router without a server.
    public let channel: (any Channel)?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// False once the client's connection is closed.
    var clientConnected: Bool { channel?.isActive ?? true }
}
