import Foundation
import Manager
import Testing

extension DaemonTests {
    /// Issue 12, finding 2: a client that sends half a request, or nothing, and stalls is
    /// disconnected within `--request-timeout` while the daemon keeps answering; the streams the
    /// daemon is sending (logs with follow, events) and the interactive console stay up, quiet or not.
    @Suite struct RequestTimeouts {
        /// Collects what a background stream reads.
        final class Collected: @unchecked Sendable {
            private let lock = NSLock()
            private var text = ""
            private var finished = false
            func append(_ bytes: [UInt8]) { lock.withLock { text += String(decoding: bytes, as: UTF8.self) } }
            func finish() { lock.withLock { finished = true } }
            var value: (text: String, finished: Bool) { lock.withLock { (text, finished) } }
        }

        /// Seconds until the daemon closes `fd` (recv returns 0 or an error), at most `limit`.
        private func secondsUntilClosed(_ fd: Int32, limit: Double) -> Double? {
            let start = Date()
            var buffer = [UInt8](repeating: 0, count: 4096)
            while Date().timeIntervalSince(start) < limit {
                var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&descriptor, 1, 100) > 0 {
                    let count = recv(fd, &buffer, buffer.count, 0)
                    if count <= 0 { return Date().timeIntervalSince(start) }
                }
            }
            return nil
        }

        private func send(_ fd: Int32, _ text: String) {
            _ = text.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        }

        @Test func stalledRequestsAreClosedAndStreamsStayUp() throws {
            let echo = try #require(TestEnvironment.micro("echo"))
            let timeout = 2.0
            let daemon = try DaemonProcess(extraArguments: ["--request-timeout", "\(Int(timeout))"])
            defer { daemon.stop() }
            try daemon.create("con", kernel: echo, [("memoryMiB", .int(32))])
            try daemon.action("con", "start")
            #expect(daemon.waitForLog("con", "echo ready"))

            // The long-lived streams, opened first and then left quiet.
            let console = try daemon.client.openDuplex("POST", "/vms/con/console")
            defer { console.close() }
            #expect(try console.readHead().0 == 200)
            let follow = Collected(), events = Collected()
            for (path, sink) in [("/vms/con/logs?follow=true", follow), ("/events?vm=con", events)] {
                let client = daemon.client
                Thread.detachNewThread {
                    _ = try? client.stream("GET", path) { chunk in
                        sink.append(chunk)
                        return true
                    }
                    sink.finish()
                }
            }

            // Stalled clients: nothing sent; half a head; a head then half a body; a head trickled
            // a byte every 0.4 s (bytes of an unfinished head are no progress); then a trickled body.
            var stalled: [(String, Int32)] = []
            defer { for (_, fd) in stalled { close(fd) } }
            for (what, text) in [("idle", ""), ("half head", "GET /info HTTP/1.1\r\nHost: v"),
                                 ("half body", "POST /vms HTTP/1.1\r\nHost: v\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"name\":\"x")] {
                let fd = try Manager.UnixSocket.connect(daemon.socket, timeout: 2)
                send(fd, text)
                stalled.append((what, fd))
            }
            let trickler = try Manager.UnixSocket.connect(daemon.socket, timeout: 2)
            defer { close(trickler) }
            let trickleStart = Date()
            let trickle = Array("GET /info HTTP/1.1\r\nHost: vireo\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 100)
            var trickleClosedAfter: Double?
            for byte in trickle {
                var one = byte
                if Glibc.send(trickler, &one, 1, Int32(MSG_NOSIGNAL)) != 1 { break }
                if let closed = secondsUntilClosed(trickler, limit: 0.4) {
                    trickleClosedAfter = Date().timeIntervalSince(trickleStart) - 0.4 + closed
                    break
                }
            }
            #expect(trickleClosedAfter.map { $0 < timeout + 2 } == true, "a trickled head lived \(String(describing: trickleClosedAfter)) s")

            // A body trickled a byte every 0.4 s: progress, but under the minimum rate (1 KiB/s)
            // once the timeout has passed.
            let bodyTrickler = try Manager.UnixSocket.connect(daemon.socket, timeout: 2)
            defer { close(bodyTrickler) }
            send(bodyTrickler, "POST /vms HTTP/1.1\r\nHost: v\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n")
            let bodyStart = Date()
            var bodyClosedAfter: Double?
            for _ in 0..<500 {
                var one = UInt8(ascii: " ")
                if Glibc.send(bodyTrickler, &one, 1, Int32(MSG_NOSIGNAL)) != 1 { break }
                if secondsUntilClosed(bodyTrickler, limit: 0.4) != nil {
                    bodyClosedAfter = Date().timeIntervalSince(bodyStart)
                    break
                }
            }
            #expect(bodyClosedAfter.map { $0 < 2 * timeout + 2 } == true, "a trickled body lived \(String(describing: bodyClosedAfter)) s")

            // The daemon answered all along, and closed each stalled client within the bound.
            #expect(try daemon.request("GET", "/info").status == 200)
            for (what, fd) in stalled {
                let closed = secondsUntilClosed(fd, limit: timeout + 3)
                #expect(closed != nil, "the \(what) client is still connected")
            }

            // Well past the timeout, the quiet console and the streams are still there.
            Thread.sleep(forTimeInterval: 2 * timeout)
            try console.sendChunk(Array("still-attached".utf8))
            var seen = ""
            let deadline = Date().addingTimeInterval(20)
            while !seen.contains("still-attached"), Date() < deadline, let chunk = try console.readBody() {
                seen += String(decoding: chunk, as: UTF8.self)
            }
            #expect(seen.contains("still-attached"), "the console gave: \(seen)")
            let followDeadline = Date().addingTimeInterval(10)
            while !follow.value.text.contains("still-attached") && Date() < followDeadline { usleep(50_000) }
            #expect(follow.value.text.contains("still-attached") && !follow.value.finished, "log follow: \(follow.value)")
            #expect(!events.value.finished, "the events stream was closed")
            try console.finishBody()
            #expect(try daemon.request("GET", "/vms/con").status == 200)
        }
    }
}
