import Foundation
import Pipeline
import Testing
import TestSupport

/// The tokenizer against open_clip's ids (Tools/fixtures/make_tokenizer_fixture.py).
@Suite struct TokenizerTests {
    static let cases: [(prompt: String, ids: [Int])] = {
        guard let json = try? Fixtures.json("tokenizer/prompts.json"), let list = json["cases"] as? [[String: Any]] else { return [] }
        return list.map { ($0["prompt"] as! String, $0["ids"] as! [Int]) }
    }()
    static let indices = Array(0..<cases.count)

    @Test(arguments: indices)
    func matchesOpenCLIP(index: Int) throws {
        let tokenizer = try CLIPTokenizer()
        let (prompt, ids) = Self.cases[index]
        #expect(tokenizer.tokenize(prompt) == ids, "\(prompt.prefix(60))")
    }

    @Test func fixtureCoversTheCases() {
        #expect(Self.cases.count >= 20)
        #expect(Self.cases.contains { $0.prompt.contains("&amp;") })
        #expect(Self.cases.contains { $0.prompt.unicodeScalars.contains { $0.value > 0x3000 } })
        // A prompt longer than 77 tokens is cut, ending with <end_of_text>.
        #expect(Self.cases.contains { $0.ids.last == CLIPTokenizer.endOfText && !$0.ids.contains(0) })
    }

    @Test func cleaning() {
        #expect(CLIPTokenizer.clean("  Tom &amp;amp; Jerry\n\tX  ") == "tom & jerry x")
        #expect(CLIPTokenizer.clean("\u{201C}Hi\u{201D} \u{FB01}ne \u{FF21}") == "\"hi\" fine a")
    }
}
