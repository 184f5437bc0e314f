import Foundation
import Manager
import Testing

extension DaemonTests {
    /// Issue 12, finding 2: one VMM per VM. The running VMM holds `vmm.lock` (through daemon
    /// restarts); a start while anything holds it is refused with 409 and starts nothing.
    @Suite struct OneVMMPerVM {
        private func lockIsHeld(_ path: String) -> Bool {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return false }
            defer { close(fd) }
            return flock(fd, LOCK_EX | LOCK_NB) != 0
        }

        @Test func aHeldLockRefusesASecondVMM() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            try daemon.create("one", kernel: counter, [("memoryMiB", .int(32)), ("restartPolicy", .string("always"))])
            let lock = daemon.stateDirectory + "/vms/one/vmm.lock"

            // An old VMM the daemon lost track of (simulated: this process holds the lock).
            try FileManager.default.createDirectory(atPath: daemon.stateDirectory + "/vms/one", withIntermediateDirectories: true)
            let held = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            #expect(held >= 0 && flock(held, LOCK_EX) == 0)
            let refused = try daemon.request("POST", "/vms/one/start")
            #expect(refused.status == 409 && refused.text.contains("vmm_still_running"), "\(refused.status) \(refused.text)")
            #expect(try daemon.vm("one").pid == nil, "no VMM may have started")
            #expect(try daemon.request("GET", "/info").status == 200)
            close(held)

            // The VMM it starts holds the lock itself, also after the daemon is gone and back.
            #expect(try daemon.action("one", "start").state == "running")
            #expect(lockIsHeld(lock), "the running VMM must hold its VM's lock")
            try daemon.crashAndRestart()
            #expect(lockIsHeld(lock))
            let vm = try #require(daemon.waitForVM("one") { $0.state == "running" })
            #expect(vm.state == "running", "re-adopted, not started twice: \(vm)")
            #expect(try daemon.action("one", "stop").state == "stopped")
            let deadline = Date().addingTimeInterval(5)
            while lockIsHeld(lock) && Date() < deadline { usleep(20_000) }
            #expect(!lockIsHeld(lock), "released once the VMM ended")
        }
    }
}
