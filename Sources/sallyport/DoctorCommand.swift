import ArgumentParser
import Foundation
import SallyportConfig
import SallyportConnector
import SallyportOps
import SallyportRelay

/// `sallyport doctor`: checks this host as a connector (or, with --relay, as a relay) step by step, with the
/// fix for each failure.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this host step by step: config and files, certificate, proxy, relay, clock, each app's backend and KDC (--relay: the relay host).",
        discussion: """
            Prints ok, WARN or FAIL per step, with what to do for each problem; exits 1 when a step fails. On a connector host \
            it connects to the relay as this connector to learn its apps (serving nothing), then tries each app's backend from \
            this host. With --relay it checks the relay's files, whether it runs (admin listener), its listen addresses, and \
            its identity providers.
            """
    )

    @Flag(name: .long, help: "Check this host as a relay.")
    var relay = false

    @Option(name: .long, help: "The configuration file (default: /etc/sallyport/connector.yaml, or relay.yaml with --relay).")
    var config: String?

    func run() async throws {
        var steps: [DoctorStep]
        if self.relay {
            let file = self.config ?? "/etc/sallyport/relay.yaml"
            switch ConfigLoader.checkRelay(file: file) {
            case .failure(let problems): steps = problems.errors.map { DoctorStep("config", .fail, "\($0)", fix: "fix the relay file") }
            case .success(let config): steps = [DoctorStep("config", .ok, file)] + (await RelayDoctor(config: config).run())
            }
        } else {
            let file = self.config ?? "/etc/sallyport/connector.yaml"
            // As the connector: never the default credential cache.
            setenv("KRB5CCNAME", "MEMORY:sallyport-no-default-credential", 1)
            switch ConfigLoader.checkConnector(file: file) {
            case .failure(let problems): steps = problems.errors.map { DoctorStep("config", .fail, "\($0)", fix: "fix the connector file") }
            case .success(let config):
                steps = [DoctorStep("config", .ok, file)] + (await ConnectorDoctor(config: config, environment: ProcessInfo.processInfo.environment).run())
            }
        }
        for step in steps {
            print("\(step.outcome.rawValue.padding(toLength: 4, withPad: " ", startingAt: 0)) \(step.name): \(step.detail)")
            if let fix = step.fix, step.outcome != .ok { print("     fix: \(fix)") }
        }
        let failed = steps.filter { $0.outcome == .fail }.count
        print(failed == 0 ? "\nno problems found" : "\n\(failed) step\(failed == 1 ? "" : "s") failed")
        if failed > 0 { throw ExitCode(1) }
    }
}
