/// How deeply an ONNX file's messages nest, read from the protobuf wire format before protobuf-c
/// parses it: protobuf-c's unpacker recurses once per nested message, so a file of subgraphs
/// nested thousands deep (If/Loop attributes, or types) would overflow the stack. Only the fields
/// of onnx.proto that can lead back to a graph or a type are followed; a walk with an explicit
/// stack, so the scan itself cannot overflow.
enum ONNXNesting {
    /// Messages that can contain a graph or a type, directly or further down.
    enum Kind { case model, graph, node, attribute, function, valueInfo, type, typeElement }

    /// Field numbers of `kind` that hold such messages, and what they hold.
    static func children(_ kind: Kind) -> [UInt64: Kind] {
        switch kind {
        case .model: return [7: .graph, 25: .function]                          // graph, functions
        case .graph: return [1: .node, 11: .valueInfo, 12: .valueInfo, 13: .valueInfo]  // node, input, output, value_info
        case .node: return [5: .attribute]                                      // attribute
        case .attribute: return [6: .graph, 11: .graph, 14: .type, 15: .type]   // g, graphs, tp, type_protos
        case .function: return [7: .node, 11: .valueInfo]                       // node, value_info
        case .valueInfo: return [2: .type]                                      // type
        case .type: return [4: .typeElement, 5: .typeElement, 9: .typeElement]  // sequence_type, map_type, optional_type
        case .typeElement: return [1: .type, 2: .type]                          // elem_type / value_type
        }
    }

    static let maxDepth = 64

    struct Failure: Error { let message: String }

    /// Checks that no chain of the messages above is deeper than `maxDepth`; stops at the first
    /// malformed field (protobuf-c then reports the file as corrupt).
    static func check(_ bytes: UnsafeRawBufferPointer) throws(Failure) {
        var stack: [(end: Int, kind: Kind)] = [(bytes.count, .model)]
        var offset = 0
        func varint() -> UInt64? {
            var v: UInt64 = 0, shift: UInt64 = 0
            while offset < stack.last!.end, shift < 64 {
                let b = bytes[offset]
                offset += 1
                v |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }
        while let top = stack.last {
            if offset >= top.end {
                stack.removeLast()
                continue
            }
            guard let key = varint() else { return }
            let field = key >> 3
            switch key & 7 {
            case 0: guard varint() != nil else { return }
            case 1: offset += 8
            case 5: offset += 4
            case 2:
                guard let length = varint(), length <= UInt64(top.end - offset) else { return }
                let end = offset + Int(length)
                if let child = children(top.kind)[field] {
                    guard stack.count < maxDepth else {
                        throw Failure(message: "messages nested more than \(maxDepth) deep (subgraphs or types within each other) at byte \(offset)")
                    }
                    stack.append((end, child))
                } else {
                    offset = end
                }
            default: return  // groups (3, 4) are not in onnx.proto; anything else is malformed
            }
            if offset > top.end { return }
        }
    }
}
