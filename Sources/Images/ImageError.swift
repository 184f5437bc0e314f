/// An image operation that failed, as one line naming what was wrong (and where the details are).
public struct ImageError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
