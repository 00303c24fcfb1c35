import Foundation
import SallyportTesting
import Testing

extension EndToEnd {
    /// Connectors on a network whose firewall lets nothing out but an HTTP proxy (tinyproxy in front of a
    /// network namespace): registration and tunnels go through CONNECT, with Basic authentication.
    @Suite("Outbound proxy")
    struct OutboundProxyTests {
        static let credentials = (user: "sallyport", password: "proxy-pass-7731")

        @Test("Through a CONNECT proxy only: register with --proxy, run with proxy: or HTTPS_PROXY; a wrong password and NO_PROXY say what went wrong, and the password is never logged")
        func throughProxy() async throws {
            let namespace = try NetworkNamespace(index: 0)
            defer { namespace.remove() }
            let deployment = try Deployment(hosts: ["app"], tunnelHost: namespace.hostAddress)
            let nginx = try await Nginx.start(directory: deployment.directory, host: namespace.hostAddress)
            let proxy = try await ForwardProxy.start(
                directory: deployment.directory, host: namespace.hostAddress, connectPorts: [deployment.tunnelPort], credentials: Self.credentials
            )
            do {
                try await Self.run(namespace: namespace, deployment: deployment, nginx: nginx, proxy: proxy)
            } catch {
                await Self.stop(deployment, nginx, proxy)
                throw error
            }
            await Self.stop(deployment, nginx, proxy)
        }

        static func stop(_ deployment: Deployment, _ nginx: Nginx, _ proxy: ForwardProxy) async {
            await deployment.shutdown()
            await nginx.stop()
            await proxy.stop()
        }

        static func run(namespace: NetworkNamespace, deployment: Deployment, nginx: Nginx, proxy: ForwardProxy) async throws {
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            // The namespace reaches the proxy and the backend, nothing else: not the relay.
            try namespace.allowOnly([(namespace.hostAddress, proxy.port), (namespace.hostAddress, nginx.port)])
            let direct = namespace.command("/usr/bin/curl", ["--silent", "--max-time", "5", "--insecure", "https://\(namespace.hostAddress):\(deployment.tunnelPort)/"])
            let probe = try ChildProcess.launch(direct.executable, direct.arguments, logFile: deployment.directory.file("direct-probe.log"))
            let probeExit = await probe.waitForExit(timeout: .seconds(10))
            #expect(probeExit != 0, "the namespace must not reach the relay directly")

            // Registration through the proxy, from inside the namespace; the config it writes keeps the proxy.
            let token = try await deployment.createToken(group: "default")
            let proxyURL = proxy.url(credentials: Self.credentials)
            let register = namespace.command(
                deployment.binary,
                [
                    "connector", "register", "--relay", "\(namespace.hostAddress):\(deployment.tunnelPort)", "--token", token, "--name", "behind-proxy",
                    "--directory", deployment.directory.file("behind-proxy"), "--proxy", proxyURL,
                ]
            )
            let registration = try ChildProcess.launch(register.executable, register.arguments, logFile: deployment.directory.file("register.log"))
            let registered = await registration.waitForExit(timeout: .seconds(30))
            #expect(registered == 0, "\(registration.log())")
            let written = try String(contentsOfFile: deployment.directory.file("behind-proxy/connector.yaml"), encoding: .utf8)
            #expect(written.contains("proxy: \(proxyURL)"), "\(written)")

            // Registration refused by the proxy says why, as the running connector does (tinyproxy answers 401
            // where the standard says 407), and writes nothing.
            func refusedRegistration(_ name: String, proxy url: String, port: Int) async throws -> String {
                let token = try await deployment.createToken(group: "default")
                let command = namespace.command(
                    deployment.binary,
                    ["connector", "register", "--relay", "\(namespace.hostAddress):\(port)", "--token", token, "--name", name, "--directory", deployment.directory.file(name), "--proxy", url]
                )
                let process = try ChildProcess.launch(command.executable, command.arguments, logFile: deployment.directory.file("\(name).log"))
                let status = await process.waitForExit(timeout: .seconds(30))
                #expect(status != 0 && status != nil, "\(process.log())")
                #expect(!FileManager.default.fileExists(atPath: deployment.directory.file(name)), "\(process.log())")
                #expect(!process.log().contains("HTTPClientError") && !process.log().contains("check --relay"), "\(process.log())")
                return process.log()
            }
            let wrongPassword = try await refusedRegistration(
                "wrong-password-register", proxy: proxy.url(credentials: (Self.credentials.user, "not-the-password-8830")), port: deployment.tunnelPort
            )
            #expect(wrongPassword.contains("refused the user sallyport (401): check the proxy user name and password"), "\(wrongPassword)")
            #expect(!wrongPassword.contains("not-the-password-8830"), "\(wrongPassword)")
            let anonymous = try await refusedRegistration("anonymous-register", proxy: proxy.url(), port: deployment.tunnelPort)
            #expect(anonymous.contains("wants authentication (407): put the user and password in the proxy URL"), "\(anonymous)")
            let forbidden = try await refusedRegistration("forbidden-port-register", proxy: proxyURL, port: deployment.publicPort)
            #expect(forbidden.contains("does not allow CONNECT to \(namespace.hostAddress):\(deployment.publicPort) (403)"), "\(forbidden)")

            let connector = try await deployment.startConnector(name: "behind-proxy", namespace: namespace)
            #expect(connector.log().contains("proxy=http://sallyport@\(namespace.hostAddress):\(proxy.port)"), "\(connector.log())")
            let answer = try await Curl.run(deployment.url("app", "/"), caFile: deployment.caFile)
            #expect(answer.status == 200 && answer.body.contains("nginx backend"))
            #expect(proxy.log().contains("CONNECT"), "\(proxy.log())")

            // HTTPS_PROXY instead of the key (a connector registered from outside, with no proxy in its file).
            _ = try await deployment.registration(name: "from-env")
            try await deployment.startConnector(name: "from-env", environment: ["HTTPS_PROXY": proxyURL], namespace: namespace)

            // A wrong password: the log says the proxy refused the user, and never shows the password.
            _ = try await deployment.registration(name: "wrong-password")
            let refused = try await deployment.startConnector(
                name: "wrong-password", environment: ["https_proxy": proxy.url(credentials: (Self.credentials.user, "not-the-password-5512"))],
                waitForConfiguration: false, namespace: namespace
            )
            try await refused.waitForLog(containing: "refused the user sallyport (401): check the proxy user name and password", timeout: .seconds(20))
            #expect(!refused.log().contains("not-the-password-5512") && !connector.log().contains(Self.credentials.password))

            // NO_PROXY naming the relay: it dials directly, which this network refuses.
            _ = try await deployment.registration(name: "no-proxy")
            let bypassing = try await deployment.startConnector(
                name: "no-proxy", environment: ["HTTPS_PROXY": proxyURL, "NO_PROXY": "localhost,\(namespace.hostAddress)"],
                waitForConfiguration: false, namespace: namespace
            )
            try await bypassing.waitForLog(containing: "tunnel connection to the relay failed", timeout: .seconds(20))
            #expect(!bypassing.log().contains("proxy="), "\(bypassing.log())")
        }
    }
}

extension EndToEnd.OutboundProxyTests {
    @Test("One port: with tunnel.onPublicPort, connectors reach the relay on the users' port (TLS SNI tells them apart), also through a proxy that allows CONNECT to that port only, while users keep using it")
    func onePort() async throws {
        let namespace = try NetworkNamespace(index: 1)
        defer { namespace.remove() }
        let deployment = try Deployment(hosts: ["app"], tunnelOnPublicPort: true)
        let nginx = try await Nginx.start(directory: deployment.directory, host: namespace.hostAddress)
        let proxy = try await ForwardProxy.start(directory: deployment.directory, host: namespace.hostAddress, connectPorts: [deployment.publicPort])
        do {
            try deployment.writeApp(name: "app", internalURL: nginx.baseURL + "/")
            try await deployment.startRelay()
            let listening = try #require(deployment.relay?.log().split(separator: "\n").first { $0.contains("relay listening") })
            #expect(listening.contains("tunnel.onPublicPort=localhost") && !listening.contains(" tunnel="), "\(listening)")

            // Registration and tunnels on the public port, next to users.
            try await deployment.startConnector(name: "direct")
            #expect(try await Curl.run(deployment.url("app", "/"), caFile: deployment.caFile).status == 200)
            #expect(try await Curl.run(deployment.url("app", "/"), caFile: deployment.caFile, http2: true).status == 200)

            // A network that lets out only the proxy, and a proxy that lets through only CONNECT to the public port.
            try namespace.allowOnly([(namespace.hostAddress, proxy.port), (namespace.hostAddress, nginx.port)])
            _ = try await deployment.registration(name: "proxied")
            try await deployment.startConnector(name: "proxied", environment: ["HTTPS_PROXY": proxy.url()], namespace: namespace)
            await deployment.stopConnector("direct")
            for _ in 0..<4 { #expect(try await Curl.run(deployment.url("app", "/"), caFile: deployment.caFile).status == 200) }
            #expect(proxy.log().contains("localhost:\(deployment.publicPort)"), "\(proxy.log())")
            let metrics = try await Curl.run(deployment.adminURL("/metrics"), caFile: nil).body
            #expect(Self.sample(metrics, #"sallyport_tunnels{group="default"}"#) == 2, "the proxied connector's two tunnels: \(metrics)")
        } catch {
            await Self.stop(deployment, nginx, proxy)
            throw error
        }
        await Self.stop(deployment, nginx, proxy)
    }

    static func sample(_ exposition: String, _ series: String) -> Double? { EndToEnd.OperationsTests.sample(exposition, series) }
}
