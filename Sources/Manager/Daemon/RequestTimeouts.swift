import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTPTypes

/// Idle and slow-request timeouts for API connections (issue 12, finding 2): half-sent requests
/// must not hold descriptors forever.
///
/// A connection is closed when it has been quiet for `timeout` while the daemon waits on the
/// client: before a request's head is complete (an idle keep-alive connection, or a head sent
/// byte by byte: bytes of an incomplete head do not count as progress) or between two parts of a
/// request body. While the daemon answers (logs with `follow`, `/events`, any long response) the
/// client owes nothing and no timeout runs. `POST /vms/{name}/console` is exempt while its body is
/// read: that body is what the user types, and a console may sit quiet for hours.
///
/// A body that keeps coming but slower than `minimumBodyRate` on average once `timeout` has passed
/// (a byte every few seconds) is closed too, so a trickling client cannot hold a connection forever;
/// a slow but real upload is far above that rate.
///
/// Hummingbird's own `idleTimeout` is not used: it cannot tell the console from a stalled upload.
final class RequestTimeouts: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let timeout: TimeAmount
    /// Bytes per second a request body must average once `timeout` has passed since its head.
    static let minimumBodyRate = 1024
    private var bodyStart = NIODeadline.now()
    private var bodyBytes = 0
    private var lastProgress = NIODeadline.now()
    private var requestsInProgress = 0
    private var readingBody = false
    private var exempt = false
    private var timer: Scheduled<Void>?

    init(seconds: Double) {
        timeout = .nanoseconds(Int64(seconds * 1e9))
    }

    /// True for the interactive console, whose request body may pause for any time.
    static func isExempt(_ head: HTTPRequest) -> Bool {
        guard head.method == .post, let path = head.path?.split(separator: "?", maxSplits: 1).first else { return false }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0].isEmpty && parts[1] == "vms" && !parts[2].isEmpty && parts[3] == "console"
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { progress(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        progress(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head):
            requestsInProgress += 1
            readingBody = true
            exempt = RequestTimeouts.isExempt(head)
            bodyStart = .now()
            bodyBytes = 0
        case let .body(buffer):
            bodyBytes += buffer.readableBytes
        case .end:
            readingBody = false
        }
        progress(context)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            requestsInProgress = max(0, requestsInProgress - 1)
            if requestsInProgress == 0 { progress(context) }
        }
        context.write(data, promise: promise)
    }

    /// True while the daemon waits on the client.
    private var waitingOnClient: Bool {
        readingBody ? !exempt : requestsInProgress == 0
    }

    /// True when a (non-exempt) body has been read for longer than `timeout` at less than the minimum rate.
    private func tricklingBody(now: NIODeadline) -> Bool {
        guard readingBody, !exempt else { return false }
        let elapsed = now - bodyStart
        guard elapsed >= timeout else { return false }
        return Int64(bodyBytes) * 1_000_000_000 < Int64(RequestTimeouts.minimumBodyRate) * elapsed.nanoseconds
    }

    private func progress(_ context: ChannelHandlerContext) {
        lastProgress = .now()
        if timer == nil { schedule(context, at: lastProgress + timeout) }
    }

    private func schedule(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        timer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            guard context.channel.isActive, waitingOnClient else { return }  // the next progress re-arms it
            let now = NIODeadline.now()
            if now >= lastProgress + timeout || tricklingBody(now: now) {
                context.close(promise: nil)
            } else {
                schedule(context, at: min(lastProgress + timeout, now + timeout))
            }
        }
    }
}
