import Foundation
import Tensors

/// One image of a batch: where it is read from and written to.
public struct BatchItem: Sendable, Equatable {
    public var input: String
    public var output: String
    /// The output exists and `skipExisting` was asked: nothing is done.
    public var skip: Bool
    /// The format it is written in.
    public var format: ImageFormat = .png
}

public struct BatchError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description.escapingControlCharacters }
}

/// The inputs and outputs of `restore`: files, folders and lists expanded, outputs named and
/// checked, all before any image is read, so that a batch never fails half-way on a name.
public enum Batch {
    /// Extensions of the images read (lower case).
    public static let inputExtensions: Set<String> = ["png", "jpg", "jpeg", "webp"]

    /// Lowercased extension of a path ("" without one).
    static func extensionOf(_ path: String) -> String {
        let name = FilePaths.fileName(of: path)
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "" }
        return String(name[name.index(after: dot)...]).lowercased()
    }

    static func isDirectory(_ path: String) -> Bool {
        var d: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &d) && d.boolValue
    }

    /// The images named by `arguments`: files as given; a folder's images (by extension, sorted;
    /// its subfolders too with `recursive`), each with its path relative to the folder; `-` reads
    /// one path a line from `list()` (standard input).
    public static func expand(_ arguments: [String], recursive: Bool, list: () -> [String] = { [] }) throws(BatchError) -> [(path: String, relative: String)] {
        var out: [(String, String)] = []
        for a in arguments {
            if a == "-" {
                for line in list() where !line.isEmpty { out.append((line, FilePaths.fileName(of: line))) }
                continue
            }
            if isDirectory(a) {
                let root = a.hasSuffix("/") && a.count > 1 ? String(a.dropLast()) : a
                var found: [String] = []
                var pending = [""]
                while let rel = pending.popLast() {
                    let dir = rel.isEmpty ? root : root + "/" + rel
                    guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
                        throw BatchError("\(dir): cannot list the folder")
                    }
                    for name in names where !name.hasPrefix(".") {
                        let r = rel.isEmpty ? name : rel + "/" + name
                        if isDirectory(root + "/" + r) {
                            if recursive { pending.append(r) }
                        } else if inputExtensions.contains(extensionOf(name)) {
                            found.append(r)
                        }
                    }
                }
                guard !found.isEmpty else {
                    throw BatchError("\(a): no \(inputExtensions.sorted().joined(separator: "/")) images in the folder\(recursive ? " or below" : " (--recursive looks in its subfolders)")")
                }
                for r in found.sorted() { out.append((root + "/" + r, r)) }
                continue
            }
            guard FileManager.default.fileExists(atPath: a) else { throw BatchError("\(a): no such file or folder") }
            out.append((a, FilePaths.fileName(of: a)))
        }
        return out
    }

    /// Names every output: `output` itself for one input (unless it is, or ends like, a folder),
    /// else `output/RELATIVE` with the extension of `format` (default PNG; folders created). A
    /// single output's format is `format`, else its extension's (an unknown one refused). Two
    /// inputs that would write one file get `-2`, `-3`, ... (in `notes`). An existing output is an
    /// error unless `overwrite` or `skipExisting`. A directory that cannot be written: an error.
    /// Nothing is read or written but the output folders.
    public static func plan(_ inputs: [(path: String, relative: String)], output: String, format: ImageFormat? = nil, overwrite: Bool,
                            skipExisting: Bool, notes: inout [String]) throws(BatchError) -> [BatchItem] {
        guard !inputs.isEmpty else { throw BatchError("no input images") }
        // `-o -`: one image to standard output, PNG unless --format says otherwise.
        if output == "-" {
            guard inputs.count == 1 else { throw BatchError("-o -: standard output takes one image, not \(inputs.count)") }
            return [BatchItem(input: inputs[0].path, output: "-", skip: false, format: format ?? .png)]
        }
        let toFolder = inputs.count > 1 || output.hasSuffix("/") || isDirectory(output)
        var items: [BatchItem] = []
        var taken = Set<String>()
        for (path, relative) in inputs {
            var target: String
            let written: ImageFormat
            if toFolder {
                written = format ?? .png
                let stem = relative.lowercased().hasSuffix("." + extensionOf(relative)) && !extensionOf(relative).isEmpty
                    ? String(relative.dropLast(extensionOf(relative).count + 1)) : relative
                target = FilePaths.join(output.hasSuffix("/") && output.count > 1 ? String(output.dropLast()) : output, stem + "." + written.fileExtension)
            } else {
                target = output
                let ext = extensionOf(target)
                guard let f = format ?? ImageFormat(extension: ext) else {
                    throw BatchError("\(target): output format '\(ext.isEmpty ? "(none)" : ext)' is not one this build writes (.png, .jpg, .jpeg, .webp; --format forces one)")
                }
                written = f
            }
            if taken.contains(target) {
                let ext = extensionOf(target)
                let base = String(target.dropLast(ext.count + 1))
                var k = 2
                while taken.contains("\(base)-\(k).\(ext)") { k += 1 }
                notes.append("\(path) and an earlier input both make \(target): writing \(base)-\(k).\(ext)")
                target = "\(base)-\(k).\(ext)"
            }
            taken.insert(target)
            var skip = false
            if FileManager.default.fileExists(atPath: target) {
                if skipExisting { skip = true }
                else if !overwrite { throw BatchError("\(target) exists; pass --overwrite to replace it or --skip-existing to leave it") }
            }
            items.append(BatchItem(input: path, output: target, skip: skip, format: written))
        }
        // The folders, created now; each must be writable.
        for dir in Set(items.map { FilePaths.directory(of: $0.output) }) {
            if !isDirectory(dir) {
                do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                    throw BatchError("\(dir): cannot create the output folder: \(error.localizedDescription)")
                }
            }
            guard FileManager.default.isWritableFile(atPath: dir) else { throw BatchError("\(dir): the output folder is not writable") }
        }
        return items
    }

    /// How a batch went.
    public struct Outcome: Sendable {
        public var done: [BatchItem] = []
        public var skipped: [BatchItem] = []
        public var failed: [(item: BatchItem, error: String)] = []
    }

    /// Runs `body` on each item not skipped, in order. A failure stops the batch unless `keepGoing`
    /// (then it is recorded and the next item runs). `report` hears of each item as it ends.
    public static func run(_ items: [BatchItem], keepGoing: Bool, report: (BatchItem, Int, Result<Void, Error>?) -> Void = { _, _, _ in },
                           _ body: (BatchItem, Int) throws -> Void) -> Outcome {
        var outcome = Outcome()
        for (i, item) in items.enumerated() {
            if item.skip {
                outcome.skipped.append(item)
                report(item, i, nil)
                continue
            }
            do {
                try body(item, i)
                outcome.done.append(item)
                report(item, i, .success(()))
            } catch {
                outcome.failed.append((item, "\(error)"))
                report(item, i, .failure(error))
                if !keepGoing { break }
            }
        }
        return outcome
    }
}
