import ArgumentParser
import Manager
import Testing
@testable import VMMCommand

/// Issue 13: the API and `vireo run` hold a VM to one table of limits through one validator, so they
/// refuse the same VMs with the same problem text (each naming the field in its own words).
@Suite struct SharedLimitsTests {
    let validator = DefinitionValidator(checkFile: { $0.hasPrefix("/k/") ? .regularFile : .missing }, hostCPUs: 64)

    /// The API's 422 message and `vireo run`'s exit-2 message for one definition.
    private func messages(json members: String, flags: [String]) -> (api: APIError?, commandLine: String?) {
        var apiError: APIError?
        do {
            _ = try validator.create(from: try JSONParser.parse(#"{"name":"a","kernel":"/k/vmlinux",\#(members)}"#))
        } catch {
            apiError = error as? APIError
        }
        var commandLine: String?
        do {
            _ = try RunCommand.parse(["--kernel", "/k/vmlinux"] + flags)
        } catch {
            commandLine = RunCommand.message(for: error)
        }
        return (apiError, commandLine)
    }

    @Test(arguments: [
        (#""cpus":0"#, ["--cpus", "0"]),
        (#""cpus":255"#, ["--cpus", "255"]),
        (#""memoryMiB":8"#, ["--memory", "8M"]),
        (#""memoryMiB":2097152"#, ["--memory", "2T"]),
        (#""cmdline":"\#(String(repeating: "x", count: 2048))""#, ["--cmdline", String(repeating: "x", count: 2048)]),
        (#""disks":[{"path":"/k/d0"},{"path":"/k/d1"},{"path":"/k/d2"}],"nets":[\#(Array(repeating: #"{"mode":"user"}"#, count: 8).joined(separator: ","))]"#,
         ["--disk", "/k/d0", "--disk", "/k/d1", "--disk", "/k/d2"] + Array(repeating: ["--net", "user"], count: 8).flatMap { $0 }),
        (#""disks":[{"path":"/k/d0"},{"path":"/k/d0"}]"#, ["--disk", "/k/d0", "--disk", "/k/d0"]),
        (#""disks":[{"path":"/k/a/x.img"},{"path":"/k/b/x.img"}]"#, ["--disk", "/k/a/x.img", "--disk", "/k/b/x.img"]),
        (#""resources":{"cpuWeight":0}"#, ["--cpu-weight", "0"]),
        (#""resources":{"cpuWeight":10001}"#, ["--cpu-weight", "10001"]),
        (#""resources":{"cpuMax":{"quotaMicros":10}}"#, ["--cpu-max", "10us"]),
        (#""resources":{"cpuMax":{"quotaMicros":5000,"periodMicros":2000000}}"#, ["--cpu-max", "5ms/2s"]),
        (#""memoryMiB":512,"resources":{"memoryMaxMiB":520}"#, ["--memory", "512M", "--memory-max", "520M"]),
        (#""isolation":{"group":"0"}"#, ["--gid", "0"]),
    ])
    func bothSidesRefuseWithOneProblemText(json: String, flags: [String]) throws {
        let (api, commandLine) = messages(json: json, flags: flags)
        let apiError = try #require(api, "the API accepted \(json)")
        let line = try #require(commandLine, "vireo run accepted \(flags)")
        #expect(apiError.status == 422 && apiError.code == "invalid_field", "\(apiError)")
        let field = try #require(apiError.field)
        let apiName = "field '\(field)'", flag = SpecError.flag(for: field)
        #expect(apiError.message.hasPrefix(apiName), "\(apiError.message)")
        #expect(line.hasPrefix(flag), "\(line)")
        // The same problem, word for word, after each side's name for the field.
        let apiProblem = apiError.message.dropFirst(apiName.count), cliProblem = line.dropFirst(flag.count)
        let references = { (text: Substring) in text.replacing("'isolation.user'", with: "--uid") }
        #expect(references(apiProblem) == references(cliProblem), "API: \(apiError.message)\nCLI: \(line)")
        #expect(!apiProblem.isEmpty)
    }

    /// At the limit both sides accept: ten virtio devices, the largest guest, the longest command line.
    @Test func bothSidesAcceptWhatTheLimitsAllow() throws {
        let (api, commandLine) = messages(json: #""memoryMiB":1048576,"cpus":254,"cmdline":"\#(String(repeating: "x", count: 2047))","disks":[{"path":"/k/d0"},{"path":"/k/d1"}],"nets":[\#(Array(repeating: #"{"mode":"user"}"#, count: 8).joined(separator: ","))]"#,
                                          flags: ["--memory", "1T", "--cpus", "254", "--cmdline", String(repeating: "x", count: 2047),
                                                  "--disk", "/k/d0", "--disk", "/k/d1"] + Array(repeating: ["--net", "user"], count: 8).flatMap { $0 })
        #expect(api == nil, "\(String(describing: api))")
        #expect(commandLine == nil, "\(String(describing: commandLine))")
    }
}
