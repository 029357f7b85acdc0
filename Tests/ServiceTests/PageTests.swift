import Dispatch
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import TestSupport

/// The page at / in headless Chromium (Debian's `chromium`; skipped where it is not installed):
/// the page's own flow (upload, progress from the events stream, the restored image, the
/// before/after slider, the download link) on a live server, through its `?selftest=` hook.
enum Browser {
    static let path = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }
}

@Suite(.enabled(if: Browser.path != nil, "no Chromium (apt-get install chromium)"))
struct PageTests {
    @Test func pageRestoresAnImageInHeadlessChromium() async throws {
        let service = try TestService(plan: ServedPlans.bsrnet)
        let browser = try #require(Browser.path)
        let sample = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("pipeline/lq64.png"))).base64EncodedString()
        let profileDirectory = TemporaryDirectory()
        let profile = profileDirectory.path
        try await service.withEngine {
            try await service.app.test(.live) { client in
                let port = try #require(client.port)
                let url = "http://127.0.0.1:\(port)/?selftest=" + "data:image/png;base64,\(sample)".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                // Chromium runs for seconds: off Swift's cooperative pool, which serves the requests.
                let result = await withCheckedContinuation { continuation in
                    DispatchQueue.global().async {
                        continuation.resume(returning: Tool.run(program: browser, [
                            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                            "--user-data-dir=\(profile)", "--timeout=20000", "--virtual-time-budget=15000", "--dump-dom", url]))
                    }
                }
                let dom = result.stdout
                #expect(dom.contains("id=\"selftest\">ok restored 256x256"), "\(result.stderr.suffix(2000))\n\(dom.suffix(3000))")
                #expect(dom.contains("download=selftest_restored.png"))
                #expect(dom.contains("slider=50%"))
            }
        }
    }
}
