// vireo-bench-devices: host-side throughput of the virtio device models on real guest memory and
// real backends (a file for virtio-blk, a socketpair speaking passt's protocol for virtio-net), with
// the driver side done in place so the numbers are the device path's. Prints one tab-separated
// line per scenario: name, operations and MB per CPU-second of the thread (medians over --repeat
// runs of --seconds CPU seconds each).
import Glibc

/// Work done in a timed run.
struct Measurement {
    let operations: Int
    let bytes: Int
    let seconds: Double
    var perSecond: Double { Double(operations) / seconds }
    var megabytesPerSecond: Double { Double(bytes) / seconds / 1e6 }
}

/// CPU seconds this thread used since creation (user and system): the device path's cost,
/// unlike wall time unaffected by other jobs on a shared host (the benchmark never sleeps).
struct Stopwatch {
    private let start = Stopwatch.now()
    var seconds: Double { Stopwatch.now() - start }
    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}

/// What the command line asked for.
struct Options {
    var seconds = 1.0
    var repeats = 3
    var directory = "/tmp"
    var only: String?

    static func usage() -> Never {
        let text = "usage: vireo-bench-devices [--seconds S] [--repeat N] [--dir DIR] [--only SUBSTRING]\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
        exit(2)
    }

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            guard let value = rest.popFirst() else { usage() }
            switch argument {
            case "--seconds":
                guard let seconds = Double(value) else { usage() }
                options.seconds = seconds
            case "--repeat":
                guard let repeats = Int(value) else { usage() }
                options.repeats = repeats
            case "--dir": options.directory = value
            case "--only": options.only = value
            default: usage()
            }
        }
        return options
    }
}

/// Runs one scenario `repeats` times and prints its median line.
func report(_ name: String, _ options: Options, _ run: () throws -> Measurement) {
    if let only = options.only, !name.contains(only) { return }
    do {
        var runs: [Measurement] = []
        for _ in 0..<max(options.repeats, 1) { runs.append(try run()) }
        let median = runs.sorted { $0.perSecond < $1.perSecond }[runs.count / 2]
        let tenths = Int((median.megabytesPerSecond * 10).rounded())
        print("\(name)\t\(Int(median.perSecond))\t\(tenths / 10).\(tenths % 10)")
    } catch {
        print("\(name)\tfailed: \(error)")
    }
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
for scenario in BlockScenario.all {
    report(scenario.name, options) { try BlockBench(directory: options.directory).run(scenario, seconds: options.seconds) }
}
for scenario in NetScenario.all {
    report(scenario.name, options) { try NetBench().run(scenario, seconds: options.seconds) }
}
report("serial tx bytes, sink called per byte (the old path)", options) { SerialBench(outputThread: false).run(seconds: options.seconds) }
report("serial tx bytes, output thread", options) { SerialBench(outputThread: true).run(seconds: options.seconds) }
