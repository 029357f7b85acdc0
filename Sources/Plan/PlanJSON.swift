import Foundation

/// JSON coding of the program section.
enum PlanJSON {
    static func encode(_ p: Program) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return try e.encode(p)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws -> Program {
        try JSONDecoder().decode(Program.self, from: Data(bytes))
    }
}
