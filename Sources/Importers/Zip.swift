import Tensors

/// The read side of the zip container `torch.save` writes (stored records, Zip64 for large files).
///
/// Only the central directory is trusted for the list of records; each record's data range comes
/// from its local header and is checked against the file size. Compressed records are refused:
/// torch never writes them, and reading them would mean copying instead of mapping.
struct ZipArchive {
    struct Record {
        let name: String
        let method: UInt16
        let size: Int
        /// Byte range of the record's data in the file.
        let data: Range<Int>
    }

    let records: [Record]
    let byName: [String: Int]

    func record(_ name: String) -> Record? { byName[name].map { records[$0] } }

    /// Hints the kernel to read the page of each local header named by the central directory.
    private static func prefetchLocalHeaders(_ file: MappedFile, directory: ByteReader, count: Int) {
        var c = directory
        for _ in 0..<count {
            guard c.has(46), c.bytes.loadUnaligned(fromByteOffset: c.offset, as: UInt32.self) == 0x0201_4B50 else { return }
            let nameLength = Int(UInt16(littleEndian: c.bytes.loadUnaligned(fromByteOffset: c.offset + 28, as: UInt16.self)))
            let extraLength = Int(UInt16(littleEndian: c.bytes.loadUnaligned(fromByteOffset: c.offset + 30, as: UInt16.self)))
            let commentLength = Int(UInt16(littleEndian: c.bytes.loadUnaligned(fromByteOffset: c.offset + 32, as: UInt16.self)))
            var local = Int(UInt32(littleEndian: c.bytes.loadUnaligned(fromByteOffset: c.offset + 42, as: UInt32.self)))
            if local == 0xFFFF_FFFF, c.has(46 + nameLength + extraLength) {
                // Zip64: the offset is the last 8-byte field of the 0x0001 extra block.
                var x = ByteReader(UnsafeRawBufferPointer(rebasing: c.bytes[(c.offset + 46 + nameLength)..<(c.offset + 46 + nameLength + extraLength)]))
                while x.remaining >= 4, let tag = try? x.le(UInt16.self), let len = try? x.le(UInt16.self), let field = try? x.take(Int(len)) {
                    if tag == 0x0001, field.count >= 8 { local = Int(clamping: UInt64(littleEndian: field.loadUnaligned(fromByteOffset: field.count - 8, as: UInt64.self))) }
                }
            }
            file.prefetch(local..<(local + 30 + nameLength + 128))
            c.offset += 46 + nameLength + extraLength + commentLength
        }
    }

    static func read(_ file: MappedFile) throws(CheckpointError) -> ZipArchive {
        let path = file.path
        let bytes = file.bytes
        func fail(_ at: Int, _ message: String) -> CheckpointError { CheckpointError(path, at: "byte \(at)", message) }

        // End of central directory: 22 bytes + a comment of at most 65535 bytes, at the end of the file.
        var eocd = -1
        if bytes.count >= 22 {
            var i = bytes.count - 22
            let lowest = max(0, bytes.count - 22 - 65535)
            while i >= lowest {
                if bytes.loadUnaligned(fromByteOffset: i, as: UInt32.self) == 0x0605_4B50 { eocd = i; break }
                i -= 1
            }
        }
        guard eocd >= 0 else {
            throw CheckpointError(path, "no zip end-of-central-directory record: the file is truncated (or is not a torch.save zip)")
        }
        do {
            var r = ByteReader(bytes, offset: eocd + 10)
            var count = Int(try r.le(UInt16.self))
            var cdSize = Int(try r.le(UInt32.self))
            var cdOffset = Int(try r.le(UInt32.self))
            if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
                // Zip64: the locator sits right before the end record and points to the Zip64 end record.
                guard eocd >= 20, bytes.loadUnaligned(fromByteOffset: eocd - 20, as: UInt32.self) == 0x0706_4B50 else {
                    throw fail(eocd, "zip64 sizes without a zip64 locator")
                }
                var l = ByteReader(bytes, offset: eocd - 20 + 8)
                let z = try l.le(UInt64.self)
                guard bytes.count >= 56, z <= UInt64(bytes.count - 56), bytes.loadUnaligned(fromByteOffset: Int(z), as: UInt32.self) == 0x0606_4B50 else {
                    throw fail(eocd - 20, "zip64 locator points to \(z), where there is no zip64 end record")
                }
                var e = ByteReader(bytes, offset: Int(z) + 32)
                count = Int(clamping: try e.le(UInt64.self))
                cdSize = Int(clamping: try e.le(UInt64.self))
                cdOffset = Int(clamping: try e.le(UInt64.self))
            }
            guard cdOffset <= bytes.count, cdSize <= bytes.count - cdOffset else {
                throw fail(eocd, "central directory [\(cdOffset), +\(cdSize)) lies outside the file (\(bytes.count) bytes): truncated")
            }
            var records: [Record] = []
            var byName: [String: Int] = [:]
            var c = ByteReader(bytes, offset: cdOffset)
            // Two passes over the directory: the first only queues reads of every local header
            // (scattered across the file: one page each), so that on a cold cache they are fetched
            // in parallel; the second reads them.
            prefetchLocalHeaders(file, directory: c, count: count)
            for _ in 0..<count {
                let at = c.offset
                guard try c.le(UInt32.self) == 0x0201_4B50 else { throw fail(at, "bad central directory entry signature") }
                c.offset += 6
                let method = try c.le(UInt16.self)
                c.offset += 8
                var compressed = UInt64(try c.le(UInt32.self))
                var size = UInt64(try c.le(UInt32.self))
                let nameLength = Int(try c.le(UInt16.self))
                let extraLength = Int(try c.le(UInt16.self))
                let commentLength = Int(try c.le(UInt16.self))
                c.offset += 8
                var local = UInt64(try c.le(UInt32.self))
                let nameBytes = try c.take(nameLength)
                let name = String(decoding: nameBytes, as: UTF8.self)
                var x = ByteReader(try c.take(extraLength))
                while x.remaining >= 4 {
                    let tag = try x.le(UInt16.self)
                    let len = Int(try x.le(UInt16.self))
                    var field = ByteReader(try x.take(len))
                    guard tag == 0x0001 else { continue }
                    if size == 0xFFFF_FFFF { size = try field.le(UInt64.self) }
                    if compressed == 0xFFFF_FFFF { compressed = try field.le(UInt64.self) }
                    if local == 0xFFFF_FFFF { local = try field.le(UInt64.self) }
                }
                c.offset += commentLength

                let where_ = "zip record '\(name)'"
                guard bytes.count >= 30, local <= UInt64(bytes.count - 30), bytes.loadUnaligned(fromByteOffset: Int(local), as: UInt32.self) == 0x0403_4B50 else {
                    throw CheckpointError(path, at: where_, "local header at byte \(local) is missing or damaged")
                }
                var h = ByteReader(bytes, offset: Int(local) + 26)
                let localName = Int(try h.le(UInt16.self))
                let localExtra = Int(try h.le(UInt16.self))
                let start = Int(local) + 30 + localName + localExtra
                guard compressed <= UInt64(Int.max), start <= bytes.count, Int(compressed) <= bytes.count - start else {
                    throw CheckpointError(path, at: where_, "data [\(start), +\(compressed)) runs past the end of the file (\(bytes.count) bytes): truncated")
                }
                // Readers differ on which of two same-named records counts (torch.load takes the
                // last): refused, so that what `inspect` checks is what PyTorch would load.
                guard byName[name] == nil else { throw CheckpointError(path, at: where_, "the zip holds two records of this name") }
                byName[name] = records.count
                records.append(Record(name: name, method: method, size: Int(clamping: size), data: start..<(start + Int(compressed))))
            }
            return ZipArchive(records: records, byName: byName)
        } catch let e as ByteReader.OutOfBounds {
            throw fail(e.offset, "zip structure runs past the end of the file: truncated")
        } catch let e as CheckpointError {
            throw e
        } catch {
            throw CheckpointError(path, "\(error)")
        }
    }
}
