// On other architectures than x86-64 the micro-kernel modules are empty and CPUID reports nothing,
// so `ISA.best` is OpenBLAS and these are never called; they only let the dispatch code compile.
#if !arch(x86_64)
let sgemmRowsAVX512 = 12, sgemmColumnsAVX512 = 32, sgemmRowsAVX2 = 6, sgemmColumnsAVX2 = 16

private func unavailable() -> Never { preconditionFailure("x86-64 kernels called on another architecture") }

func sgemmMicroKernelAVX2(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) { unavailable() }
func sgemmIndirectMicroKernelAVX2(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ offsets: UnsafePointer<Int>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) { unavailable() }
func sbgemmMicroKernelAVX2(_ k: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>, _ offsets: UnsafePointer<Int>?, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) { unavailable() }
func softmaxColumns32AVX512(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ m: UnsafeMutablePointer<Float>, _ sum: UnsafeMutablePointer<Float>, _ c: UnsafeMutablePointer<Float>) { unavailable() }
func softmaxColumns32Base2AVX512(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ m: UnsafeMutablePointer<Float>, _ sum: UnsafeMutablePointer<Float>, _ c: UnsafeMutablePointer<Float>) { unavailable() }
func softmaxColumns32Base2PairsAVX512(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ m: UnsafeMutablePointer<Float>, _ sum: UnsafeMutablePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ pairs: UnsafeMutablePointer<UInt32>) { unavailable() }
func softmaxColumns16AVX2(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ m: UnsafeMutablePointer<Float>, _ sum: UnsafeMutablePointer<Float>, _ c: UnsafeMutablePointer<Float>) { unavailable() }
func softmaxColumns16Base2AVX2(_ s: UnsafeMutablePointer<Float>, _ rows: Int, _ m: UnsafeMutablePointer<Float>, _ sum: UnsafeMutablePointer<Float>, _ c: UnsafeMutablePointer<Float>) { unavailable() }
func bf16PairRowsAVX512(_ r0: UnsafePointer<Float>, _ r1: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<UInt32>, _ count: Int) { unavailable() }
func bf16PairRowsAVX2(_ r0: UnsafePointer<Float>, _ r1: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<UInt32>, _ count: Int) { unavailable() }
func transposeIntoPanelAVX512(_ src: UnsafePointer<Float>, _ srcStride: Int, _ dst: UnsafeMutablePointer<Float>, width: Int, count: Int) { unavailable() }
func transpose16x16AVX512(_ src: UnsafePointer<Float>, _ srcStride: Int, _ dst: UnsafeMutablePointer<Float>, _ dstStride: Int) { unavailable() }
func geluInPlaceAVX512(_ p: UnsafeMutablePointer<Float>, _ count: Int) { unavailable() }
func gegluCombineAVX512(_ a: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ biasA: UnsafePointer<Float>?, _ biasG: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<Float>, _ count: Int) { unavailable() }
func fmaPeakAVX512(_ iterations: Int, _ seed: Float) -> Float { unavailable() }
func fmaPeakAVX2(_ iterations: Int, _ seed: Float) -> Float { unavailable() }
func s8gemmMicroKernelVNNI(_ k: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>, _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) { unavailable() }
func u8s8gemmMicroKernelVNNI(_ k: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>, _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) { unavailable() }
func s8s16gemmMicroKernelAVX2(_ k: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt64>, _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) { unavailable() }
func u16s8gemmMicroKernelAVX2(_ k: Int, _ a: UnsafePointer<UInt64>, _ b: UnsafePointer<UInt32>, _ c: UnsafeMutablePointer<Int32>, _ ldc: Int, _ accumulate: Bool) { unavailable() }
func maddPeakAVX2(_ iterations: Int, _ seed: Int32) -> Int32 { unavailable() }
func vnniPeak(_ iterations: Int, _ seed: Int32) -> Int32 { unavailable() }
func scoresMicroKernelVNNI(_ ksteps: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ rows: Int, _ offsets: UnsafePointer<Int32>, _ rowScales: UnsafePointer<Float>, _ columnScales: UnsafePointer<Float>) { unavailable() }
#endif
