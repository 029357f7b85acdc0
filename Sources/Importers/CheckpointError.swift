/// An error reading or writing a checkpoint: names the file, where in it (a byte offset, a header
/// field, a zip record, a pickle opcode offset), and what is wrong.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let location: String?
    public let message: String
    /// For an ONNX import that needs a graph input's value at compile time (axes, pads, shapes,
    /// scales fed as inputs): the input's name. Bind it with `ONNXImportOptions.constants`.
    public var requiredConstant: String?

    public init(_ path: String, at location: String? = nil, _ message: String, requiredConstant: String? = nil) {
        self.path = path
        self.location = location
        self.message = message
        self.requiredConstant = requiredConstant
    }

    public var description: String {
        (location.map { "\(path): \($0): \(message)" } ?? "\(path): \(message)").escapingControlCharacters
    }
}
