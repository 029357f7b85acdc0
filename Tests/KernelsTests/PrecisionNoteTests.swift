import CKernels
import Kernels
import Plan
import Testing

/// `run`, `bench` and `restore` warn when a plan's precision has no instructions on this processor
/// (bf16 without AVX512-BF16, int8 × int8 without VNNI, or with --isa avx2), on any processor.
@Suite struct PrecisionNoteTests {
    @Test func notesFollowTheProcessorAndKernels() {
        #expect(CPU.precisionNote(.f32, isa: .avx2) == nil)
        #expect(CPU.precisionNote(.bf16, isa: .avx2)?.contains("emulates") == true)
        #expect(CPU.precisionNote(.int8, isa: .avx2)?.contains("without VNNI") == true)
        let bf16 = CPU.features & UInt32(CK_AVX512_BF16) != 0 && ISA.avx512.isSupported
        let vnni = CPU.features & UInt32(CK_AVX512_VNNI) != 0 && ISA.avx512.isSupported
        #expect((CPU.precisionNote(.bf16, isa: .best) == nil) == bf16)
        #expect((CPU.precisionNote(.int8, isa: .best) == nil) == vnni)
    }
}
