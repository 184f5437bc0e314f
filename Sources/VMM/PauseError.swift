/// Why a pause (and so a snapshot) could not be taken; the VM keeps running in every case.
public enum PauseError: Error, Equatable, CustomStringConvertible {
    case vcpusDidNotPark(running: Int, of: Int, seconds: Double)
    case stopping

    public var description: String {
        switch self {
        case let .vcpusDidNotPark(running, total, seconds):
            return "pause failed: \(running) of \(total) vCPU(s) did not park within \(Int(seconds)) s; the VM keeps running"
        case .stopping: return "pause failed: the VM is stopping"
        }
    }
}
