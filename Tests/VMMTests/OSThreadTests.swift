import Testing
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
@testable import VMM

/// Thread lifecycle: kicks racing a join never reach a released thread; waits time out on CLOCK_MONOTONIC.
@Suite struct OSThreadTests {
    @Test func kicksRacingAJoinAreHarmless() {
        signal(SIGUSR2, SIG_IGN)
        for _ in 0..<200 {
            let thread = OSThread(name: "vireo-test") {}
            let kicker = OSThread(name: "vireo-kicker") {
                for _ in 0..<50 { thread.signal(SIGUSR2) }
            }
            thread.join()
            kicker.join()
            thread.signal(SIGUSR2)  // after the join: must do nothing
        }
    }

    @Test func wakeupTimesOutAndCountsPosts() {
        let wakeup = Wakeup()
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        wakeup.wait(seconds: 0.05)
        clock_gettime(CLOCK_MONOTONIC, &end)
        let elapsed = Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
        #expect(elapsed >= 0.045 && elapsed < 2)
        wakeup.post()
        clock_gettime(CLOCK_MONOTONIC, &start)
        wakeup.wait(seconds: 5)  // the post is already there: returns at once
        clock_gettime(CLOCK_MONOTONIC, &end)
        #expect(end.tv_sec - start.tv_sec < 2)
    }
}
