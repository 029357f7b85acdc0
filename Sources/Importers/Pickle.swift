import Tensors

/// A pickle machine that parses and never executes: the opcodes of protocols 0 to 5 that
/// `torch.save` and PyTorch Lightning emit, with the globals a checkpoint may name restricted to
/// the tensor-rebuilding functions of torch and a list of inert classes (`PickleGlobal`).
///
/// Every error names the opcode's byte offset in the pickle.
struct PickleMachine {
    struct Failure: Error {
        let offset: Int
        let message: String
    }

    private var r: ByteReader
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    private var opOffset = 0
    private var proto = 0
    /// Resolves a persistent id (`BINPERSID`) to a value.
    private let persistentLoad: (PickleValue, Int) throws(Failure) -> PickleValue

    /// Limits that keep a hostile pickle from exhausting memory through the machine itself, and
    /// the walks of what it builds from recursing without bound (torch.save's trees are a few
    /// levels deep).
    static let maxStack = 1 << 20
    static let maxDepth = 1000

    init(_ bytes: UnsafeRawBufferPointer, persistentLoad: @escaping (PickleValue, Int) throws(Failure) -> PickleValue) {
        r = ByteReader(bytes)
        self.persistentLoad = persistentLoad
    }

    private func fail(_ message: String) -> Failure { Failure(offset: opOffset, message: message) }

    private mutating func pop() throws(Failure) -> PickleValue {
        guard let v = stack.popLast() else { throw fail("stack underflow") }
        if let m = marks.last, stack.count < m { throw fail("stack underflow (popped past a mark)") }
        return v
    }

    private mutating func push(_ v: PickleValue) throws(Failure) {
        guard stack.count < Self.maxStack else { throw fail("stack deeper than \(Self.maxStack) values") }
        stack.append(v)
    }

    private mutating func popMark() throws(Failure) -> [PickleValue] {
        guard let m = marks.popLast() else { throw fail("no mark on the stack") }
        guard m <= stack.count else { throw fail("stack underflow (mark above the top)") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private mutating func top() throws(Failure) -> PickleValue {
        guard let v = stack.last, stack.count > (marks.last ?? 0) else { throw fail("stack underflow") }
        return v
    }

    private mutating func bytes(_ n: Int) throws(Failure) -> UnsafeRawBufferPointer {
        do { return try r.take(n) } catch { throw Failure(offset: opOffset, message: "truncated: needs \(n) bytes at \(error.offset), \(r.remaining) left") }
    }

    private mutating func u8() throws(Failure) -> Int { Int(try bytes(1)[0]) }
    private mutating func le<T: FixedWidthInteger>(_: T.Type) throws(Failure) -> T {
        T(littleEndian: try bytes(MemoryLayout<T>.size).loadUnaligned(as: T.self))
    }
    private mutating func length<T: FixedWidthInteger>(_: T.Type) throws(Failure) -> Int {
        let n = try le(T.self)
        guard n >= 0, UInt64(n) <= UInt64(r.remaining) else { throw fail("length \(n) runs past the end of the pickle") }
        return Int(n)
    }
    private mutating func line() throws(Failure) -> String {
        var out: [UInt8] = []
        while true {
            let c = try u8()
            if c == 0x0A { break }
            out.append(UInt8(c))
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func utf8(_ b: UnsafeRawBufferPointer) throws(Failure) -> String {
        guard let s = String(validating: Array(b), as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }

    /// Runs to `STOP` and returns the value on top of the stack.
    mutating func run() throws(Failure) -> PickleValue {
        while true {
            opOffset = r.offset
            let op = try u8()
            switch op {
            case 0x80: proto = try u8()                               // PROTO
            case 0x95: _ = try le(UInt64.self)                        // FRAME
            case 0x2E:                                                // STOP
                return try pop()
            case 0x28: marks.append(stack.count)                      // MARK
            case 0x30: _ = try pop()                                  // POP
            case 0x31: _ = try popMark()                              // POP_MARK
            case 0x32: try push(try top())                            // DUP
            case 0x4E: try push(.none)                                // NONE
            case 0x88: try push(.bool(true))                          // NEWTRUE
            case 0x89: try push(.bool(false))                         // NEWFALSE
            case 0x4A: try push(.int(Int(try le(Int32.self))))        // BININT
            case 0x4B: try push(.int(try u8()))                       // BININT1
            case 0x4D: try push(.int(Int(try le(UInt16.self))))       // BININT2
            case 0x8A: try push(try long(try u8()))                   // LONG1
            case 0x8B: try push(try long(try length(Int32.self)))     // LONG4
            case 0x49, 0x4C:                                          // INT, LONG (text)
                var text = try line()
                if text.hasSuffix("L") { text.removeLast() }
                if text == "01" { try push(.bool(true)) } else if text == "00" { try push(.bool(false)) }
                else if let v = Int(text) { try push(.int(v)) } else { throw fail("invalid integer literal '\(text)'") }
            case 0x47:                                                // BINFLOAT (big-endian)
                let b = try le(UInt64.self)
                try push(.float(Double(bitPattern: UInt64(bigEndian: b))))
            case 0x46:                                                // FLOAT (text)
                let text = try line()
                guard let d = Double(text) else { throw fail("invalid float literal '\(text)'") }
                try push(.float(d))
            case 0x58: try push(.string(try utf8(try bytes(try length(UInt32.self)))))   // BINUNICODE
            case 0x8C: try push(.string(try utf8(try bytes(try u8()))))                  // SHORT_BINUNICODE
            case 0x8D: try push(.string(try utf8(try bytes(try length(UInt64.self)))))   // BINUNICODE8
            case 0x54: try push(.string(String(decoding: try bytes(try length(Int32.self)), as: UTF8.self)))  // BINSTRING
            case 0x55: try push(.string(String(decoding: try bytes(try u8()), as: UTF8.self)))              // SHORT_BINSTRING
            case 0x42: try push(.bytes(Array(try bytes(try length(UInt32.self)))))       // BINBYTES
            case 0x43: try push(.bytes(Array(try bytes(try u8()))))                      // SHORT_BINBYTES
            case 0x8E, 0x96: try push(.bytes(Array(try bytes(try length(UInt64.self))))) // BINBYTES8, BYTEARRAY8
            case 0x5D: try push(.list(PickleList()))                  // EMPTY_LIST
            case 0x29: try push(try tuple([]))                         // EMPTY_TUPLE
            case 0x7D: try push(.dict(PickleDict()))                  // EMPTY_DICT
            case 0x8F: try push(.set(PickleList()))                   // EMPTY_SET
            case 0x74: try push(try tuple(try popMark()))              // TUPLE
            case 0x85: try push(try tuple([try pop()]))                // TUPLE1
            case 0x86:                                                // TUPLE2
                let b = try pop(), a = try pop()
                try push(try tuple([a, b]))
            case 0x87:                                                // TUPLE3
                let c = try pop(), b = try pop(), a = try pop()
                try push(try tuple([a, b, c]))
            case 0x6C: try push(.list(try list(try popMark())))        // LIST
            case 0x64:                                                // DICT
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("DICT with an odd number of items") }
                let d = PickleDict()
                try setItems(on: .dict(d), items)
                try push(.dict(d))
            case 0x61:                                                // APPEND
                let v = try pop()
                try append(to: try top(), [v])
            case 0x65:                                                // APPENDS
                let items = try popMark()
                try append(to: try top(), items)
            case 0x90:                                                // ADDITEMS
                let items = try popMark()
                let target = try top()
                guard case .set = target else { throw fail("ADDITEMS on \(target.summary)") }
                try append(to: target, items)
            case 0x91: try push(.set(try list(try popMark())))         // FROZENSET
            case 0x73:                                                // SETITEM
                let v = try pop(), k = try pop()
                try setItems(on: try top(), [k, v])
            case 0x75:                                                // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items") }
                try setItems(on: try top(), items)
            case 0x63:                                                // GLOBAL
                let module = try line(), name = try line()
                try push(.global(try resolve(module, name)))
            case 0x93:                                                // STACK_GLOBAL
                let n = try pop(), m = try pop()
                guard case .string(let module) = m, case .string(let name) = n else { throw fail("STACK_GLOBAL needs two strings") }
                try push(.global(try resolve(module, name)))
            case 0x69:                                                // INST
                let module = try line(), name = try line()
                let g = try resolve(module, name)
                try push(try call(g, try popMark()))
            case 0x6F:                                                // OBJ
                var items = try popMark()
                guard !items.isEmpty, case .global(let g) = items.removeFirst() else { throw fail("OBJ without a class") }
                try push(try call(g, items))
            case 0x52:                                                // REDUCE
                let args = try pop(), f = try pop()
                guard case .global(let g) = f else { throw fail("REDUCE calls \(f.summary), which is not callable") }
                guard case .tuple(let a) = args else { throw fail("REDUCE arguments are \(args.summary), not a tuple") }
                try push(try call(g, a.items))
            case 0x81:                                                // NEWOBJ
                let args = try pop(), cls = try pop()
                guard case .global(let g) = cls, case .tuple(let a) = args else { throw fail("NEWOBJ needs a class and a tuple") }
                try push(try newObject(g, a.items))
            case 0x92:                                                // NEWOBJ_EX
                _ = try pop()
                let args = try pop(), cls = try pop()
                guard case .global(let g) = cls, case .tuple(let a) = args else { throw fail("NEWOBJ_EX needs a class and a tuple") }
                try push(try newObject(g, a.items))
            case 0x62:                                                // BUILD
                _ = try pop()  // state: attributes of an object; nothing we keep depends on them
                _ = try top()
            case 0x51:                                                // BINPERSID
                let pid = try pop()
                try push(try persistentLoad(pid, opOffset))
            case 0x50:                                                // PERSID
                try push(try persistentLoad(.string(try line()), opOffset))
            case 0x71: memo[try u8()] = try top()                     // BINPUT
            case 0x72: memo[Int(try le(UInt32.self))] = try top()     // LONG_BINPUT
            case 0x70:                                                // PUT
                guard let i = Int(try line()) else { throw fail("invalid PUT index") }
                memo[i] = try top()
            case 0x94: memo[memo.count] = try top()                   // MEMOIZE
            case 0x68: try push(try get(try u8()))                    // BINGET
            case 0x6A: try push(try get(Int(try le(UInt32.self))))    // LONG_BINGET
            case 0x67:                                                // GET
                guard let i = Int(try line()) else { throw fail("invalid GET index") }
                try push(try get(i))
            case 0x82, 0x83, 0x84:
                throw fail("opcode EXT\(op == 0x82 ? 1 : op == 0x83 ? 2 : 4) (copyreg extension registry) is not supported")
            case 0x97, 0x98:
                throw fail("out-of-band buffers (opcode 0x\(String(op, radix: 16))) are not supported")
            default:
                throw fail("unknown pickle opcode 0x\(String(op, radix: 16, uppercase: true))")
            }
        }
    }

    private func get(_ i: Int) throws(Failure) -> PickleValue {
        guard let v = memo[i] else { throw fail("memo entry \(i) was never stored") }
        return v
    }

    /// LONG1/LONG4 payload: `n` bytes of little-endian two's complement.
    private mutating func long(_ n: Int) throws(Failure) -> PickleValue {
        let b = Array(try bytes(n))
        guard n > 0 else { return .int(0) }
        guard n <= 8 else { return .bigInt(b) }
        var v: UInt64 = 0
        for (i, x) in b.enumerated() { v |= UInt64(x) << (8 * UInt64(i)) }
        if n < 8, b[n - 1] & 0x80 != 0 { v |= ~UInt64(0) << (8 * UInt64(n)) }
        return .int(Int(Int64(bitPattern: v)))
    }

    /// Marks the containers among `items` as placed in another one (they may not change after).
    private func embed(_ items: [PickleValue]) {
        for v in items {
            switch v {
            case .list(let l), .set(let l): l.embedded = true
            case .dict(let d): d.embedded = true
            default: break
            }
        }
    }

    /// The depth a container of `items` has (1 + the deepest item's), refused past `maxDepth`.
    private func depth(of items: [PickleValue], atLeast current: Int = 1) throws(Failure) -> Int {
        var d = current
        for v in items { d = max(d, v.depth + 1) }
        guard d <= Self.maxDepth else { throw fail("containers nested deeper than \(Self.maxDepth) levels") }
        return d
    }

    private func tuple(_ items: [PickleValue]) throws(Failure) -> PickleValue {
        let d = try depth(of: items)
        embed(items)
        return .tuple(PickleTuple(items: items, depth: d))
    }

    private func list(_ items: [PickleValue]) throws(Failure) -> PickleList {
        let d = try depth(of: items)
        embed(items)
        return PickleList(items, depth: d)
    }

    /// Whether `v` is the container `target` itself.
    private static func same(_ v: PickleValue, _ target: AnyObject) -> Bool {
        switch v {
        case .list(let l), .set(let l): return l === target
        case .dict(let d): return d === target
        default: return false
        }
    }

    /// Adds to a list or set that is not yet inside another container (torch.save fills each one
    /// before placing it): so depths stay exact and no container can come to contain itself.
    private func append(to target: PickleValue, _ items: [PickleValue]) throws(Failure) {
        switch target {
        case .list(let l), .set(let l):
            guard !l.embedded, !items.contains(where: { Self.same($0, l) }) else {
                throw fail("adds to a list already placed in another container or to itself (a self-referencing structure, which checkpoints never hold)")
            }
            l.depth = try depth(of: items, atLeast: l.depth)
            embed(items)
            l.items += items
        case .object: break  // e.g. a Lightning container object: ignored
        default: throw fail("APPEND to \(target.summary)")
        }
    }

    private func setItems(on target: PickleValue, _ items: [PickleValue]) throws(Failure) {
        switch target {
        case .dict(let d):
            guard !d.embedded, !items.contains(where: { Self.same($0, d) }) else {
                throw fail("sets items of a dict already placed in another container or of itself (a self-referencing structure, which checkpoints never hold)")
            }
            d.depth = try depth(of: items, atLeast: d.depth)
            embed(items)
            for i in stride(from: 0, to: items.count, by: 2) { d.items.append((items[i], items[i + 1])) }
        case .object: break
        default: throw fail("SETITEM on \(target.summary)")
        }
    }

    // MARK: globals

    /// Classes and functions kept as inert placeholders: never called, their results skipped.
    static let inertNames: Set<String> = [
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype",
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray",
        "argparse.Namespace", "torch.torch_version.TorchVersion", "collections.defaultdict",
        "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.object", "builtins.complex",
        "copyreg._reconstructor", "datetime.datetime",
        "datetime.timedelta", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.Path",
        "torch.device", "enum.Enum",
    ]
    /// Module prefixes whose classes are kept as inert placeholders (training state, configs).
    static let inertModulePrefixes = ["pytorch_lightning.", "lightning.", "lightning_fabric.", "omegaconf.", "typing"]

    static let storageTypes: [String: DType] = [
        "FloatStorage": .f32, "HalfStorage": .f16, "BFloat16Storage": .bf16, "DoubleStorage": .f64,
        "CharStorage": .i8, "ByteStorage": .u8, "ShortStorage": .i16, "IntStorage": .i32, "LongStorage": .i64,
        "BoolStorage": .bool, "UntypedStorage": .u8,
    ]

    /// Python 2 module names that protocol 0-2 pickles use, mapped as Python's unpickler maps them
    /// (`fix_imports`), so that names in errors and in the lists above are the Python 3 ones.
    static let python2Modules: [String: String] = [
        "__builtin__": "builtins", "copy_reg": "copyreg", "commands": "subprocess", "cPickle": "pickle",
        "_abcoll": "collections.abc", "UserDict": "collections", "UserList": "collections", "UserString": "collections",
        "exceptions": "builtins", "Queue": "queue", "repr": "reprlib", "cStringIO": "io", "StringIO": "io",
        "urllib2": "urllib.request", "httplib": "http.client", "thread": "_thread", "dummy_thread": "_dummy_thread",
    ]

    /// `torch.<name>` dtype objects.
    static let torchDTypes: [String: DType] = [
        "float32": .f32, "float": .f32, "float16": .f16, "half": .f16, "bfloat16": .bf16, "float64": .f64, "double": .f64,
        "int8": .i8, "uint8": .u8, "int16": .i16, "short": .i16, "int32": .i32, "int": .i32, "int64": .i64, "long": .i64,
        "bool": .bool,
    ]
    /// torch dtypes without a `DType` here, named so the error says what is unsupported.
    static let unsupportedTorchDTypes: Set<String> = [
        "uint16", "uint32", "uint64", "complex32", "complex64", "complex128", "cfloat", "cdouble", "chalf", "bcomplex32",
        "float8_e5m2", "float8_e4m3fn", "float8_e5m2fnuz", "float8_e4m3fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2",
        "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2", "quint8", "qint8", "qint32", "quint4x2", "quint2x4",
        "int1", "int2", "int3", "int4", "int5", "int6", "int7", "uint1", "uint2", "uint3", "uint4", "uint5", "uint6", "uint7",
    ]

    private func resolve(_ rawModule: String, _ name: String) throws(Failure) -> PickleGlobal {
        let module = proto < 3 ? (Self.python2Modules[rawModule] ?? rawModule) : rawModule
        let full = "\(module).\(name)"
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor_v3"): return .rebuildTensorV3
        case ("torch._utils", "_rebuild_tensor"): return .rebuildTensor
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameterWithState
        case ("torch._tensor", "_rebuild_from_type_v2"): return .rebuildFromTypeV2
        case ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"): return .tensorType(full)
        case ("torch", "Size"): return .torchSize
        case ("_codecs", "encode"): return .codecsEncode
        case ("torch", _) where Self.storageTypes[name] != nil: return .storageType(Self.storageTypes[name]!)
        case ("torch.storage", "UntypedStorage"): return .storageType(.u8)
        case ("torch", _) where Self.torchDTypes[name] != nil: return .dtype(Self.torchDTypes[name]!)
        case ("torch", _) where Self.unsupportedTorchDTypes.contains(name): return .unsupportedDType(full)
        default: break
        }
        if Self.inertNames.contains(full) || Self.inertModulePrefixes.contains(where: { module.hasPrefix($0) || module + "." == $0 }) {
            return .inert(full)
        }
        throw fail("refused global '\(full)': a checkpoint may only name torch's tensor-rebuilding functions and known inert classes; nothing in a checkpoint is executed")
    }

    private func ints(_ v: PickleValue, _ what: String) throws(Failure) -> [Int] {
        guard case .tuple(let items) = v else { throw fail("\(what) is \(v.summary), not a tuple") }
        var out: [Int] = []
        for i in items.items {
            guard case .int(let x) = i else { throw fail("\(what) holds \(i.summary)") }
            out.append(x)
        }
        return out
    }

    private func call(_ g: PickleGlobal, _ args: [PickleValue]) throws(Failure) -> PickleValue {
        switch g {
        case .orderedDict:
            let d = PickleDict()
            if let first = args.first, case .list(let pairs) = first {
                var items: [PickleValue] = []
                for p in pairs.items {
                    guard case .tuple(let kv) = p, kv.count == 2 else { throw fail("OrderedDict item is not a pair") }
                    items += [kv[0], kv[1]]
                }
                try setItems(on: .dict(d), items)
            }
            return .dict(d)
        case .rebuildTensorV2, .rebuildTensor:
            guard args.count >= 4 else { throw fail("\(g.name) takes at least 4 arguments, got \(args.count)") }
            guard case .storage(let s) = args[0] else { throw fail("\(g.name): first argument is \(args[0].summary), not a storage") }
            guard case .int(let offset) = args[1] else { throw fail("\(g.name): storage offset is \(args[1].summary)") }
            let size = try ints(args[2], "tensor size"), stride = try ints(args[3], "tensor stride")
            guard size.count == stride.count else { throw fail("tensor size \(size) and stride \(stride) differ in rank") }
            return .tensor(TensorRef(storage: s, offset: offset, size: size, stride: stride, pickleOffset: opOffset))
        case .rebuildTensorV3:
            // (untyped storage, offset, size, stride, requires_grad, hooks, dtype[, metadata]): the
            // storage counts bytes; offset and strides count elements of `dtype`.
            guard args.count >= 7 else { throw fail("\(g.name) takes at least 7 arguments, got \(args.count)") }
            guard case .storage(let s) = args[0] else { throw fail("\(g.name): first argument is \(args[0].summary), not a storage") }
            let dtype: DType
            switch args[6] {
            case .global(.dtype(let d)): dtype = d
            case .global(.unsupportedDType(let n)):
                throw fail("tensor of dtype \(n), which this build does not read (it reads \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
            default: throw fail("\(g.name): dtype argument is \(args[6].summary)")
            }
            guard case .int(let offset) = args[1] else { throw fail("\(g.name): storage offset is \(args[1].summary)") }
            let size = try ints(args[2], "tensor size"), stride = try ints(args[3], "tensor stride")
            guard size.count == stride.count else { throw fail("tensor size \(size) and stride \(stride) differ in rank") }
            guard let bytes = Checked.product(s.count, s.dtype.byteSize, limit: Checked.maxBytes) else {
                throw fail("storage of \(s.count) elements of \(s.dtype): larger than \(Checked.maxBytes >> 30) GB")
            }
            let typed = StorageRef(key: s.key, dtype: dtype, count: bytes / dtype.byteSize)
            return .tensor(TensorRef(storage: typed, offset: offset, size: size, stride: stride, pickleOffset: opOffset))
        case .rebuildParameter, .rebuildParameterWithState:
            guard let data = args.first, case .tensor = data else { throw fail("\(g.name) without a tensor") }
            return data
        case .rebuildFromTypeV2:
            guard args.count >= 3, case .global(let f) = args[0], case .tuple(let inner) = args[2] else {
                throw fail("\(g.name) with unexpected arguments")
            }
            return try call(f, inner.items)
        case .torchSize:
            guard let first = args.first else { return try tuple([]) }
            return first
        case .codecsEncode:
            guard let first = args.first, case .string(let s) = first else { throw fail("_codecs.encode without a string") }
            // Python's encode(s, "latin1"): code points below 256 to single bytes.
            var out: [UInt8] = []
            for u in s.unicodeScalars {
                guard u.value < 256 else { throw fail("_codecs.encode: code point above latin-1") }
                out.append(UInt8(u.value))
            }
            return .bytes(out)
        case .inert(let name):
            return .object(name)
        case .storageType, .tensorType, .dtype, .unsupportedDType:
            throw fail("\(g.name) is not called in checkpoints")
        }
    }

    private func newObject(_ g: PickleGlobal, _ args: [PickleValue]) throws(Failure) -> PickleValue {
        switch g {
        case .inert(let name): return .object(name)
        case .orderedDict: return .dict(PickleDict())
        default: throw fail("cannot construct \(g.name) with NEWOBJ")
        }
    }
}
