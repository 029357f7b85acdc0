/// An error reading or writing a checkpoint: names the file, where in it (a byte offset, a header
/// field, a zip record, a pickle opcode offset), and what is wrong.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let location: String?
    public let message: String

    public init(_ path: String, at location: String? = nil, _ message: String) {
        self.path = path
        self.location = location
        self.message = message
    }

    public var description: String {
        if let location { return "\(path): \(location): \(message)" }
        return "\(path): \(message)"
    }
}
