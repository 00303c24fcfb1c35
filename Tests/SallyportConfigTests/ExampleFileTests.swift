import Foundation
import SallyportConfig
import Testing

@Suite("The example files in config/")
struct ExampleFileTests {
    let directory = exampleConfigDirectory()

    @Test func relayExampleLoads() throws {
        let relay = try ConfigLoader.loadRelay(file: "\(directory)/relay.yaml")
        #expect(relay.publicListen == HostPort(host: "0.0.0.0", port: 443))
        #expect(
            relay.publicCertificates == [
                CertificateConfig(hosts: ["*.apps.example.com"], certificate: "\(directory)/tls/apps.pem", key: "\(directory)/tls/apps.key")
            ]
        )
        #expect(relay.limits.maxHeaderBytes == 32768)
        #expect(relay.limits.headerReadTimeout == .seconds(10))
        #expect(relay.tunnelListen == HostPort(host: "0.0.0.0", port: 8443))
        #expect(relay.tunnelCertificate == "\(directory)/tls/tunnel.pem")
        #expect(relay.tunnelKey == "\(directory)/tls/tunnel.key")
        #expect(relay.connectors.caCertificate == "\(directory)/ca/connectors-ca.pem")
        #expect(relay.connectors.caKey == "\(directory)/ca/connectors-ca.key")
        #expect(relay.stateDirectory == "\(directory)/state")
        #expect(relay.appsDirectory == "\(directory)/apps")
        #expect(relay.reloadInterval == .seconds(2))
        #expect(relay.drainTimeout == .seconds(30))
    }

    @Test func connectorExampleLoads() throws {
        let connector = try ConfigLoader.loadConnector(file: "\(directory)/connector.yaml")
        #expect(connector.relay == HostPort(host: "relay.example.com", port: 8443))
        #expect(connector.certificate == "/etc/sallyport/connector.pem")
        #expect(connector.key == "/etc/sallyport/connector.key")
        #expect(connector.relayCA == "/etc/sallyport/relay-ca.pem")
        #expect(connector.relayServerName == nil)
        #expect(connector.name == nil)
        #expect(connector.connections == 2)
    }

    @Test func exampleAppsLoadWithoutErrors() throws {
        let relay = try ConfigLoader.loadRelay(file: "\(directory)/relay.yaml")
        let load = ConfigLoader.loadApps(directory: relay.appsDirectory)
        #expect(load.errors == [])
        #expect(load.apps.map(\.name) == ["payroll", "timesheets", "wiki"])
        let timesheets = try #require(load.apps.first { $0.name == "timesheets" })
        #expect(timesheets.sso.handler == "kcd")
        #expect(timesheets.sso.settings["spn"] == .string("HTTP/timesheets.corp.example.com"))

        let wiki = try #require(load.apps.last)
        #expect(wiki.externalURL.string == "https://wiki.apps.example.com/")
        #expect(wiki.internalURL.string == "http://wiki.corp.internal:8080/")
        #expect(wiki.sso == SSOConfig(handler: "passthrough"))
        #expect(wiki.timeouts == AppTimeouts(connect: .seconds(5), response: .seconds(30), idle: .seconds(300)))
        #expect(wiki.backendTLS == nil)
        #expect(wiki.preserveHost == false)
        #expect(wiki.sourceFile == "\(relay.appsDirectory)/wiki.yaml")

        let payroll = try #require(load.apps.first)
        #expect(payroll.externalURL.host == "apps.example.com")
        #expect(payroll.externalURL.pathPrefix == "/payroll/")
        #expect(payroll.internalURL.scheme == "https")
        #expect(payroll.internalURL.port == 443)
        #expect(payroll.backendTLS == BackendTLS(caFile: "/etc/sallyport/corp-ca.pem", serverName: "hr.corp.internal"))
        #expect(payroll.preserveHost)
        #expect(payroll.timeouts == AppTimeouts(connect: .seconds(5), response: .seconds(120), idle: .seconds(300)))
    }
}
