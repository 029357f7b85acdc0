// swift-tools-version:6.0
// DiffBIR converter, compiler and ahead-of-time executor. Module map and import rules:
// docs/architecture.md (the part that exists: docs/compiler.md, "Layout").
import PackageDescription

// The instruction sets the kernel modules are built for (x86-64; on other architectures the package
// builds with OpenBLAS as its only GEMM).
#if arch(x86_64)
let baseline = ["-target-cpu", "haswell"], avx512 = ["-target-cpu", "skylake-avx512"], vnni = ["-target-cpu", "cascadelake"]
#else
let baseline: [String] = [], avx512: [String] = [], vnni: [String] = []
#endif

let optimized: [SwiftSetting] = [.unsafeFlags(["-O", "-enforce-exclusivity=unchecked"] + baseline)]

let package = Package(
    name: "DiffBIRSwift",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "diffbir", targets: ["diffbir"]),
        .library(name: "DiffBIRCompiler", targets: ["Importers", "IR", "ModelGraphs", "Passes", "Plan", "Quantize", "Compilation"]),
        .library(name: "DiffBIRRuntime", targets: ["Plan", "Kernels", "Executor", "Pipeline", "Service"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // DiffBIR's own yaml configurations (--config cldm.yaml, swinir.yaml, ...).
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        // SHA-256 of downloaded weights (diffbir fetch).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        // diffbir serve / worker: HTTP (Hummingbird 2), metrics, logs, the PostgreSQL job queue.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.20.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.25.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.30.0"),
    ],
    targets: [
        // System-library shims: a module map and one header each.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CProtobufC", path: "Sources/CProtobufC"),
        // libpng + zlib behind a small C wrapper (libpng reports errors with longjmp,
        // which Swift cannot catch).
        .target(
            name: "CPNG",
            path: "Sources/CPNG",
            linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("z")]
        ),
        // libjpeg(-turbo) and libwebp, for JPEG and WebP images (Debian: libjpeg62-turbo-dev, libwebp-dev).
        .target(name: "CImageCodecs", path: "Sources/CImageCodecs", linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("webp")]),
        // C code generated once from onnx.proto by protoc-c (see Tools/gen-onnx-proto.sh).
        .target(name: "ONNXProto", dependencies: ["CProtobufC"], path: "Sources/ONNXProto",
                linkerSettings: [.linkedLibrary("protobuf-c")]),

        .target(name: "Tensors"),
        .target(name: "IR", dependencies: ["Tensors", "Plan"]),
        // zlib's crc32, folded with PCLMULQDQ (plan checksums).
        .target(name: "CChecksum", path: "Sources/CChecksum", cSettings: [.unsafeFlags(["-O2"])], linkerSettings: [.linkedLibrary("z")]),
        .target(name: "Plan", dependencies: ["Tensors", "CChecksum"]),
        .target(name: "ReferenceKernels", dependencies: ["Tensors", "Plan"]),
        .target(name: "Passes", dependencies: ["IR", "Tensors", "Plan", "ReferenceKernels"]),
        // Model definitions, one folder per network (folder Graphs/).
        .target(name: "ModelGraphs", dependencies: ["IR", "Importers", "Plan", "Tensors", .product(name: "Yams", package: "Yams")], path: "Graphs"),
        .target(name: "Importers", dependencies: ["IR", "Tensors", "ONNXProto"]),
        // The kernels and the pipeline's pixel loops are optimised in every build (also `swift build`'s
        // debug one), so that the tests run real sizes in seconds, and built for x86-64 with AVX2 and
        // FMA (the baseline; `diffbir` refuses older processors): AVX-512 code lives in its own module.
        // Micro-kernels per instruction set: each module is compiled for its processor family and only
        // called after CPUID says the processor has it (Kernels/Gemm.swift); C only for what Swift
        // cannot express (CPU feature tests, bf16 intrinsics, which Swift does not import).
        .target(name: "CKernels", path: "Sources/CKernels", cSettings: [.unsafeFlags(["-O2"])]),
        .target(name: "KernelsAVX2", path: "Sources/KernelsAVX2", swiftSettings: [.unsafeFlags(["-O", "-enforce-exclusivity=unchecked"] + baseline)]),
        .target(name: "KernelsAVX512", path: "Sources/KernelsAVX512",
                swiftSettings: [.unsafeFlags(["-O", "-enforce-exclusivity=unchecked"] + avx512)]),
        .target(name: "KernelsVNNI", path: "Sources/KernelsVNNI",
                swiftSettings: [.unsafeFlags(["-O", "-enforce-exclusivity=unchecked"] + vnni)]),
        .target(name: "Kernels", dependencies: ["Tensors", "Plan", "CBLAS", "CKernels", "KernelsAVX2", "KernelsAVX512", "KernelsVNNI"],
                swiftSettings: optimized),
        .target(name: "Executor", dependencies: ["Plan", "Kernels", "ReferenceKernels", "Tensors"]),
        // The compiler's measuring side: calibration, error compensation (GPTQ); observes runs
        // through the executor's RunObserver. The runtime never imports it.
        .target(name: "Quantize", dependencies: ["Executor", "IR", "Passes", "Importers", "Kernels", "Plan", "ReferenceKernels", "Tensors", "CBLAS"]),
        // Compiler drivers that need both sides: the fast constant evaluator (run --fast) and prompt
        // baking (the text encoder run once at compile time with the runtime's tokenizer).
        .target(name: "Compilation", dependencies: ["IR", "Importers", "Passes", "Kernels", "Pipeline", "Plan", "Tensors"]),
        .target(name: "Pipeline", dependencies: ["Executor", "Plan", "Tensors", "CPNG", "CImageCodecs", .product(name: "Crypto", package: "swift-crypto")],
                resources: [.copy("Resources/bpe_simple_vocab_16e6.txt.gz")], swiftSettings: optimized),

        // The HTTP service and the PostgreSQL worker: runtime side (never imports the compiler).
        .target(name: "Service", dependencies: [
            "Pipeline", "Plan",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], resources: [.copy("Resources/openapi.json"), .copy("Resources/index.html")]),

        .executableTarget(
            name: "diffbir",
            dependencies: [
                "Tensors", "IR", "Importers", "ModelGraphs", "Passes", "Plan", "Kernels", "Executor", "Pipeline", "Quantize", "Compilation", "Service", "CKernels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/diffbir"
        ),

        // Test-only helpers: fixture paths, checksums, error-budget assertions.
        // Fuzz targets of the readers: a corpus replayer in normal builds, libFuzzer's with Tools/fuzz.sh.
        .executableTarget(name: "diffbir-fuzz", dependencies: ["Importers", "IR", "Passes", "Pipeline", "Plan", "Tensors"],
                          path: "Tests/Fuzz/Sources"),
        .target(name: "TestSupport", dependencies: ["Tensors", "CPNG"], path: "Sources/TestSupport"),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "TestSupport"]),
        // Runs the built `diffbir` (Tool.path); depending on it builds it first.
        .testTarget(name: "CLITests", dependencies: ["diffbir", "TestSupport"]),
        .testTarget(name: "ImportersTests", dependencies: ["Importers", "Tensors", "TestSupport"]),
        .testTarget(name: "IRTests", dependencies: ["IR", "Passes", "Tensors"]),
        .testTarget(name: "PassesTests", dependencies: ["Passes", "Compilation", "Kernels", "Quantize", "ModelGraphs", "Importers", "IR", "Plan", "Executor", "Tensors", "TestSupport"]),
        .testTarget(name: "ModelGraphsTests", dependencies: ["ModelGraphs", "Importers", "IR", "Passes", "Tensors", "TestSupport"]),
        .testTarget(name: "NCNNTests", dependencies: ["Importers", "IR", "Passes", "Plan", "Executor", "Tensors", "TestSupport"]),
        .testTarget(name: "ONNXTests", dependencies: ["Importers", "IR", "Passes", "Tensors", "TestSupport"]),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Plan", "Tensors", "TestSupport"]),
        .testTarget(name: "RestoreTests", dependencies: ["Pipeline", "Compilation", "Executor", "Plan", "Passes", "ModelGraphs", "Importers", "IR", "Tensors", "TestSupport"]),
        .testTarget(name: "ServiceTests", dependencies: ["Service", "Pipeline", "Plan", "TestSupport", "diffbir",
                                                         .product(name: "HummingbirdTesting", package: "hummingbird"),
                                                         .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "ReferenceKernels", "Plan", "Tensors", "TestSupport"]),
    ]
)
