/// Codable to and from `JSONValue` without Foundation (the VMM binary links no Foundation):
/// integers stay integers, booleans never pass for numbers, absent optionals are left out.
public enum JSONCoding {
    /// Why a value could not be encoded or decoded, with the coding path.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { path.isEmpty ? reason : "'\(path)': \(reason)" }
    }

    public static func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        let root = Node()
        try value.encode(to: ValueEncoder(node: root, codingPath: []))
        return root.value
    }

    public static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try T(from: ValueDecoder(value: value, codingPath: []))
    }

    static func path(_ codingPath: [any CodingKey]) -> String {
        var text = ""
        for key in codingPath {
            if let index = key.intValue { text += "[\(index)]" } else { text += (text.isEmpty ? "" : ".") + key.stringValue }
        }
        return text
    }
}

/// One value being encoded: containers fill it in place, so nested containers can be written later.
private final class Node {
    enum Content { case empty, value(JSONValue), object([(String, Node)]), array([Node]) }
    var content = Content.empty

    var value: JSONValue {
        switch content {
        case .empty: return .null
        case let .value(value): return value
        case let .object(members): return .object(members.map { ($0.0, $0.1.value) })
        case let .array(items): return .array(items.map(\.value))
        }
    }

    func child(_ key: String) -> Node {
        if case .empty = content { content = .object([]) }
        guard case var .object(members) = content else { return Node() }
        if let existing = members.first(where: { $0.0 == key }) { return existing.1 }
        let node = Node()
        members.append((key, node))
        content = .object(members)
        return node
    }

    func appended() -> Node {
        if case .empty = content { content = .array([]) }
        guard case var .array(items) = content else { return Node() }
        let node = Node()
        items.append(node)
        content = .array(items)
        return node
    }
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init(intValue: Int) { stringValue = String(intValue); self.intValue = intValue }
}

private func scalar<T: BinaryInteger>(_ value: T, _ path: [any CodingKey]) throws -> JSONValue {
    guard let number = Int64(exactly: value) else {
        throw JSONCoding.Failure(path: JSONCoding.path(path), reason: "\(value) does not fit a 64-bit signed integer")
    }
    return .int(number)
}

private struct ValueEncoder: Encoder {
    let node: Node
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .empty = node.content { node.content = .object([]) }
        return KeyedEncodingContainer(KeyedEncoder<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .empty = node.content { node.content = .array([]) }
        return UnkeyedEncoder(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleEncoder(node: node, codingPath: codingPath) }
}

private struct SingleEncoder: SingleValueEncodingContainer {
    let node: Node
    let codingPath: [any CodingKey]

    mutating func encodeNil() throws { node.content = .value(.null) }
    mutating func encode(_ value: Bool) throws { node.content = .value(.bool(value)) }
    mutating func encode(_ value: String) throws { node.content = .value(.string(value)) }
    mutating func encode(_ value: Double) throws { node.content = .value(.double(value)) }
    mutating func encode(_ value: Float) throws { node.content = .value(.double(Double(value))) }
    mutating func encode(_ value: Int) throws { node.content = .value(try scalar(value, codingPath)) }
    mutating func encode(_ value: Int8) throws { node.content = .value(try scalar(value, codingPath)) }
    mutating func encode(_ value: Int16) throws { node.content = .value(try scalar(value, codingPath)) }
    mutating func encode(_ value: Int32) throws { node.content = .value(try scalar(value, codingPath)) }
    mutating func encode(_ value: Int64) throws { node.content = .value(try scalar(value, codingPath)) }
    mutating func encode(_ value: UInt) throws { node.content = .value(try scalar(value, codingPath)) }
    mutating func encode(_ value: UInt8) throws { node.content = .value(try scalar(value, codingPath)) }
    mutating func encode(_ value: UInt16) throws { node.content = .value(try scalar(value, codingPath)) }
    mutating func encode(_ value: UInt32) throws { node.content = .value(try scalar(value, codingPath)) }
    mutating func encode(_ value: UInt64) throws { node.content = .value(try scalar(value, codingPath)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        if let json = value as? JSONValue { node.content = .value(json); return }
        try value.encode(to: ValueEncoder(node: node, codingPath: codingPath))
    }
}

private struct KeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: Node
    let codingPath: [any CodingKey]

    private func single(_ key: Key) -> SingleEncoder { SingleEncoder(node: node.child(key.stringValue), codingPath: codingPath + [key]) }

    mutating func encodeNil(forKey key: Key) throws { var s = single(key); try s.encodeNil() }
    mutating func encode(_ value: Bool, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: String, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { var s = single(key); try s.encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        ValueEncoder(node: node.child(key.stringValue), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        ValueEncoder(node: node.child(key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { ValueEncoder(node: node.child("super"), codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { ValueEncoder(node: node.child(key.stringValue), codingPath: codingPath + [key]) }
}

private struct UnkeyedEncoder: UnkeyedEncodingContainer {
    let node: Node
    let codingPath: [any CodingKey]
    var count: Int {
        if case let .array(items) = node.content { return items.count }
        return 0
    }

    private func next() -> SingleEncoder {
        let key = AnyKey(intValue: count)
        return SingleEncoder(node: node.appended(), codingPath: codingPath + [key])
    }

    mutating func encodeNil() throws { var s = next(); try s.encodeNil() }
    mutating func encode(_ value: Bool) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: String) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Double) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Float) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int8) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int16) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int32) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int64) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: UInt) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: UInt8) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: UInt16) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: UInt32) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: UInt64) throws { var s = next(); try s.encode(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { var s = next(); try s.encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let key = AnyKey(intValue: count)
        return ValueEncoder(node: node.appended(), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let key = AnyKey(intValue: count)
        return ValueEncoder(node: node.appended(), codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { ValueEncoder(node: node.appended(), codingPath: codingPath) }
}

// MARK: - Decoding

private struct ValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func failure(_ reason: String) -> JSONCoding.Failure { JSONCoding.Failure(path: JSONCoding.path(codingPath), reason: reason) }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case let .object(members) = value else { throw failure("expected an object, got \(value.typeDescription)") }
        return KeyedDecodingContainer(KeyedDecoder<Key>(members: members, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case let .array(items) = value else { throw failure("expected an array, got \(value.typeDescription)") }
        return UnkeyedDecoder(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleDecoder(value: value, codingPath: codingPath) }
}

private struct SingleDecoder: SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]

    private func failure(_ expected: String) -> JSONCoding.Failure {
        JSONCoding.Failure(path: JSONCoding.path(codingPath), reason: "expected \(expected), got \(value.typeDescription)")
    }

    private func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard let number = value.intValue, let result = T(exactly: number) else { throw failure("an integer that fits \(T.self)") }
        return result
    }

    func decodeNil() -> Bool { value == .null }
    func decode(_ type: Bool.Type) throws -> Bool {
        guard let flag = value.boolValue else { throw failure("a boolean") }
        return flag
    }
    func decode(_ type: String.Type) throws -> String {
        guard let text = value.stringValue else { throw failure("a string") }
        return text
    }
    func decode(_ type: Double.Type) throws -> Double {
        switch value {
        case let .double(number): return number
        case let .int(number): return Double(number)
        default: throw failure("a number")
        }
    }
    func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }
    func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if T.self == JSONValue.self, let json = value as? T { return json }
        return try T(from: ValueDecoder(value: value, codingPath: codingPath))
    }
}

private struct KeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let members: [(key: String, value: JSONValue)]
    let codingPath: [any CodingKey]

    var allKeys: [Key] { members.compactMap { Key(stringValue: $0.key) } }
    func contains(_ key: Key) -> Bool { members.contains { $0.key == key.stringValue } }

    private func member(_ key: Key) throws -> JSONValue {
        guard let found = members.last(where: { $0.key == key.stringValue }) else {
            throw JSONCoding.Failure(path: JSONCoding.path(codingPath + [key]), reason: "missing")
        }
        return found.value
    }

    private func single(_ key: Key) throws -> SingleDecoder { SingleDecoder(value: try member(key), codingPath: codingPath + [key]) }

    func decodeNil(forKey key: Key) throws -> Bool { try member(key) == .null }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try single(key).decode(type) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try single(key).decode(type) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try single(key).decode(type) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try single(key).decode(type) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try single(key).decode(type) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try single(key).decode(type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try single(key).decode(type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try single(key).decode(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try single(key).decode(type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try single(key).decode(type) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try single(key).decode(type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try single(key).decode(type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try single(key).decode(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try single(key).decode(type) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try single(key).decode(type) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try ValueDecoder(value: try member(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try ValueDecoder(value: try member(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { ValueDecoder(value: .object(members), codingPath: codingPath) }
    func superDecoder(forKey key: Key) throws -> any Decoder { ValueDecoder(value: try member(key), codingPath: codingPath + [key]) }
}

private struct UnkeyedDecoder: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [any CodingKey]
    var currentIndex = 0
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [JSONValue], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    private mutating func next() throws -> SingleDecoder {
        let key = AnyKey(intValue: currentIndex)
        guard !isAtEnd else { throw JSONCoding.Failure(path: JSONCoding.path(codingPath + [key]), reason: "missing") }
        defer { currentIndex += 1 }
        return SingleDecoder(value: items[currentIndex], codingPath: codingPath + [key])
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }
    mutating func decode(_ type: Bool.Type) throws -> Bool { try next().decode(type) }
    mutating func decode(_ type: String.Type) throws -> String { try next().decode(type) }
    mutating func decode(_ type: Double.Type) throws -> Double { try next().decode(type) }
    mutating func decode(_ type: Float.Type) throws -> Float { try next().decode(type) }
    mutating func decode(_ type: Int.Type) throws -> Int { try next().decode(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try next().decode(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try next().decode(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try next().decode(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try next().decode(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try next().decode(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try next().decode(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try next().decode(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try next().decode(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try next().decode(type) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decode(type) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let single = try next()
        return try ValueDecoder(value: single.value, codingPath: single.codingPath).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let single = try next()
        return try ValueDecoder(value: single.value, codingPath: single.codingPath).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        let single = try next()
        return ValueDecoder(value: single.value, codingPath: single.codingPath)
    }
}
