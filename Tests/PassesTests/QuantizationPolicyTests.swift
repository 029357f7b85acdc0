import IR
import ModelGraphs
import Passes
import Tensors
import Testing

/// `--quant-rule` globs, their order, the models' exclusions and the default.
@Suite struct QuantizationPolicyTests {
    @Test func globsMatchWholeNames() throws {
        let r = try QuantRule(parsing: "*.attn?.to_q.*=f16")
        #expect(r.format == .f16)
        #expect(r.matches("unet.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"))
        #expect(!r.matches("unet.input_blocks.1.1.transformer_blocks.0.attn12.to_q.weight"))
        #expect(!r.matches("attn1.to_q.weight"))  // the leading "*." needs a dot
        #expect(try QuantRule(parsing: "a*b*c=int8").matches("a-x-b-y-c"))
        #expect(!(try QuantRule(parsing: "a*b*c=int8").matches("a-x-b-y-cd")))
        #expect(try QuantRule(parsing: "*=bf16").matches(""))
        #expect(try QuantRule(parsing: "x==f32").pattern == "x=")
        #expect(throws: IRError.self) { try QuantRule(parsing: "no-format") }
        #expect(throws: IRError.self) { try QuantRule(parsing: "x=int4") }
        #expect(throws: IRError.self) { try QuantRule(parsing: "=int8") }
    }

    @Test func firstMatchingRuleThenExclusionsThenDefault() throws {
        let policy = QuantizationPolicy(defaultFormat: .int8Channel,
                                        rules: [try QuantRule(parsing: "unet.out.2.*=int8"), try QuantRule(parsing: "*.ff.*=f16"),
                                                try QuantRule(parsing: "*.ff.net.2.*=f32")],
                                        exclusions: Network.denoise.quantizationExclusions)
        #expect(policy.format(of: "unet.out.2.weight").0 == .int8Channel)  // a rule overrides the model's exclusion
        #expect(policy.format(of: "unet.input_blocks.0.0.weight").0 == .f32)  // excluded by the model
        #expect(policy.format(of: "controlnet.zero_convs.3.0.weight").0 == .f32)
        #expect(policy.format(of: "unet.time_embed.2.weight").0 == .f32)
        #expect(policy.format(of: "unet.middle_block.1.transformer_blocks.0.ff.net.2.weight").0 == .f16)  // first rule wins
        #expect(policy.format(of: "unet.input_blocks.1.0.in_layers.2.weight") == (.int8Channel, "default"))
        #expect(!policy.isIdentity && QuantizationPolicy().isIdentity)
        #expect(QuantizationPolicy(rules: [QuantRule(pattern: "*", format: .f32)]).isIdentity)
    }
}
