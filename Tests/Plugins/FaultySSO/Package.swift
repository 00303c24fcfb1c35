// swift-tools-version:6.0
// A plugin that misbehaves on purpose, for Sallyport's end-to-end tests of plugin isolation: it crashes, hangs
// and blocks when told to, asks for retries it cannot get, needs a file, and has typed settings.
import PackageDescription

let package = Package(
    name: "faulty-sso",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "FaultySSO", type: .dynamic, targets: ["FaultySSO"]),
    ],
    dependencies: [
        .package(name: "sallyport", path: "../../.."),
    ],
    targets: [
        .target(name: "FaultySSO", dependencies: [.product(name: "SallyportPluginAPI", package: "sallyport")]),
    ]
)
