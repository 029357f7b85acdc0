import Tensors

/// A mutable list or set built by the pickle machine (memoised values share it). `depth` is its
/// nesting (1 + its deepest item's); once `embedded` in another container it may not change (so
/// that no container's depth goes stale and no cycle can form: `PickleMachine`).
final class PickleList {
    var items: [PickleValue]
    var depth: Int
    var embedded = false
    init(_ items: [PickleValue] = [], depth: Int = 1) { self.items = items; self.depth = depth }
}

/// A mutable dict built by the pickle machine, keys in insertion order (`depth`, `embedded`: as
/// `PickleList`'s).
final class PickleDict {
    var items: [(PickleValue, PickleValue)] = []
    var depth = 1
    var embedded = false
}

/// An immutable tuple and its nesting depth (1 + its deepest item's).
struct PickleTuple {
    let items: [PickleValue]
    let depth: Int
    var count: Int { items.count }
    subscript(i: Int) -> PickleValue { items[i] }
}

/// A storage named by a persistent id: `('storage', torch.FloatStorage, key, location, numel)`.
struct StorageRef {
    let key: String
    let dtype: DType
    /// Elements of `dtype` (bytes for `UntypedStorage`).
    let count: Int
}

/// A tensor rebuilt by `torch._utils._rebuild_tensor_v2`: a view of a storage.
struct TensorRef {
    let storage: StorageRef
    let offset: Int
    let size: [Int]
    let stride: [Int]
    /// Offset of the REDUCE opcode that built it in the pickle, for error messages.
    let pickleOffset: Int
}

/// The callables and classes a checkpoint may name (`GLOBAL`/`STACK_GLOBAL`). Anything else is
/// refused when it is named, before anything could use it.
enum PickleGlobal: Equatable {
    case orderedDict
    case rebuildTensorV2, rebuildTensorV3, rebuildTensor, rebuildParameter, rebuildParameterWithState, rebuildFromTypeV2
    case storageType(DType)
    /// A `torch.<dtype>` object (`torch.float32`, ...), as `_rebuild_tensor_v3` takes it.
    case dtype(DType)
    /// A torch dtype this build has no `DType` for (`torch.uint16`, `torch.float8_e4m3fn`, ...).
    case unsupportedDType(String)
    case tensorType(String)
    case torchSize
    case codecsEncode
    /// A class or function whose results are kept as inert placeholders (Lightning callbacks,
    /// numpy scalars and dtypes, hyper-parameter containers, ...): never called, only skipped.
    case inert(String)

    var name: String {
        switch self {
        case .orderedDict: return "collections.OrderedDict"
        case .rebuildTensorV2: return "torch._utils._rebuild_tensor_v2"
        case .rebuildTensorV3: return "torch._utils._rebuild_tensor_v3"
        case .dtype(let d): return "torch dtype \(d)"
        case .unsupportedDType(let n): return n
        case .rebuildTensor: return "torch._utils._rebuild_tensor"
        case .rebuildParameter: return "torch._utils._rebuild_parameter"
        case .rebuildParameterWithState: return "torch._utils._rebuild_parameter_with_state"
        case .rebuildFromTypeV2: return "torch._tensor._rebuild_from_type_v2"
        case .storageType(let d): return "torch storage of \(d)"
        case .tensorType(let n): return n
        case .torchSize: return "torch.Size"
        case .codecsEncode: return "_codecs.encode"
        case .inert(let n): return n
        }
    }
}

/// A value on the pickle machine's stack.
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer beyond 64 bits (kept as its little-endian two's-complement bytes).
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(PickleTuple)
    case list(PickleList)
    case set(PickleList)
    case dict(PickleDict)
    case global(PickleGlobal)
    case storage(StorageRef)
    case tensor(TensorRef)
    /// An object of an inert class, by class name.
    case object(String)

    /// Nesting depth: 0 for a scalar, 1 + the deepest item's for a container.
    var depth: Int {
        switch self {
        case .tuple(let t): return t.depth
        case .list(let l), .set(let l): return l.depth
        case .dict(let d): return d.depth
        default: return 0
        }
    }

    /// A short description for listings of skipped entries.
    var summary: String {
        switch self {
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return "int \(i)"
        case .bigInt: return "int (large)"
        case .float(let d): return "float \(d)"
        case .string(let s): return s.count <= 40 ? "str \"\(s)\"" : "str (\(s.count) characters)"
        case .bytes(let b): return "bytes (\(b.count))"
        case .tuple(let t): return "tuple (\(t.count) items)"
        case .list(let l): return "list (\(l.items.count) items)"
        case .set(let l): return "set (\(l.items.count) items)"
        case .dict(let d): return "dict (\(d.items.count) items)"
        case .global(let g): return "reference to \(g.name)"
        case .storage: return "storage"
        case .tensor: return "tensor"
        case .object(let c): return "object \(c)"
        }
    }
}
