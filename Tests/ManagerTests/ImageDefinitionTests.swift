import Foundation
import Testing
@testable import Manager

/// The `image` section of a VM definition: the daemon's default kernel and initramfs, and the
/// refusals, each naming its field (the import itself: IntegrationTests/DaemonImageTests).
@Suite struct ImageDefinitionTests {
    private func validator(kernel: String? = "/k/vmlinux", initrd: String? = "/k/image-initramfs.cpio") -> DefinitionValidator {
        var validator = DefinitionValidator(checkFile: { path in path.hasPrefix("/k/") ? .regularFile : .missing }, hostCPUs: 4)
        validator.imageKernel = kernel
        validator.imageInitrd = initrd
        return validator
    }

    private func expectFailure(_ json: String, field: String, contains text: String, validator: DefinitionValidator? = nil,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try (validator ?? self.validator()).create(from: try JSONParser.parse(json))
            Issue.record("accepted \(json)", sourceLocation: sourceLocation)
        } catch let error as APIError {
            #expect(error.status == 422 && error.field == field && error.message.contains(text), "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func anImageVMTakesTheDaemonsKernelAndInitramfs() throws {
        let vm = try validator().create(from: try JSONParser.parse(#"""
            {"name":"job","memoryMiB":256,"image":{"reference":"/srv/app","command":["sh","-c","exit 7"],"env":["A=b"],"workdir":"/tmp","user":"1000"}}
            """#))
        #expect(vm.kernel == "/k/vmlinux" && vm.initrd == "/k/image-initramfs.cpio" && vm.cmdline == VMDefinition.imageCmdline)
        #expect(vm.image == ImageDefinition(reference: "/srv/app", command: ["sh", "-c", "exit 7"], env: ["A=b"], workdir: "/tmp", user: "1000"))
        let own = try validator().create(from: try JSONParser.parse(#"{"name":"own","kernel":"/k/other","initrd":"/k/init2","image":{"reference":"r"}}"#))
        #expect(own.kernel == "/k/other" && own.initrd == "/k/init2")
        // A kernel VM is unchanged: no image.
        #expect(try validator().create(from: try JSONParser.parse(#"{"name":"k","kernel":"/k/vmlinux"}"#)).image == nil)
    }

    @Test func badImageDefinitionsNameTheirField() {
        expectFailure(#"{"name":"a","image":{"reference":"r"},"restore":"/tmp"}"#, field: "restore", contains: "cannot be combined with 'image'")
        expectFailure(#"{"name":"a","image":{}}"#, field: "image.reference", contains: "required")
        expectFailure(#"{"name":"a","image":{"reference":""}}"#, field: "image.reference", contains: "must not be empty")
        expectFailure(#"{"name":"a","image":"r"}"#, field: "image", contains: "must be an object")
        expectFailure(#"{"name":"a","image":{"reference":"r","tag":"x"}}"#, field: "image.tag", contains: "unknown field")
        expectFailure(#"{"name":"a","image":{"reference":"r","command":"ls"}}"#, field: "image.command", contains: "array of strings")
        expectFailure(#"{"name":"a","image":{"reference":"r","env":["NOVALUE"]}}"#, field: "image.env", contains: "KEY=VALUE")
        expectFailure(#"{"name":"a","image":{"reference":"r","workdir":"tmp"}}"#, field: "image.workdir", contains: "absolute")
        expectFailure(#"{"name":"a","image":{"reference":"r"},"initrd":null}"#, field: "initrd", contains: "cannot be null")
        expectFailure(#"{"name":"a","image":{"reference":"r"}}"#, field: "kernel", contains: "VIREO_KERNEL", validator: validator(kernel: nil))
        expectFailure(#"{"name":"a","image":{"reference":"r"}}"#, field: "initrd", contains: "VIREO_IMAGE_INITRAMFS", validator: validator(initrd: nil))
    }

    @Test func theImageCannotBePatched() throws {
        let vm = try validator().create(from: try JSONParser.parse(#"{"name":"job","image":{"reference":"r"}}"#))
        do {
            _ = try validator().update(vm, with: try JSONParser.parse(#"{"image":{"reference":"other"}}"#))
            Issue.record("the image was changed")
        } catch let error as APIError {
            #expect(error.status == 422 && error.field == "image")
        }
    }
}
