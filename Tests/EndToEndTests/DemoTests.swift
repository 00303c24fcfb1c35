import Foundation
import SallyportTesting
import Testing


extension EndToEnd {
    /// `sallyport demo` is the first thing a new user runs: the curl line it prints must work as printed.
    @Suite("Demo")
    struct DemoTests {
        @Test("The demo's printed curl command works as printed, and Ctrl-C stops it cleanly")
        func printedCurlWorks() async throws {
            let directory = try TestDirectory(prefix: "sallyport-demo")
            defer { directory.remove() }
            let port = try FreePort.next()
            let demo = try ChildProcess.launch(
                try BuiltProduct.path("sallyport"),
                ["demo", "--port", "\(port)", "--directory", directory.file("demo")],
                logFile: directory.file("demo.log")
            )
            try await demo.waitForLog(containing: "Sallyport demo is running", timeout: .seconds(60))
            let line = try #require(demo.log().split(separator: "\n").first { $0.contains("Try:") })
            let command = String(line.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces)
            #expect(command.hasPrefix("curl "))
            #expect(command.contains("https://hello.localhost:\(port)/"))

            let shell = try ChildProcess.launch("/bin/sh", ["-c", command], logFile: directory.file("curl.out"))
            #expect(await shell.waitForExit(timeout: .seconds(30)) == 0)
            let output = shell.log()
            #expect(output.contains("Hello from the sample app behind Sallyport."))
            #expect(output.contains("X-Forwarded-Host: hello.localhost:\(port)"))

            // It set itself up the real way, and says so.
            let log = demo.log()
            #expect(log.contains("step 1: relay initialised") && log.contains("sallyport relay init"))
            #expect(log.contains("step 2: registration token created") && log.contains("sallyport connectors token create"))
            #expect(log.contains("step 3: connector registered") && log.contains("sallyport connector register"))

            // Single sign-on in the first minute: the printed line with the demo token shows the user at the app.
            let ssoLine = try #require(log.split(separator: "\n").first { $0.contains("SSO:") })
            let ssoCommand = String(ssoLine.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces)
            let sso = try ChildProcess.launch("/bin/sh", ["-c", ssoCommand], logFile: directory.file("sso.out"))
            #expect(await sso.waitForExit(timeout: .seconds(30)) == 0)
            #expect(sso.log().contains("X-Remote-User: alice@demo.example"), "\(sso.log())")
            // Without the token the relay answers itself: the app never sees the request.
            let anonymous = try ChildProcess.launch(
                "/bin/sh", ["-c", ssoCommand.replacingOccurrences(of: "-H 'Authorization", with: "-H 'X-Not-Auth")], logFile: directory.file("anon.out")
            )
            _ = await anonymous.waitForExit(timeout: .seconds(30))
            #expect(!anonymous.log().contains("Hello from the sample app"))

            demo.signal(SIGINT)
            #expect(await demo.waitForExit(timeout: .seconds(30)) == 0)
        }

        @Test("A busy port gets a clear message and exit status 1, not a stack of NIO errors")
        func busyPort() async throws {
            let directory = try TestDirectory(prefix: "sallyport-demo-busy")
            defer { directory.remove() }
            let occupied = try SilentListener()
            defer { occupied.close() }
            let demo = try ChildProcess.launch(
                try BuiltProduct.path("sallyport"),
                ["demo", "--port", "\(occupied.port)", "--directory", directory.file("demo")],
                logFile: directory.file("demo.log")
            )
            #expect(await demo.waitForExit(timeout: .seconds(30)) == 1)
            #expect(demo.log().contains("public.listen: cannot listen on 127.0.0.1:\(occupied.port)"))
            #expect(demo.log().contains("Pick another port"))
        }
    }
}
