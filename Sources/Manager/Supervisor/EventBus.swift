import Synchronization

/// Fans lifecycle events out to every `GET /events` stream.
public final class EventBus: Sendable {
    private struct State {
        var subscribers: [Int: AsyncStream<VMEvent>.Continuation] = [:]
        var nextID = 0
        var closed = false
    }
    private let state = Mutex(State())

    public init() {}

    /// A stream of the events published from now on; it ends when the bus closes.
    public func subscribe() -> AsyncStream<VMEvent> {
        let (stream, continuation) = AsyncStream<VMEvent>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        let id: Int? = state.withLock { state in
            guard !state.closed else { return nil }
            state.nextID += 1
            state.subscribers[state.nextID] = continuation
            return state.nextID
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    public func publish(_ event: VMEvent) {
        let targets = state.withLock { Array($0.subscribers.values) }
        for continuation in targets { continuation.yield(event) }
    }

    /// Ends every stream (daemon shutdown).
    public func close() {
        let targets = state.withLock { state -> [AsyncStream<VMEvent>.Continuation] in
            state.closed = true
            defer { state.subscribers.removeAll() }
            return Array(state.subscribers.values)
        }
        for continuation in targets { continuation.finish() }
    }

    var subscriberCount: Int { state.withLock { $0.subscribers.count } }
}
