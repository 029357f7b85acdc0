// The plan file: one memory-mappable file per compiled model.
//
// All integers little-endian; all offsets and sizes 64-bit and from the start of the file.
//
//   offset  size  field
//   0       8     magic "DIFFBIRP"
//   8       4     format version (u32), currently 1
//   12      4     flags (u32), 0
//   16      8     file size (u64)
//   24      8     section table offset (u64)
//   32      4     section count (u32)
//   36      4     crc32 of the section table's bytes
//   40      20    reserved, 0
//   60      4     crc32 of bytes 0..<60 (zlib's crc32, as every checksum here)
//
// Section table (at its offset, `count` entries of 32 bytes):
//   0   4  kind (u32): 1 summary, 2 program, 3 weights
//   4   4  reserved, 0
//   8   8  offset (u64), a multiple of 64 (weights: of 4096)
//   16  8  size in bytes (u64)
//   24  4  crc32 of the section's bytes
//   28  4  reserved, 0
//
// Sections:
//   summary  UTF-8 text: the compile report, readable with `diffbir inspect` or any pager.
//   program  UTF-8 JSON of `Program`: entry points (inputs, outputs, arena size, instructions: kernel
//            identifier with typed parameters, operands as arena offsets or weight indices), the weight
//            records (name, dtype, shape, offset in the weight section, format) and the CPU features
//            the kernels were chosen for. JSON keeps it readable by any tool; it is small beside the weights.
//   weights  the raw weight bytes, each record 64-byte aligned, used in place through mmap.
//
// Padding between the header, the sections and the table is zero. Nothing of the file is outside the
// header, the table, the sections and that padding, so every byte is checked.
//
// A reader refuses, before anything runs: a file shorter than its header or its recorded size, another
// magic, another format version (naming the versions it reads), a section outside the file, a CRC that
// does not match (naming the section, the table or the header), padding that is not zero, a program
// that does not decode or points outside its sections.
import CChecksum
import Tensors

#if canImport(Glibc)
import Glibc
#endif

public enum PlanFormat {
    public static let magic: [UInt8] = Array("DIFFBIRP".utf8)
    public static let version: UInt32 = 1
    public static let readableVersions: [UInt32] = [1]
    public static let headerSize = 64

    public enum SectionKind: UInt32, Sendable, CaseIterable {
        case summary = 1, program = 2, weights = 3
        public var name: String {
            switch self {
            case .summary: return "summary"
            case .program: return "program"
            case .weights: return "weights"
            }
        }
    }
}

/// An error reading or writing a plan: names the file and the section.
public struct PlanError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)".escapingControlCharacters }
}

/// zlib's crc32 of `bytes`, continuing from `start` (`CChecksum`: folded with PCLMULQDQ where the
/// processor has it, the same values).
public func planCRC32(_ bytes: UnsafeRawBufferPointer, _ start: UInt32 = 0) -> UInt32 {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return start }
    return dc_crc32(start, base.assumingMemoryBound(to: UInt8.self), bytes.count)
}

/// Writes a plan: summary, program, then the weights streamed one at a time (with their CRC), then
/// the section table, then the header. Atomic (temporary file, renamed at the end).
public enum PlanWriter {
    public static func write(path: String, program: Program, summary: String, weights: [Tensor?], overwrite: Bool,
                             progress: ((Int, Int) -> Void)? = nil) throws(PlanError) {
        precondition(weights.count == program.weights.count)
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        let programJSON: [UInt8]
        do { programJSON = Array(try PlanJSON.encode(program)) } catch { throw PlanError(path, "cannot encode the program: \(error)") }
        let out: OutputFile
        do { out = try OutputFile(path: path, overwrite: overwrite) } catch { throw PlanError(path, error.message) }
        do {
            try out.write([UInt8](repeating: 0, count: PlanFormat.headerSize))
            var table: [(PlanFormat.SectionKind, Int, Int, UInt32)] = []
            func pad(to alignment: Int) throws(FileError) {
                let n = (alignment - out.bytesWritten % alignment) % alignment
                if n > 0 { try out.write([UInt8](repeating: 0, count: n)) }
            }
            for (kind, bytes) in [(PlanFormat.SectionKind.summary, Array(summary.utf8)), (.program, programJSON)] {
                try pad(to: 64)
                let start = out.bytesWritten
                try out.write(bytes)
                table.append((kind, start, bytes.count, bytes.withUnsafeBytes { planCRC32($0) }))
            }
            try pad(to: 4096)
            let weightsStart = out.bytesWritten
            var crc: UInt32 = 0
            var position = 0
            let zeros = [UInt8](repeating: 0, count: 64)
            for (i, record) in program.weights.enumerated() {
                guard let t = weights[i] else { continue }
                precondition(record.offset >= position && t.byteCount == record.byteCount, "weight \(record.name) out of place")
                if record.offset > position {
                    let gap = record.offset - position
                    let filler = Array(zeros[0..<gap])
                    try out.write(filler)
                    crc = filler.withUnsafeBytes { planCRC32($0, crc) }
                }
                try out.write(t.bytes)
                crc = planCRC32(t.bytes, crc)
                position = record.offset + record.byteCount
                progress?(i, program.weights.count)
            }
            table.append((.weights, weightsStart, position, crc))
            try pad(to: 64)
            let tableOffset = out.bytesWritten
            var tableBytes: [UInt8] = []
            for (kind, offset, size, c) in table {
                tableBytes += le(kind.rawValue) + le(UInt32(0)) + le(UInt64(offset)) + le(UInt64(size)) + le(c) + le(UInt32(0))
            }
            try out.write(tableBytes)
            let fileSize = out.bytesWritten
            var header = PlanFormat.magic + le(PlanFormat.version) + le(UInt32(0)) + le(UInt64(fileSize)) + le(UInt64(tableOffset)) + le(UInt32(table.count))
            header += le(tableBytes.withUnsafeBytes { planCRC32($0) })
            header += [UInt8](repeating: 0, count: 60 - header.count)
            header += le(header.withUnsafeBytes { planCRC32($0) })
            try out.patch(at: 0, header)
            try out.commit()
        } catch {
            out.discard()
            throw PlanError(path, error.message)
        }
    }
}

/// A plan opened for running: the program decoded, the weights mapped in place.
public final class PlanFile: @unchecked Sendable {
    public let path: String
    public let file: MappedFile
    public let program: Program
    public let summary: String
    /// Byte range of the weight section in the file.
    public let weightSection: Range<Int>

    /// Opens and checks `path` (header, sections, CRCs, program) before anything runs.
    public init(path: String, verifyWeights: Bool = true) throws(PlanError) {
        self.path = path
        do { file = try MappedFile(path: path) } catch { throw PlanError(path, error.message) }
        let b = file.bytes
        guard b.count >= PlanFormat.headerSize else { throw PlanError(path, "file of \(b.count) bytes is shorter than a plan header: truncated or not a plan") }
        guard Array(b[0..<8]) == PlanFormat.magic else { throw PlanError(path, "not a diffbir plan (no DIFFBIRP magic)") }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> Int { Int(clamping: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt64.self))) }
        let version = u32(8)
        guard PlanFormat.readableVersions.contains(version) else {
            throw PlanError(path, "plan format version \(version); this build reads version\(PlanFormat.readableVersions.count > 1 ? "s" : "") \(PlanFormat.readableVersions.map(String.init).joined(separator: ", ")): recompile the plan")
        }
        guard u32(60) == planCRC32(UnsafeRawBufferPointer(rebasing: b[0..<60])) else { throw PlanError(path, "header checksum mismatch: the file is corrupt") }
        let size = u64(16)
        guard size == b.count else { throw PlanError(path, "the header records \(size) bytes but the file has \(b.count): truncated or extended") }
        let tableOffset = u64(24), count = Int(u32(32))
        guard count <= 16, tableOffset >= PlanFormat.headerSize, tableOffset <= b.count, count * 32 <= b.count - tableOffset else {
            throw PlanError(path, "section table outside the file")
        }
        guard u32(36) == planCRC32(UnsafeRawBufferPointer(rebasing: b[tableOffset..<(tableOffset + count * 32)])) else {
            throw PlanError(path, "section table checksum mismatch: the file is corrupt")
        }
        var sections: [PlanFormat.SectionKind: Range<Int>] = [:]
        for i in 0..<count {
            let e = tableOffset + 32 * i
            guard let kind = PlanFormat.SectionKind(rawValue: u32(e)) else { throw PlanError(path, "unknown section kind \(u32(e))") }
            let (offset, length, crc) = (u64(e + 8), u64(e + 16), u32(e + 24))
            guard offset <= b.count, length <= b.count - offset else { throw PlanError(path, "\(kind.name) section lies outside the file") }
            if kind != .weights || verifyWeights {
                // In pieces, each released after it is read: checking 5 GB of weights must not leave
                // them all in this process's resident set (they come back page by page when used).
                var c: UInt32 = 0
                var at = offset
                while at < offset + length {
                    let end = min(offset + length, at + (64 << 20))
                    c = planCRC32(UnsafeRawBufferPointer(rebasing: b[at..<end]), c)
                    if kind == .weights { file.release(at..<end) }
                    at = end
                }
                guard c == crc else {
                    throw PlanError(path, "\(kind.name) section checksum mismatch: the file is corrupt")
                }
            }
            sections[kind] = offset..<(offset + length)
        }
        guard let summaryRange = sections[.summary], let programRange = sections[.program], let weightRange = sections[.weights] else {
            let missing = PlanFormat.SectionKind.allCases.first { sections[$0] == nil }
            throw PlanError(path, "no \(missing?.name ?? "") section")
        }
        // Everything else is zero padding (and the header's reserved bytes).
        var covered = [0..<40, 60..<PlanFormat.headerSize, tableOffset..<(tableOffset + count * 32)] + Array(sections.values)
        covered.sort { $0.lowerBound < $1.lowerBound }
        var position = 0
        for r in covered + [b.count..<b.count] {
            if r.lowerBound > position {
                guard UnsafeRawBufferPointer(rebasing: b[position..<r.lowerBound]).allSatisfy({ $0 == 0 }) else {
                    throw PlanError(path, "non-zero bytes in the padding at offsets \(position)..<\(r.lowerBound): the file is corrupt")
                }
            }
            position = max(position, r.upperBound)
        }
        summary = String(decoding: UnsafeRawBufferPointer(rebasing: b[summaryRange]), as: UTF8.self)
        do {
            program = try PlanJSON.decode(UnsafeRawBufferPointer(rebasing: b[programRange]))
        } catch {
            throw PlanError(path, "program section does not decode: \(error)")
        }
        weightSection = weightRange
        try validate()
    }

    /// The program checked against itself and the weight section (`PlanVerifier`).
    private func validate() throws(PlanError) {
        do {
            try PlanVerifier.verify(program, weightSectionBytes: weightSection.count) { [self] i in
                let t = weight(i)
                return t.withElements(as: Int32.self) { Array($0) }
            }
        } catch {
            throw PlanError(path, error.message)
        }
    }

    /// A weight as a zero-copy view of the mapping.
    public func weight(_ index: Int) -> Tensor {
        let w = program.weights[index]
        let start = weightSection.lowerBound + w.offset
        return Tensor(dtype: w.dtype, shape: w.shape, storage: TensorStorage(file: file, range: start..<(start + w.byteCount)))
    }
}
