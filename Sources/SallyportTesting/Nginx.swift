import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// nginx from Debian's packages (`/usr/sbin/nginx`), run in the foreground as a backend for end-to-end tests.
///
/// Listens on 127.0.0.1 and serves:
/// - `GET /`: a small HTML page containing "nginx backend".
/// - `GET /files/NAME`: static files from ``filesDirectory``, with Range support.
/// - `PUT /uploads/NAME`: stores the body as `uploadsDirectory/NAME` (DAV module, no body size limit);
///   `GET /uploads/NAME` reads it back.
/// - `POST /echo`: returns the request body with status 200 (echo module).
/// - `GET /headers`: returns the raw request head as received, request line first, then one
///   `Name: value` line per header, CRLF-terminated.
/// - `GET /challenge`: 401 with `WWW-Authenticate: Example realm=test` unless the request carries
///   `Authorization: Example …`; then the request head, like `/headers`.
/// - `GET /slow/NAME`: like `/files/` but sent at 1 MB/s.
/// - `GET /connection`: the serial number of the TCP connection that carried the request (`$connection`),
///   to tell which requests shared a backend connection.
/// - `GET /status/CODE`: an empty response with status 204, 400, 403, 404, 500, 502 or 503.
/// - `GET /delay?id=N`: "delayed N" after half a second (`delay`), with nothing sent before.
/// - `GET /plant`: sets the relay's session cookie (as a hostile backend would) and `theme=dark`.
///
/// Everything (config, logs, temp files) lives in `DIRECTORY/nginx/`. Install nginx with
/// `scripts/setup-test-deps.sh`.
public final class Nginx: @unchecked Sendable {
    /// The port nginx listens on.
    public let port: Int
    /// The address it listens on: 127.0.0.1, or the host end of a ``NetworkNamespace``.
    public let host: String
    /// Where `/files/` and `/slow/` are served from.
    public let filesDirectory: String
    /// Where `PUT /uploads/NAME` stores bodies.
    public let uploadsDirectory: String
    private let home: String
    private let process: ChildProcess

    /// Status codes `GET /status/CODE` answers with.
    public static let statusCodes = [204, 400, 403, 404, 500, 502, 503]

    static let executable = "/usr/sbin/nginx"
    static let echoModule = "/usr/lib/nginx/modules/ngx_http_echo_module.so"

    private init(host: String, port: Int, filesDirectory: String, uploadsDirectory: String, home: String, process: ChildProcess) {
        self.host = host
        self.port = port
        self.filesDirectory = filesDirectory
        self.uploadsDirectory = uploadsDirectory
        self.home = home
        self.process = process
    }

    deinit {
        // ChildProcess's own deinit kills the master; workers would outlive it.
        if process.isRunning {
            let workers = process.childPIDs()
            process.signal(SIGKILL)
            workers.forEach { kill($0, SIGKILL) }
        }
    }

    /// Starts nginx on a free port and returns once it accepts connections.
    ///
    /// - Parameter filesDirectory: served under `/files/` and `/slow/`; defaults to `DIRECTORY/nginx/files`.
    /// - Parameter host: the address to listen on.
    /// - Parameter port: the port (default: a free one); two instances on different hosts may share one.
    /// - Parameter name: its directory under `directory`, so that several can run side by side.
    /// - Parameter delay: seconds `/delay` waits before answering.
    public static func start(
        directory: TestDirectory, filesDirectory: String? = nil, host: String = "127.0.0.1", port fixedPort: Int? = nil, name: String = "nginx",
        delay: Double = 0.5
    ) async throws -> Nginx {
        let manager = FileManager.default
        for required in [executable, echoModule] where !manager.fileExists(atPath: required) {
            throw HarnessError(.notFound, "\(required) is missing: run scripts/setup-test-deps.sh (as root) to install nginx")
        }
        let home = directory.file(name)
        let files = filesDirectory ?? (home as NSString).appendingPathComponent("files")
        let uploads = (home as NSString).appendingPathComponent("uploads")
        do {
            for subdirectory in ["www", "tmp", "uploads"] {
                try manager.createDirectory(
                    atPath: (home as NSString).appendingPathComponent(subdirectory),
                    withIntermediateDirectories: true
                )
            }
            try manager.createDirectory(atPath: files, withIntermediateDirectories: true)
            try Data(Self.indexPage.utf8).write(to: URL(fileURLWithPath: "\(home)/www/index.html"))
        } catch {
            throw HarnessError(.fileSystem, "cannot prepare nginx directory \(home): \(error)")
        }

        // FreePort's port can be taken by someone else before nginx binds it: try a few.
        var failures: [String] = []
        for _ in 0..<3 {
            let port = try fixedPort ?? FreePort.next()
            let configuration = Self.configuration(home: home, host: host, port: port, files: files, uploads: uploads, delay: delay)
            let configFile = (home as NSString).appendingPathComponent("nginx.conf")
            do {
                try Data(configuration.utf8).write(to: URL(fileURLWithPath: configFile))
            } catch {
                throw HarnessError(.fileSystem, "cannot write \(configFile): \(error)")
            }
            let errorLog = (home as NSString).appendingPathComponent("error.log")
            let process = try ChildProcess.launch(
                executable,
                ["-p", home + "/", "-e", errorLog, "-c", configFile],
                environment: nil,
                stdout: (home as NSString).appendingPathComponent("stdout.log"),
                stderr: (home as NSString).appendingPathComponent("stdout.log"),
                currentDirectory: home
            )
            let nginx = Nginx(host: host, port: port, filesDirectory: files, uploadsDirectory: uploads, home: home, process: process)
            if try await nginx.waitUntilListening() {
                return nginx
            }
            failures.append("port \(port): \(tail(nginx.errorLog(), lines: 10)) \(tail(process.log(), lines: 10))")
            await nginx.stop()
        }
        throw HarnessError(.launchFailed, "nginx did not start; attempts:\n\(failures.joined(separator: "\n"))")
    }

    /// `http://HOST:PORT`
    public var baseURL: String { "http://\(host):\(port)" }

    /// The access log so far: one line per request,
    /// `METHOD URI STATUS BYTES xff="…" xfp="…" xfh="…" host="…"`.
    public func accessLog() -> String {
        read("access.log")
    }

    /// The error log so far.
    public func errorLog() -> String {
        read("error.log")
    }

    /// How many requests nginx has logged (lines in the access log).
    ///
    /// nginx writes a line when a request completes, so poll briefly after the client sees its response.
    public func requestCount() -> Int {
        accessLog().split(separator: "\n", omittingEmptySubsequences: true).count
    }

    /// Stops nginx (SIGTERM, then SIGKILL to the master and its workers) and waits for the master to exit.
    public func stop() async {
        guard process.isRunning else { return }
        let workers = process.childPIDs()
        await process.terminate(timeout: .seconds(5))
        // A gracefully stopped master has already reaped its workers; a killed one leaves them running.
        for worker in workers where FileManager.default.fileExists(atPath: "/proc/\(worker)") {
            kill(worker, SIGKILL)
        }
    }

    /// Waits for the port to accept connections; false if nginx exited first (for example, port taken).
    private func waitUntilListening() async throws -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(15))
        while clock.now < deadline {
            guard process.isRunning else { return false }
            if (try? await Wait.forPort(port, host: host, timeout: .milliseconds(200))) != nil {
                return true
            }
        }
        throw HarnessError(
            .timedOut,
            "nginx (pid \(process.pid)) did not listen on \(host):\(port) within 15s; error log:\n\(tail(errorLog()))"
        )
    }

    private func read(_ name: String) -> String {
        guard let data = FileManager.default.contents(atPath: (home as NSString).appendingPathComponent(name)) else {
            return ""
        }
        return String(decoding: data, as: UTF8.self)
    }

    private static let indexPage = """
        <!doctype html>
        <html><head><title>nginx backend</title></head>
        <body><h1>nginx backend</h1></body></html>

        """

    static func configuration(home: String, host: String, port: Int, files: String, uploads: String, delay: Double = 0.5) -> String {
        // nginx drops privileges to `nobody` when started as root, and `nobody` cannot enter the 0700 test
        // directory; stay root instead.
        let user = geteuid() == 0 ? "user root root;" : ""
        let statusLocations = statusCodes.map { "        location = /status/\($0) { return \($0); }" }
            .joined(separator: "\n")
        return """
            # Generated by SallyportTesting.Nginx.
            daemon off;
            master_process on;
            worker_processes 1;
            \(user)
            pid \(home)/nginx.pid;
            error_log \(home)/error.log notice;
            load_module \(echoModule);

            events {
                worker_connections 1024;
            }

            http {
                types {
                    text/html html;
                    text/plain txt;
                    application/json json;
                }
                default_type application/octet-stream;
                sendfile on;
                keepalive_requests 100000;
                server_tokens off;

                log_format sallyport '$request_method $request_uri $status $body_bytes_sent '
                                     'xff="$http_x_forwarded_for" xfp="$http_x_forwarded_proto" '
                                     'xfh="$http_x_forwarded_host" host="$host"';
                access_log \(home)/access.log sallyport;

                client_body_temp_path \(home)/tmp/body;
                proxy_temp_path \(home)/tmp/proxy;
                fastcgi_temp_path \(home)/tmp/fastcgi;
                uwsgi_temp_path \(home)/tmp/uwsgi;
                scgi_temp_path \(home)/tmp/scgi;

                server {
                    listen \(host):\(port);
                    server_name _;
                    root \(home)/www;

                    location = / {
                        try_files /index.html =404;
                    }
                    location /files/ {
                        alias \(files)/;
                    }
                    location /slow/ {
                        alias \(files)/;
                        limit_rate 1m;
                    }
                    location /uploads/ {
                        alias \(uploads)/;
                        dav_methods PUT;
                        create_full_put_path on;
                        dav_access user:rw group:r all:r;
                        client_max_body_size 0;
                    }
                    location = /echo {
                        client_max_body_size 0;
                        client_body_buffer_size 1m;
                        echo_read_request_body;
                        echo_request_body;
                    }
                    location = /headers {
                        default_type text/plain;
                        echo -n $echo_client_request_headers;
                    }
                    # Challenge-response like Negotiate: 401 with `WWW-Authenticate: Example` until the request
                    # carries `Authorization: Example …`, then the request head.
                    location = /challenge {
                        default_type text/plain;
                        if ($http_authorization !~ "^Example ") {
                            add_header WWW-Authenticate "Example realm=test" always;
                            return 401 "challenge\n";
                        }
                        echo -n $echo_client_request_headers;
                    }
                    location = /connection {
                        default_type text/plain;
                        return 200 "$connection";
                    }
                    # A backend that tries to plant the relay's session cookie, next to a cookie of its own.
                    location = /plant {
                        default_type text/plain;
                        add_header Set-Cookie "__Host-sallyport-oidc=planted; Path=/; Secure; HttpOnly" always;
                        add_header Set-Cookie "__HOST-SALLYPORT-login-x=planted; Path=/; Secure" always;
                        add_header Set-Cookie "theme=dark; Path=/" always;
                        return 200 "planted";
                    }
                    # Answers after half a second, nothing sent before: a request a connector holds in flight.
                    location = /delay {
                        default_type text/plain;
                        echo_sleep \(delay);
                        echo "delayed $arg_id";
                    }
            \(statusLocations)
                }
            }

            """
    }
}
