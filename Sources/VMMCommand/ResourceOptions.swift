import ArgumentParser
import VMM

/// The cgroup-limit and pinning flags, shared by `vireo run` and the daemon's `create`, `update`
/// and `restore` (which pass them on to the VM's `vireo run`).
package struct ResourceOptions: ParsableArguments {
    @Option(name: .customLong("cpu-weight"), help: ArgumentHelp("cgroup CPU weight, 1–10000 (default 100; cgroup v1: cpu.shares = weight × 1024 / 100).", valueName: "n"))
    package var cpuWeight: Int?

    @Option(name: .customLong("cpu-max"), help: ArgumentHelp("cgroup CPU bandwidth: QUOTA[/PERIOD] in µs or with us/ms/s, e.g. 20ms/100ms (default period 100ms).", valueName: "quota/period"))
    package var cpuMax: String?

    @Option(name: .customLong("memory-max"), help: ArgumentHelp("cgroup memory limit for the whole VMM: guest RAM plus VMM overhead (at least 32M more than --memory), e.g. 600M.", valueName: "size"))
    package var memoryMax: String?

    @Option(name: .customLong("cpu-affinity"), help: ArgumentHelp("Pin the vCPU threads (and the VMM's other threads) to these host CPUs, e.g. 0,1 or 0-3.", valueName: "cpus"))
    package var cpuAffinity: String?

    package init() {}

    /// The flags as the lean parser holds them (one set of format checks for both parsers).
    package var flags: ResourceFlags {
        ResourceFlags(cpuWeight: cpuWeight, cpuMax: cpuMax, memoryMax: memoryMax, cpuAffinity: cpuAffinity)
    }

    /// `--cpu-max` parsed (bounds are checked by whoever applies it); one-line error when malformed.
    package func parsedCPUMax() throws -> CPUMax? {
        do { return try flags.parsedCPUMax() } catch { throw error.validation }
    }

    /// `--memory-max` in bytes.
    package func parsedMemoryMax() throws -> UInt64? {
        do { return try flags.parsedMemoryMax() } catch { throw error.validation }
    }

    /// `--cpu-affinity` as CPU numbers.
    package func parsedAffinity() throws -> [Int]? {
        do { return try flags.parsedAffinity() } catch { throw error.validation }
    }
}
