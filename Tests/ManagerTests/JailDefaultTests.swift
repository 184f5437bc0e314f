import Foundation
import Testing
@testable import Manager

/// Issue 12: the jail is on by default for daemon VMs; `isolation.jail: false` opts out; a definition
/// stored before the default changed (which always carried `jail: false`) gets the default too.
@Suite struct JailDefaultTests {
    private func stored(_ json: String) throws -> IsolationDefinition {
        try JSONDecoder().decode(IsolationDefinition.self, from: Data(json.utf8))
    }

    @Test func theStoredChoiceSurvivesAndOldRowsGetTheDefault() throws {
        #expect(try stored(#"{"jail":false}"#).jail == nil, "an old row's false was no choice")
        #expect(try stored(#"{"jail":true}"#).jail == true)
        #expect(try stored(#"{}"#).jail == nil)
        for choice in [true, false, nil] as [Bool?] {
            let definition = IsolationDefinition(jail: choice)
            let again = try JSONDecoder().decode(IsolationDefinition.self, from: JSONEncoder().encode(definition))
            #expect(again == definition, "\(String(describing: choice))")
        }
    }

    @Test func theDaemonDefaultIsOnWhereTheHostCanJail() throws {
        let validator = DefinitionValidator(checkFile: { _ in .regularFile }, readSnapshot: { _ in throw APIError.internal("none") },
                                            hostCPUs: 1)
        let plain = try validator.create(from: try JSONParser.parse(#"{"name":"a","kernel":"/k"}"#))
        let optOut = try validator.create(from: try JSONParser.parse(#"{"name":"b","kernel":"/k","isolation":{"jail":false}}"#))
        #expect(plain.isolation.jail == nil && optOut.isolation.jail == false)
        #expect(JailSupport.jail(for: nil) == (JailSupport.unavailableReason == nil))
        #expect(JailSupport.jail(for: false) == false && JailSupport.jail(for: true) == true)
        let launcher = VMMLauncher(executable: "/bin/vireo", consoleLogMaxBytes: 1 << 20)
        #expect(launcher.spec(for: optOut, confinement: VMMConfinement(uid: nil, jail: JailSupport.jail(for: false))).isolation.jail == false)
        #expect(launcher.spec(for: plain, confinement: VMMConfinement(uid: nil, jail: true)).isolation.jail)
        // The VMM gets the daemon's image roots to open images beneath (BeneathRoots).
        let rooted = VMMLauncher(executable: "/bin/vireo", consoleLogMaxBytes: 1 << 20, imageRoots: ["/srv/images"])
        #expect(rooted.spec(for: plain).isolation.imageRoots == ["/srv/images"])
        // The API shows the choice: null is the daemon's default.
        let paths = VMPaths(stateDirectory: "/s", name: "a")
        #expect(JSONResponse.vm(VMRecord(definition: optOut), paths: paths)["isolation"]?["jail"]?.boolValue == false)
        #expect(JSONResponse.vm(VMRecord(definition: plain), paths: paths)["isolation"]?["jail"] == .null)
    }
}
