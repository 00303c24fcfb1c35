// swift-tools-version:6.0
// Sallyport: publish internal web apps through an outbound-only tunnel.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "sallyport",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sallyport", targets: ["sallyport"]),
        // What SSO handler plugins link against; installed next to `sallyport`, which exports the same symbols
        // so host and plugins share one copy of the API's types.
        .library(name: "SallyportPluginAPI", type: .dynamic, targets: ["SallyportPluginAPI"]),
        // `swift package scaffold-sso-handler`: a new handler package for an integrator.
        .plugin(name: "ScaffoldSSOHandler", targets: ["ScaffoldSSOHandler"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // Per-app files, relay and connector configuration: parsing and strict validation.
        .target(
            name: "SallyportConfig",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        // The plugin API: the few types a handler sees (the user's identity first). Standard library only.
        .target(name: "SallyportPluginAPI", swiftSettings: swiftSettings),
        // SSO handlers: the built-in ones (passthrough, header, kcd) and the catalog that checks an app's settings.
        .target(
            name: "SallyportSSO",
            dependencies: ["SallyportConfig", "SallyportPluginAPI"],
            swiftSettings: swiftSettings
        ),
        // The kcd handler itself (the relay and `config validate` only check its settings, in SallyportSSO).
        .target(
            name: "SallyportKCD",
            dependencies: ["SallyportSSO", "SallyportPluginAPI", "SallyportKerberos", .product(name: "SwiftASN1", package: "swift-asn1")],
            swiftSettings: swiftSettings
        ),
        // Pre-authentication at the relay: OIDC sign-in, trusted JWTs, sessions, access rules.
        .target(
            name: "SallyportAuth",
            dependencies: [
                "SallyportConfig",
                "SallyportPluginAPI",
                "SallyportHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // HTTP pieces shared by the relay's edge and the connector's backend side.
        .target(
            name: "SallyportHTTP",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // What operators watch: the admin listener (metrics, readiness, status page), Prometheus exposition,
        // access log records. Shared by the relay and the connector; never on the data path's critical section.
        .target(
            name: "SallyportOps",
            dependencies: [
                "SallyportHTTP",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // What tunnel peers parse from each other, as bytes and values with no I/O: control messages and their
        // framing, configuration versions, the identity field. Small on purpose: the fuzz targets build on it.
        .target(
            name: "SallyportWire",
            dependencies: [
                "SallyportConfig",
                "SallyportPluginAPI",
                "SallyportHTTP",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The parsers of untrusted bytes as fuzz targets, and their libFuzzer driver (scripts/fuzz.sh).
        .target(
            name: "SallyportFuzzTargets",
            dependencies: ["SallyportConfig", "SallyportPluginAPI", "SallyportWire", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(name: "sallyport-fuzz", dependencies: ["SallyportFuzzTargets"], swiftSettings: swiftSettings),
        // Certificates and keys from files into TLS contexts, for the edge, backends and the tunnel alike.
        .target(
            name: "SallyportTLS",
            dependencies: [
                "SallyportPKI",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        // The tunnel wire protocol: mTLS, HTTP/2 settings, stream metadata, control messages.
        .target(
            name: "SallyportTunnel",
            dependencies: [
                "SallyportWire",
                "SallyportPKI",
                "SallyportTLS",
                .product(name: "X509", package: "swift-certificates"),
                "SallyportConfig",
                "SallyportPluginAPI",
                "SallyportHTTP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP2", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: swiftSettings
        ),
        // The relay's durable state (connectors, groups, tokens, certificates, relays) behind one protocol:
        // embedded SQLite for one relay, PostgreSQL for several.
        .target(
            name: "SallyportState",
            dependencies: [
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The relay: public edge, routing, connector registry, tunnel listener.
        .target(
            name: "SallyportRelay",
            dependencies: [
                "SallyportConfig",
                "SallyportTLS",
                "SallyportSSO",
                "SallyportAuth",
                "SallyportPluginAPI",
                "SallyportHTTP",
                "SallyportTunnel",
                "SallyportWire",
                "SallyportState",
                "SallyportOps",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                "SallyportPKI",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP2", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Plugin libraries: loading, and the supervised plugin host processes that run them.
        .target(
            name: "SallyportPluginHost",
            dependencies: [
                "SallyportPluginAPI", "SallyportSSO", "SallyportConfig",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The connector: tunnel client, backend client pool, forwarding.
        .target(
            name: "SallyportConnector",
            dependencies: [
                "SallyportConfig",
                "SallyportTLS",
                "SallyportSSO",
                "SallyportKCD",
                "SallyportKerberos",
                "SallyportPluginAPI",
                "SallyportPluginHost",
                .product(name: "Metrics", package: "swift-metrics"),
                "SallyportOps",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                "SallyportHTTP",
                "SallyportTunnel",
                "SallyportWire",
                "SallyportPKI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP2", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Throwaway PKI for the demo and the tests.
        .target(
            name: "SallyportPKI",
            dependencies: [
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: swiftSettings
        ),
        // `sallyport demo`: relay, connector and a sample backend in one process.
        .target(
            name: "SallyportDemo",
            dependencies: [
                "SallyportConfig",
                "SallyportRelay",
                "SallyportConnector",
                "SallyportPKI",
                "SallyportTunnel",
                "SallyportWire",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // MIT GSS-API (libkrb5-dev): the module map only.
        // MIT Kerberos from Debian's libkrb5-dev: its headers and libraries are reachable from the default paths
        // (/usr/include/gssapi, /usr/lib/<arch>/libgssapi_krb5.so); no pkg-config, whose `-isystem` SwiftPM
        // refuses with a warning on every build, the plugins' included.
        .systemLibrary(name: "CGSSAPI", providers: [.apt(["libkrb5-dev"])]),
        // GSS-API macros and OIDs as functions; nothing else in C.
        .target(name: "CSallyportGSS", dependencies: ["CGSSAPI"]),
        // Kerberos for the KCD handler: one Swift type owns each GSS handle.
        .target(
            name: "SallyportKerberos",
            dependencies: ["CGSSAPI", "CSallyportGSS"],
            swiftSettings: swiftSettings
        ),
        // C at the edge: process-level tuning glibc only offers through macros.
        .target(name: "CSallyportSystem"),
        // The one executable: parses arguments and assembles services.
        .executableTarget(
            name: "sallyport",
            dependencies: [
                "SallyportConfig",
                "SallyportRelay",
                "SallyportConnector",
                "SallyportDemo",
                "SallyportTunnel",
                "SallyportWire",
                "SallyportSSO",
                "SallyportKCD",
                "SallyportKerberos",
                "SallyportScaffold",
                "SallyportPluginAPI",
                "SallyportPluginHost",
                "SallyportOps",
                "CSallyportSystem",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings,
            // Plugins bind to this executable's copy of the plugin API (never to a second one): export its symbols.
            linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "--export-dynamic-symbol=$s18SallyportPluginAPI*"], .when(platforms: [.linux]))]
        ),
        // Templates for a new SSO handler package (used by the scaffold plugin and `sallyport plugins new`).
        .target(name: "SallyportScaffold", swiftSettings: swiftSettings),
        .executableTarget(name: "sallyport-scaffold", dependencies: ["SallyportScaffold"], swiftSettings: swiftSettings),
        .plugin(
            name: "ScaffoldSSOHandler",
            capability: .command(
                intent: .custom(verb: "scaffold-sso-handler", description: "Create a Sallyport SSO handler plugin package"),
                permissions: [.writeToPackageDirectory(reason: "writes the new handler package")]
            ),
            dependencies: ["sallyport-scaffold"]
        ),
        // Test harness: real processes, nginx, throwaway certificates, free ports.
        .target(
            name: "SallyportTesting",
            dependencies: [
                "SallyportPKI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: swiftSettings
        ),
        // scripts/bench.sh: Sallyport next to nginx on loopback, with wrk and h2load; writes docs/performance.md.
        .executableTarget(
            name: "sallyport-bench",
            dependencies: [
                "SallyportTesting",
                "SallyportPKI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "SallyportStateTests", dependencies: ["SallyportState", "SallyportTesting", .product(name: "Logging", package: "swift-log")], swiftSettings: swiftSettings),
        .testTarget(name: "SallyportConfigTests", dependencies: ["SallyportConfig"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SallyportOpsTests",
            dependencies: [
                "SallyportOps",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SallyportHTTPTests",
            dependencies: [
                "SallyportHTTP",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SallyportTunnelTests",
            dependencies: [
                "SallyportTunnel",
                "SallyportWire",
                "SallyportFuzzTargets",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SallyportRelayTests",
            dependencies: [
                "SallyportRelay", "SallyportConfig", "SallyportTunnel", "SallyportTLS", "SallyportWire", "SallyportHTTP", "SallyportPluginAPI", "SallyportState", "SallyportPKI",
                .product(name: "Logging", package: "swift-log"), .product(name: "X509", package: "swift-certificates"),
                .product(name: "HTTPTypes", package: "swift-http-types"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"), .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SallyportConnectorTests",
            dependencies: [
                "SallyportConnector", "SallyportConfig", "SallyportSSO", "SallyportPluginAPI", "SallyportPluginHost", "SallyportTunnel", "SallyportWire",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            swiftSettings: swiftSettings
        ),
        // The relay and connectors in the test process: the forwarding layer tested in seconds, not processes.
        .testTarget(
            name: "InProcessTests",
            dependencies: [
                "SallyportRelay", "SallyportConnector", "SallyportConfig", "SallyportWire",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SallyportSSOTests",
            dependencies: ["SallyportSSO", "SallyportKCD", "SallyportConfig", "SallyportPluginAPI", "SallyportKerberos"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SallyportKerberosTests",
            dependencies: ["SallyportKerberos"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SallyportAuthTests",
            dependencies: [
                "SallyportHTTP",
                "SallyportAuth",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                "SallyportConfig",
                "SallyportPluginAPI",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "SallyportTesting", "SallyportPKI", "sallyport", "SallyportKerberos", "SallyportSSO", "SallyportKCD", "SallyportPluginAPI", "SallyportConfig",
                "SallyportTunnel",
                "SallyportWire",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP2", package: "swift-nio-extras"),
                .product(name: "Yams", package: "Yams"),
            ],
            exclude: ["Resources"],
            swiftSettings: swiftSettings
        ),
    ]
)
