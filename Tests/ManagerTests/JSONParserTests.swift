import Testing
@testable import Manager

/// The strict JSON parser the API reads bodies with.
@Suite struct JSONParserTests {
    @Test func parsesValues() throws {
        let value = try JSONParser.parse(#" {"a": [1, -2, 3.5, 1e3, true, false, null], "b": "x\"\\\/\n\u00e9\ud83d\ude00", "c": {}} "#)
        #expect(value["a"] == .array([.int(1), .int(-2), .double(3.5), .double(1000), .bool(true), .bool(false), .null]))
        #expect(value["b"] == .string("x\"\\/\né😀"))
        #expect(value["c"] == .object([]))
        #expect(try JSONParser.parse("9223372036854775807") == .int(.max))
        #expect(try JSONParser.parse("92233720368547758070") == .double(92233720368547758070))
    }

    @Test func refusesMalformedTextWithAnOffset() {
        let cases: [(String, String)] = [
            ("", "empty"), ("{", "end of input"), (#"{"a" 1}"#, "':'"), (#"{"a":1,}"#, "string key"), ("[1 2]", "','"),
            ("01", "leading zeros"), ("1.", "after '.'"), ("-", "digit"), ("tru", "'true'"), (#""abc"#, "unterminated"),
            ("\"a\u{01}\"", "control character"), (#""\x""#, "unknown escape"), (#""\ud800""#, "surrogate"), ("{} {}", "after the JSON value"),
            ("'a'", "unexpected character"), ("NaN", "unexpected character"),
        ]
        for (text, reason) in cases {
            do {
                _ = try JSONParser.parse(text)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.description.contains(reason), "\(text): \(error)")
                #expect(error.description.hasPrefix("malformed JSON at byte"))
            }
        }
    }

    @Test func limitsNesting() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(deep) }
        let fine = String(repeating: "[", count: 60) + String(repeating: "]", count: 60)
        #expect(throws: Never.self) { try JSONParser.parse(fine) }
    }

    @Test func serializesAndRoundTrips() throws {
        let value = JSONValue.object([("s", .string("a\"b\n\u{01}")), ("n", .int(-5)), ("l", .array([.null, .bool(true)]))])
        #expect(value.serialized() == #"{"s":"a\"b\n\u0001","n":-5,"l":[null,true]}"#)
        #expect(try JSONParser.parse(value.serialized()) == value)
        #expect(try JSONParser.parse(value.prettySerialized()) == value)
    }
}
