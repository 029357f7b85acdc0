import Tensors
import Testing

/// Path pieces for the tool's output names, including the one-character names Foundation's
/// NSString methods trap on.
@Suite struct FilePathsTests {
    @Test(arguments: [
        ("a", ".", "a", "a"), ("-", ".", "-", "-"), ("out/", ".", "out", "out"), ("/a", "/", "a", "a"),
        ("dir/sub/photo.png", "dir/sub", "photo.png", "photo"), (".hidden", ".", ".hidden", ".hidden"),
        ("x.tar.gz", ".", "x.tar.gz", "x.tar"), ("d/e/", "d", "e", "e"), ("/", "/", "", ""),
    ])
    func pieces(path: String, directory: String, name: String, stem: String) {
        #expect(FilePaths.directory(of: path) == directory)
        #expect(FilePaths.fileName(of: path) == name)
        #expect(FilePaths.stem(of: path) == stem)
    }

    @Test func join() {
        #expect(FilePaths.join("out", "a.png") == "out/a.png")
        #expect(FilePaths.join("out/", "a.png") == "out/a.png")
    }
}
