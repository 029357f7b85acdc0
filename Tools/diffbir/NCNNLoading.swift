import Foundation
import Importers

/// Whether `path` is an ncnn `.param` file: by extension, or by its magic first line.
func isNCNNParam(_ path: String) -> Bool {
    if path.hasSuffix(".param") { return true }
    guard let h = FileHandle(forReadingAtPath: path), let head = try? h.read(upToCount: 8) else { return false }
    try? h.close()
    return String(decoding: head, as: UTF8.self).hasPrefix("7767517")
}

/// Imports an ncnn model (`X.param` and the `X.bin` beside it, or `bin`).
/// `assumeShapes`: inputs with no shape get `[1, C, 64, 64]` (for listing and converting weights).
func importNCNN(_ param: String, bin: String? = nil, shapes: [String: [Int]], assumeShapes: Bool = false) throws -> NCNNImport {
    let binPath = bin ?? NCNNImporter.binPath(forParam: param)
    guard FileManager.default.fileExists(atPath: binPath) else {
        throw ToolError("\(param): its weights \(binPath) are missing (an ncnn model is a .param and a .bin; give the .bin with --bin)")
    }
    do { return try NCNNImporter.load(param: param, bin: binPath, shapes: shapes, assumeShapes: assumeShapes) } catch { throw ToolError(error.description) }
}
