import Foundation
import Pipeline
import Plan
import Tensors
import Testing

/// The arena picture's lives: buffers reused by later instructions are separate lives, in-place
/// writes extend the life they read, inputs start before the first instruction, outputs end after
/// the last.
@Suite struct MemoryPictureTests {
    @Test func livesOfReusedAndInPlaceBuffers() {
        let s = Shape([1, 4])  // 16 bytes of f32
        func a(_ offset: Int) -> Operand { .arena(offset: offset, dtype: .f32, shape: s) }
        func ins(_ operands: [Operand], _ results: [Operand]) -> Instruction {
            Instruction(kernel: .elementwise(.unary(.relu)), operands: operands, results: results, name: "")
        }
        // x@0 → y@64 → (in place) y@64 → z@0 (reusing x's bytes) → output.
        let e = EntryPoint(name: "e", inputs: [Binding(name: "x", dtype: .f32, shape: s, offset: 0)],
                           outputs: [Binding(name: "z", dtype: .f32, shape: s, offset: 0)],
                           instructions: [ins([a(0)], [a(64)]), ins([a(64)], [a(64)]), ins([a(64)], [a(0)])], arenaBytes: 128)
        let lives = MemoryPicture.slots(e).map { [$0.offset, $0.first, $0.last] }
        #expect(lives == [[0, -1, 0], [64, 0, 2], [0, 2, 3]], "\(lives)")
        let svg = MemoryPicture.svg(Program(entryPoints: [e], weights: [], activations: .f32, report: ""))
        #expect(svg.hasPrefix("<svg") && svg.components(separatedBy: "<title>").count == 4)
    }
}
