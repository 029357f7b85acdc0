import Tensors

/// The reference kernels: plain, obviously correct loops over every element, in double precision
/// (accumulations included), storing results in the output dtype. They are the oracle for tests,
/// constant folding and validation, and are never changed for speed.
public enum Reference {}

extension Reference {
    /// Every element as a Double (integers exactly up to 2^53, bool as 0/1).
    public static func doubles(_ t: Tensor) -> [Double] {
        let n = t.count
        var out = [Double](repeating: 0, count: n)
        out.withUnsafeMutableBytes { dst in
            ElementConversion.convert(t.bytes, from: t.dtype, into: dst, as: .f64, count: n)
        }
        return out
    }

    /// A tensor of `dtype` from Doubles: floats round to nearest, integers truncate toward zero
    /// (saturating), bool is `value != 0`.
    public static func tensor(_ values: [Double], _ dtype: DType, _ shape: Shape) -> Tensor {
        precondition(values.count == shape.count, "\(values.count) values for \(shape)")
        let out = Tensor.zeros(dtype, shape)
        values.withUnsafeBytes { src in
            ElementConversion.convert(src, from: .f64, into: out.storage.mutableBytes!, as: dtype, count: values.count)
        }
        return out
    }

    /// Row-major strides.
    static func strides(_ dims: [Int]) -> [Int] { Shape(dims).contiguousStrides }

    /// For each element of `out` (row-major), the flat index of the element of `input` it reads
    /// under NumPy broadcasting.
    public static func broadcastIndices(from input: [Int], to out: [Int]) -> [Int] {
        let rank = out.count
        let padded = [Int](repeating: 1, count: rank - input.count) + input
        let inStrides = strides(padded)
        return stridedOffsets(out, strides: (0..<rank).map { padded[$0] == 1 ? 0 : inStrides[$0] })
    }

    /// For each index of `dims` (row-major), `base + Σ index[a] · strides[a]`: the flat offsets of a
    /// strided view (a transpose, a slice, a broadcast).
    public static func stridedOffsets(_ dims: [Int], base: Int = 0, strides: [Int]) -> [Int] {
        let rank = dims.count
        let n = dims.reduce(1, *)
        var result = [Int](repeating: 0, count: n)
        var index = [Int](repeating: 0, count: rank)
        var offset = base
        for i in 0..<n {
            result[i] = offset
            var d = rank - 1
            while d >= 0 {
                index[d] += 1
                offset += strides[d]
                if index[d] < dims[d] { break }
                offset -= strides[d] * dims[d]
                index[d] = 0
                d -= 1
            }
        }
        return result
    }

    /// Calls `body(flatIndex, multiIndex)` for every index of `dims` in row-major order.
    static func forEachIndex(_ dims: [Int], _ body: (Int, [Int]) -> Void) {
        let n = dims.reduce(1, *)
        guard n > 0 else { return }
        var index = [Int](repeating: 0, count: dims.count)
        for i in 0..<n {
            body(i, index)
            var d = dims.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < dims[d] { break }
                index[d] = 0
                d -= 1
            }
        }
    }
}
