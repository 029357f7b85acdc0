extension String {
    /// The string with control characters (C0, DEL, C1) shown as `\u{XX}` escapes: file names and
    /// strings read from files go into one-line error messages without moving the terminal's cursor,
    /// changing its colours or breaking the line.
    public var escapingControlCharacters: String {
        guard unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) else { return self }
        var out = ""
        for u in unicodeScalars {
            if u.value < 0x20 || (0x7F...0x9F).contains(u.value) {
                out += "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }
}
