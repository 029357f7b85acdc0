import Crypto
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Tensors

/// A published weight file: DiffBIR's `pretrained_models.py` names and addresses.
public struct PublishedFile: Sendable, Equatable {
    public var name: String
    public var url: String
    /// Its size as published (nil: taken from the server).
    public var size: Int?
    /// SHA-256, pinned where the host publishes it (Hugging Face's LFS pointers do); nil: the
    /// digest is computed and printed, the file's layout checked instead.
    public var sha256: String?
    /// Which plans need it.
    public var usedBy: String

    public init(name: String, url: String, size: Int? = nil, sha256: String? = nil, usedBy: String) {
        self.name = name
        self.url = url
        self.size = size
        self.sha256 = sha256
        self.usedBy = usedBy
    }

    public var fileName: String { String(url.split(separator: "/").last ?? Substring(name)) }

    /// DiffBIR's published files, by the names its `pretrained_models.py` gives them.
    public static let all: [PublishedFile] = [
        PublishedFile(name: "bsrnet", url: "https://github.com/cszn/KAIR/releases/download/v1.0/BSRNet.pth", usedBy: "diffbir-v2 sr; --model bsrnet"),
        PublishedFile(name: "swinir_face", url: "https://huggingface.co/lxq007/DiffBIR/resolve/main/face_swinir_v1.ckpt", usedBy: "face tasks"),
        PublishedFile(name: "scunet_psnr", url: "https://github.com/cszn/KAIR/releases/download/v1.0/scunet_color_real_psnr.pth", usedBy: "diffbir-v2 denoise"),
        PublishedFile(name: "swinir_general", url: "https://huggingface.co/lxq007/DiffBIR/resolve/main/general_swinir_v1.ckpt", usedBy: "diffbir-v1"),
        PublishedFile(name: "swinir_realesrgan", url: "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/realesrgan_s4_swinir_100k.pth",
                      usedBy: "diffbir-v2.1 sr, denoise"),
        PublishedFile(name: "sd_v2.1", url: "https://huggingface.co/stabilityai/stable-diffusion-2-1-base/resolve/main/v2-1_512-ema-pruned.ckpt",
                      usedBy: "diffbir-v1, diffbir-v2"),
        PublishedFile(name: "sd_v2.1_zsnr", url: "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/sd2.1-base-zsnr-laionaes5.ckpt", usedBy: "diffbir-v2.1"),
        PublishedFile(name: "v1_face", url: "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/v1_face.pth", usedBy: "diffbir-v1 face"),
        PublishedFile(name: "v1_general", url: "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/v1_general.pth", usedBy: "diffbir-v1"),
        PublishedFile(name: "v2", url: "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/v2.pth", usedBy: "diffbir-v2"),
        PublishedFile(name: "v2.1", url: "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/DiffBIR_v2.1.pt", usedBy: "diffbir-v2.1"),
    ]

    public static func named(_ name: String) -> PublishedFile? { all.first { $0.name == name } }
}

public struct FetchError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description.escapingControlCharacters }
}

/// Downloads with resume: bytes go to `NAME.part` beside the target; an interrupted download
/// continues from where it stopped (an HTTP Range request), the size is checked against the
/// server's (and the published one), the SHA-256 against the pinned one, and only then is the file
/// renamed into place. A `.part` that does not match is removed, never renamed.
public enum Fetcher {
    public struct Result: Sendable {
        public var path: String
        public var bytes: Int
        public var sha256: String
        /// Bytes already there from an earlier, interrupted download.
        public var resumedFrom: Int
        public var alreadyPresent: Bool
    }

    /// Fetches `file` into `directory` (created when missing). `progress(done, total)` as bytes
    /// arrive (total nil when the server does not say). `replace`: download afresh (no resume) even
    /// when the file is there; the file there is replaced only once the new one is complete and checked.
    public static func fetch(_ file: PublishedFile, into directory: String, replace: Bool = false,
                             progress: @escaping @Sendable (Int, Int?) -> Void = { _, _ in }) throws(FetchError) -> Result {
        let target = FilePaths.join(directory, file.fileName), part = target + ".part"
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw FetchError("\(directory): cannot create the folder: \(error.localizedDescription)")
        }
        if replace { try? FileManager.default.removeItem(atPath: part) }
        if !replace, FileManager.default.fileExists(atPath: target) {
            let digest = try sha256(of: target)
            if let pinned = file.sha256, pinned != digest {
                throw FetchError("\(target) exists but its SHA-256 is \(digest), not the published \(pinned): remove it and fetch again")
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: target)[.size] as? Int) ?? 0
            return Result(path: target, bytes: size, sha256: digest, resumedFrom: 0, alreadyPresent: true)
        }
        let have = (try? FileManager.default.attributesOfItem(atPath: part)[.size] as? Int) ?? 0
        guard let url = URL(string: file.url) else { throw FetchError("\(file.name): '\(file.url)' is not a URL") }
        let download = Download(url: url, part: part, offset: have, progress: progress)
        try download.run()
        let got = (try? FileManager.default.attributesOfItem(atPath: part)[.size] as? Int) ?? 0
        let size = got
        if let total = download.total, size != total {
            throw FetchError("\(file.url): got \(size) bytes of \(total) (the connection ended early); run the same command again to resume")
        }
        if let published = file.size, size != published {
            try? FileManager.default.removeItem(atPath: part)
            throw FetchError("\(file.url): \(size) bytes, but the published file has \(published): removed, not kept")
        }
        let digest = try sha256(of: part)
        if let pinned = file.sha256, pinned != digest {
            try? FileManager.default.removeItem(atPath: part)
            throw FetchError("\(file.url): SHA-256 \(digest) is not the published \(pinned): removed, not kept")
        }
        guard rename(part, target) == 0 else { throw FetchError("\(target): cannot rename the download into place") }
        return Result(path: target, bytes: size, sha256: digest, resumedFrom: download.resumedFrom, alreadyPresent: false)
    }

    /// SHA-256 of a file, read a megabyte at a time.
    public static func sha256(of path: String) throws(FetchError) -> String {
        guard let h = FileHandle(forReadingAtPath: path) else { throw FetchError("\(path): cannot read") }
        defer { try? h.close() }
        var hasher = SHA256()
        while let chunk = try? h.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// One HTTP GET (from `offset` with a Range request) appended to the `.part` file.
    final class Download: NSObject, URLSessionDataDelegate, @unchecked Sendable {
        let url: URL, part: String, offset: Int
        let progress: @Sendable (Int, Int?) -> Void
        let done = DispatchSemaphore(value: 0)
        var handle: FileHandle?
        var received = 0
        var resumedFrom = 0
        var total: Int?
        var failure: FetchError?

        init(url: URL, part: String, offset: Int, progress: @escaping @Sendable (Int, Int?) -> Void) {
            self.url = url
            self.part = part
            self.offset = offset
            self.progress = progress
        }

        func run() throws(FetchError) {
            var request = URLRequest(url: url)
            if offset > 0 { request.setValue("bytes=\(offset)-", forHTTPHeaderField: "Range") }
            request.timeoutInterval = 60
            let session = URLSession(configuration: .ephemeral, delegate: self, delegateQueue: nil)
            session.dataTask(with: request).resume()
            done.wait()
            session.finishTasksAndInvalidate()
            try? handle?.close()
            if let failure { throw failure }
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
            guard let http = response as? HTTPURLResponse else {
                failure = FetchError("\(url): not an HTTP response")
                return completionHandler(.cancel)
            }
            let length = http.expectedContentLength >= 0 ? Int(http.expectedContentLength) : nil
            switch http.statusCode {
            case 206 where offset > 0:
                // Continue the part: Content-Range "bytes START-END/TOTAL".
                resumedFrom = offset
                if let range = http.value(forHTTPHeaderField: "Content-Range"), let slash = range.lastIndex(of: "/") {
                    total = Int(range[range.index(after: slash)...])
                } else {
                    total = length.map { $0 + offset }
                }
                received = offset
                handle = FileHandle(forWritingAtPath: part)
                _ = try? handle?.seekToEnd()
            case 200:
                // From the start (no resume, or the server ignores Range).
                total = length
                _ = FileManager.default.createFile(atPath: part, contents: nil)
                handle = FileHandle(forWritingAtPath: part)
            case 416 where offset > 0:
                // The part already holds everything.
                total = offset
                received = offset
                return completionHandler(.cancel)
            default:
                failure = FetchError("\(url): HTTP \(http.statusCode)")
                return completionHandler(.cancel)
            }
            guard handle != nil else {
                failure = FetchError("\(part): cannot write")
                return completionHandler(.cancel)
            }
            completionHandler(.allow)
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
            do { try handle?.write(contentsOf: data) } catch {
                failure = FetchError("\(part): \(error.localizedDescription)")
                dataTask.cancel()
                return
            }
            received += data.count
            progress(received, total)
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
            if let error, failure == nil {
                let cancelled = (error as NSError).code == NSURLErrorCancelled
                if !cancelled || total == nil { failure = FetchError("\(url): \(error.localizedDescription)") }
            }
            done.signal()
        }
    }
}
