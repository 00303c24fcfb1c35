// swift-tools-version:6.0
// An example Sallyport SSO handler plugin: answers a backend's `401 WWW-Authenticate: Example` challenge with
// the user's credentials, or sends them up front. Built and loaded by Sallyport's end-to-end tests.
//   swift build -c release --product ChallengeSSO   →  .build/release/libChallengeSSO.so
import PackageDescription

let package = Package(
    name: "challenge-sso",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ChallengeSSO", type: .dynamic, targets: ["ChallengeSSO"]),
    ],
    dependencies: [
        // This example lives inside the Sallyport checkout; a real plugin names the checkout's path or URL.
        .package(name: "sallyport", path: "../../.."),
    ],
    targets: [
        .target(name: "ChallengeSSO", dependencies: [.product(name: "SallyportPluginAPI", package: "sallyport")]),
        .testTarget(name: "ChallengeSSOTests", dependencies: ["ChallengeSSO", .product(name: "SallyportPluginAPI", package: "sallyport")]),
    ]
)
