import Foundation

/// The CLIP byte-level BPE tokenizer as open_clip (and DiffBIR's vendored copy) runs it:
/// clean the text (ftfy, HTML unescape, collapse whitespace, lowercase), split it with CLIP's
/// pattern, map bytes to printable characters, apply the 48,894 merges, and wrap the ids as
/// `[49406] + ids + [49407]`, cut to 77 (the last kept id becomes 49407) and padded with 0.
///
/// ftfy is followed for what it does deterministically (line breaks, typographic quotes, ligatures,
/// full-width forms, C0/C1 controls, NFC); its repair of mojibake (text decoded with the wrong
/// encoding) is heuristic and is not reproduced.
public final class CLIPTokenizer: @unchecked Sendable {
    public static let startOfText = 49406
    public static let endOfText = 49407
    public let contextLength: Int

    private var encoder: [String: Int] = [:]
    private var ranks: [String: Int] = [:]
    private let byteToChar: [Character]
    private var cache: [String: [Int]] = [:]
    private let lock = NSLock()

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Loads the vocabulary shipped with the tool (`bpe_simple_vocab_16e6.txt.gz` from open_clip).
    public convenience init(contextLength: Int = 77) throws {
        guard let url = Bundle.module.url(forResource: "bpe_simple_vocab_16e6.txt", withExtension: "gz"),
              let data = FileManager.default.contents(atPath: url.path) else {
            throw Failure(description: "the tokenizer's vocabulary (bpe_simple_vocab_16e6.txt.gz) is missing from the installation")
        }
        try self.init(gzippedMerges: [UInt8](data), contextLength: contextLength)
    }

    public init(gzippedMerges: [UInt8], contextLength: Int = 77) throws {
        self.contextLength = contextLength
        let text: [UInt8]
        do { text = try Gzip.decompress(gzippedMerges) } catch { throw Failure(description: "tokenizer vocabulary: \(error.message)") }
        // bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to U+0100 and up.
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var chars = printable.map { Character(Unicode.Scalar(UInt32($0))!) }
        var extra = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b)
            chars.append(Character(Unicode.Scalar(UInt32(256 + extra))!))
            extra += 1
        }
        var map = [Character](repeating: " ", count: 256)
        for (b, c) in zip(printable, chars) { map[b] = c }
        byteToChar = map
        let lines = String(decoding: text, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        let merges = lines[1..<min(lines.count, 49152 - 256 - 2 + 1)]
        var vocab = chars.map { String($0) }
        vocab += chars.map { String($0) + "</w>" }
        for (rank, line) in merges.enumerated() {
            let parts = line.split(separator: " ")
            guard parts.count == 2 else { throw Failure(description: "tokenizer vocabulary: malformed merge line \(rank + 2)") }
            ranks[parts[0] + " " + parts[1]] = rank
            vocab.append(String(parts[0] + parts[1]))
        }
        vocab += ["<start_of_text>", "<end_of_text>"]
        for (i, v) in vocab.enumerated() { encoder[v] = i }
    }

    /// The ids of `text` without the start/end tokens.
    public func encode(_ text: String) -> [Int] {
        var ids: [Int] = []
        for piece in CLIPTokenizer.pieces(CLIPTokenizer.clean(text)) {
            if piece == "<start_of_text>" || piece == "<end_of_text>" {
                if let id = encoder[piece] { ids.append(id) }
                continue
            }
            ids += bpe(String(piece.utf8.map { byteToChar[Int($0)] }))
        }
        return ids
    }

    /// `[49406] + encode(text) + [49407]`, cut to `contextLength` (ending with 49407) and zero-padded.
    public func tokenize(_ text: String) -> [Int] {
        var ids = [Self.startOfText] + encode(text) + [Self.endOfText]
        if ids.count > contextLength {
            ids = Array(ids.prefix(contextLength))
            ids[contextLength - 1] = Self.endOfText
        }
        return ids + [Int](repeating: 0, count: contextLength - ids.count)
    }

    // MARK: BPE

    private func bpe(_ token: String) -> [Int] {
        lock.lock()
        if let hit = cache[token] { lock.unlock(); return hit }
        lock.unlock()
        var word = token.map { String($0) }
        word[word.count - 1] += "</w>"
        while word.count > 1 {
            var best: (rank: Int, first: String, second: String)?
            for i in 0..<(word.count - 1) {
                if let r = ranks[word[i] + " " + word[i + 1]], best == nil || r < best!.rank { best = (r, word[i], word[i + 1]) }
            }
            guard let (_, first, second) = best else { break }
            // Merge every occurrence of the best pair, left to right.
            var merged: [String] = []
            var i = 0
            while i < word.count {
                if i < word.count - 1, word[i] == first, word[i + 1] == second {
                    merged.append(first + second)
                    i += 2
                } else {
                    merged.append(word[i])
                    i += 1
                }
            }
            word = merged
        }
        // Every symbol is in the vocabulary by construction (init adds each byte, each byte ending a
        // word, and each merge's result).
        let ids = word.compactMap { encoder[$0] }
        lock.lock()
        cache[token] = ids
        lock.unlock()
        return ids
    }

    // MARK: splitting

    static func isLetter(_ u: Unicode.Scalar) -> Bool {
        switch u.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    static func isNumber(_ u: Unicode.Scalar) -> Bool {
        switch u.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// CLIP's pattern `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
    /// (case-insensitive), as `re.findall` scans it: the first alternative that matches at each position.
    static func pieces(_ text: String) -> [String] {
        let s = Array(text.unicodeScalars)
        var out: [String] = []
        var i = 0
        func matches(_ literal: String) -> Bool {
            let l = Array(literal.unicodeScalars)
            guard i + l.count <= s.count else { return false }
            for k in 0..<l.count where String(s[i + k]).lowercased() != String(l[k]) { return false }
            return true
        }
        while i < s.count {
            if let special = ["<start_of_text>", "<end_of_text>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].first(where: matches) {
                out.append(String(String.UnicodeScalarView(s[i..<(i + special.unicodeScalars.count)])))
                i += special.unicodeScalars.count
                continue
            }
            let u = s[i]
            if isLetter(u) {
                var j = i
                while j < s.count, isLetter(s[j]) { j += 1 }
                out.append(String(String.UnicodeScalarView(s[i..<j])))
                i = j
            } else if isNumber(u) {
                out.append(String(u))
                i += 1
            } else if u.properties.isWhitespace {
                i += 1
            } else {
                var j = i
                while j < s.count, !isLetter(s[j]), !isNumber(s[j]), !s[j].properties.isWhitespace { j += 1 }
                out.append(String(String.UnicodeScalarView(s[i..<j])))
                i = j
            }
        }
        return out
    }

    // MARK: cleaning

    /// `whitespace_clean(basic_clean(text)).lower()`: ftfy's deterministic fixes, HTML unescaped
    /// twice, whitespace runs collapsed to one space, trimmed, lowercased.
    public static func clean(_ text: String) -> String {
        var t = fixText(text)
        t = HTMLEntities.unescape(HTMLEntities.unescape(t))
        let words = t.unicodeScalars.split(whereSeparator: { $0.properties.isWhitespace }).map { String(String.UnicodeScalarView($0)) }
        return words.joined(separator: " ").lowercased()
    }

    static func fixText(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        var scalars = Array(text.unicodeScalars)
        // Line breaks: \r\n, \r, U+2028, U+2029, U+0085 → \n.
        var i = 0
        var normalized: [Unicode.Scalar] = []
        while i < scalars.count {
            let u = scalars[i]
            if u == "\r" {
                normalized.append("\n")
                if i + 1 < scalars.count, scalars[i + 1] == "\n" { i += 1 }
            } else if u.value == 0x2028 || u.value == 0x2029 || u.value == 0x85 {
                normalized.append("\n")
            } else {
                normalized.append(u)
            }
            i += 1
        }
        scalars = normalized
        for u in scalars {
            switch u.value {
            case 0x2018, 0x2019, 0x201A, 0x201B: out.append("'")
            case 0x201C, 0x201D, 0x201E, 0x201F: out.append("\"")
            case 0xFB00...0xFB06:
                let lig = ["ff", "fi", "fl", "ffi", "ffl", "ſt", "st"][Int(u.value - 0xFB00)]
                out.append(contentsOf: lig.unicodeScalars)
            case 0xFF01...0xFF5E: out.append(Unicode.Scalar(u.value - 0xFF01 + 0x21)!)  // full-width ASCII
            case 0x3000: out.append(" ")
            case 0x00...0x08, 0x0B, 0x0E...0x1F, 0x7F, 0xFEFF, 0xFFF9...0xFFFC: continue  // controls ftfy removes
            default: out.append(u)
            }
        }
        return String(out).precomposedStringWithCanonicalMapping
    }
}

/// Python's `html.unescape` for numeric references and the common named entities.
enum HTMLEntities {
    static let named: [String: String] = [
        "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{A0}", "copy": "©", "reg": "®", "trade": "™",
        "hellip": "…", "mdash": "—", "ndash": "–", "lsquo": "‘", "rsquo": "’", "ldquo": "“", "rdquo": "”", "laquo": "«", "raquo": "»",
        "deg": "°", "plusmn": "±", "times": "×", "divide": "÷", "middot": "·", "bull": "•", "euro": "€", "pound": "£", "yen": "¥",
        "cent": "¢", "sect": "§", "para": "¶", "iexcl": "¡", "iquest": "¿", "szlig": "ß", "eacute": "é", "egrave": "è",
        "ecirc": "ê", "euml": "ë", "aacute": "á", "agrave": "à", "acirc": "â", "auml": "ä", "atilde": "ã", "aring": "å",
        "aelig": "æ", "ccedil": "ç", "iacute": "í", "igrave": "ì", "icirc": "î", "iuml": "ï", "ntilde": "ñ", "oacute": "ó",
        "ograve": "ò", "ocirc": "ô", "ouml": "ö", "otilde": "õ", "oslash": "ø", "uacute": "ú", "ugrave": "ù", "ucirc": "û",
        "uuml": "ü", "yacute": "ý", "yuml": "ÿ", "Eacute": "É", "Egrave": "È", "Aacute": "Á", "Agrave": "À", "Auml": "Ä",
        "Ouml": "Ö", "Uuml": "Ü", "Ccedil": "Ç", "Ntilde": "Ñ", "Oslash": "Ø", "Aring": "Å", "AElig": "Æ",
    ]

    static func unescape(_ s: String) -> String {
        guard s.contains("&") else { return s }
        var out = ""
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            guard c == "&", let semi = s[i...].prefix(40).firstIndex(of: ";") else {
                out.append(c)
                i = s.index(after: i)
                continue
            }
            let body = s[s.index(after: i)..<semi]
            var replacement: String?
            if body.hasPrefix("#x") || body.hasPrefix("#X") {
                replacement = UInt32(body.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init).map { String($0) }
            } else if body.hasPrefix("#") {
                replacement = UInt32(body.dropFirst()).flatMap(Unicode.Scalar.init).map { String($0) }
            } else {
                replacement = named[String(body)]
            }
            if let replacement {
                out += replacement
                i = s.index(after: semi)
            } else {
                out.append(c)
                i = s.index(after: i)
            }
        }
        return out
    }
}
