import VMM

/// The cgroup-limit and pinning flags as given (`--cpu-weight`, `--cpu-max`, `--memory-max`,
/// `--cpu-affinity`), with their format checks; shared by `vireo run`, `vireo-vmm run` and the
/// daemon's `create`, `update` and `restore`.
package struct ResourceFlags: Sendable {
    package var cpuWeight: Int?
    package var cpuMax: String?
    package var memoryMax: String?
    package var cpuAffinity: String?

    package init(cpuWeight: Int? = nil, cpuMax: String? = nil, memoryMax: String? = nil, cpuAffinity: String? = nil) {
        self.cpuWeight = cpuWeight
        self.cpuMax = cpuMax
        self.memoryMax = memoryMax
        self.cpuAffinity = cpuAffinity
    }

    /// `--cpu-max` parsed (bounds are checked by whoever applies it); one-line error when malformed.
    package func parsedCPUMax() throws(UsageError) -> CPUMax? {
        guard let cpuMax else { return nil }
        guard let parsed = CPUMax.parse(cpuMax) else {
            throw UsageError("--cpu-max '\(cpuMax)' is not QUOTA[/PERIOD] (examples: 20ms/100ms, 50000/100000)")
        }
        return parsed
    }

    /// `--memory-max` in bytes.
    package func parsedMemoryMax() throws(UsageError) -> UInt64? {
        guard let memoryMax else { return nil }
        guard let bytes = ByteSize.parse(memoryMax) else {
            throw UsageError("--memory-max '\(memoryMax)' is not a size (examples: 600M, 2G)")
        }
        return bytes
    }

    /// `--cpu-affinity` as CPU numbers.
    package func parsedAffinity() throws(UsageError) -> [Int]? {
        guard let cpuAffinity else { return nil }
        guard let cpus = CPUList.parse(cpuAffinity) else {
            throw UsageError("--cpu-affinity '\(cpuAffinity)' is not a CPU list (examples: 0,1 or 0-3)")
        }
        return cpus
    }
}
