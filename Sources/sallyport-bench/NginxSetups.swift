import Foundation
import SallyportPKI
import SallyportTesting

/// An nginx of the benchmark: its own prefix directory, configuration and worker count.
final class BenchNginx: @unchecked Sendable {
    let port: Int
    let home: String
    private let process: ChildProcess

    private init(port: Int, home: String, process: ChildProcess) {
        self.port = port
        self.home = home
        self.process = process
    }

    deinit {
        // As the harness's Nginx: when the benchmark fails before stop(), the workers must not outlive it.
        if self.process.isRunning {
            let workers = self.process.childPIDs()
            self.process.signal(SIGKILL)
            workers.forEach { kill($0, SIGKILL) }
        }
    }

    /// Starts nginx in `directory/name` with `servers` (server blocks; `PORT` is replaced by the port).
    static func start(directory: TestDirectory, name: String, accessLog: Bool, modules: [String] = [], servers: String) async throws -> BenchNginx {
        let home = directory.file(name)
        for subdirectory in ["tmp", "logs"] {
            try FileManager.default.createDirectory(atPath: "\(home)/\(subdirectory)", withIntermediateDirectories: true)
        }
        let port = try FreePort.next()
        // The request bodies nginx keeps (the upload sink) go to memory-backed /dev/shm, not the disk.
        let bodies = "\(Bench.memoryScratch)/\(name)-bodies"
        // nginx's workers run as nobody when started by root: they must be able to write there.
        try FileManager.default.createDirectory(atPath: bodies, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o1777])
        let configuration = """
            \(modules.map { "load_module \($0);" }.joined(separator: "\n"))
            worker_processes auto;
            daemon off;
            pid \(home)/nginx.pid;
            error_log \(home)/logs/error.log warn;
            events { worker_connections 16384; }
            http {
                default_type application/octet-stream;
                sendfile on;
                tcp_nopush on;
                keepalive_requests 1000000;
                keepalive_timeout 120s;
                client_max_body_size 0;
                client_body_temp_path \(bodies);
                proxy_temp_path \(home)/tmp/proxy;
                fastcgi_temp_path \(home)/tmp/fastcgi;
                uwsgi_temp_path \(home)/tmp/uwsgi;
                scgi_temp_path \(home)/tmp/scgi;
                access_log \(accessLog ? "\(home)/logs/access.log" : "off");
                http2_max_concurrent_streams 128;
            \(servers.replacingOccurrences(of: "PORT", with: "\(port)"))
            }
            """
        let file = try directory.write("\(name)/nginx.conf", configuration)
        let process = try ChildProcess.launch(
            "/usr/sbin/nginx", ["-p", home + "/", "-e", "\(home)/logs/error.log", "-c", file], logFile: "\(home)/logs/stdout.log", currentDirectory: home
        )
        let nginx = BenchNginx(port: port, home: home, process: process)
        for _ in 0..<100 {
            if (try? Command.run("/usr/bin/curl", ["-sk", "-o", "/dev/null", "http://127.0.0.1:\(port)/"]))?.status == 0
                || (try? Command.run("/usr/bin/curl", ["-sk", "-o", "/dev/null", "https://127.0.0.1:\(port)/"]))?.status == 0
            {
                return nginx
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        await nginx.stop()
        throw BenchError("nginx \(name) did not start: \((try? String(contentsOfFile: "\(home)/logs/error.log", encoding: .utf8)) ?? "")")
    }

    func stop() async {
        let workers = self.process.childPIDs()
        await self.process.terminate(timeout: .seconds(5))
        for worker in workers where FileManager.default.fileExists(atPath: "/proc/\(worker)") { kill(worker, SIGKILL) }
    }
}

/// The nginx side of the benchmark: the backend every setup reaches, nginx as a one-hop reverse proxy, and
/// nginx as the structural twin of Sallyport: an edge that speaks mutual TLS to an inner nginx, which reaches
/// the backend.
struct NginxSetups {
    let backend: BenchNginx
    let oneHop: BenchNginx
    let edge: BenchNginx
    let inner: BenchNginx
    /// The CA of the edges' certificates (curl's `--cacert`).
    let ca: String

    /// Files the backend serves under `/files/`: `1k`, `1m`, and `1g` (sparse, on /dev/shm).
    static let smallFile = "1k"
    static let largeFile = "1m"
    static let hugeFile = "1g"

    static func start(directory: TestDirectory, pki: ThrowawayPKI, files: String) async throws -> NginxSetups {
        let echoModule = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
        // The backend: static files, a sink that reads a request body and answers 204, and /slow that answers
        // after 30 s (open streams).
        let backend = try await BenchNginx.start(
            directory: directory, name: "backend", accessLog: false, modules: [echoModule],
            servers: """
                server {
                    listen 127.0.0.1:PORT;
                    location /files/ { alias \(files)/; }
                    location = /sink { echo_read_request_body; echo_status 204; echo ""; }
                    location = /slow { echo_sleep 30; echo done; }
                    location = / { return 200 "backend\\n"; }
                }
                """
        )
        let upstream = { (name: String, port: Int) in
            "upstream \(name) { server 127.0.0.1:\(port); keepalive 128; keepalive_requests 1000000; }"
        }
        let proxying = """
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    proxy_set_header Host $host;
                    proxy_set_header X-Forwarded-For $remote_addr;
                    proxy_set_header X-Forwarded-Proto $scheme;
                    proxy_request_buffering off;
                    proxy_max_temp_file_size 0;
                    proxy_read_timeout 60s;
            """
        let tls = """
                    ssl_certificate \(pki.publicCertificate);
                    ssl_certificate_key \(pki.publicKey);
                    ssl_session_cache shared:public:10m;
            """
        let oneHop = try await BenchNginx.start(
            directory: directory, name: "one-hop", accessLog: true,
            servers: """
                \(upstream("backend", backend.port))
                server {
                    listen 127.0.0.1:PORT ssl http2;
                \(tls)
                    location / {
                \(proxying)
                        proxy_pass http://backend;
                    }
                }
                """
        )
        // The inner hop answers only clients with a certificate of the tunnel CA, as a connector's relay does.
        let inner = try await BenchNginx.start(
            directory: directory, name: "inner", accessLog: true,
            servers: """
                \(upstream("backend", backend.port))
                server {
                    listen 127.0.0.1:PORT ssl;
                    ssl_certificate \(pki.tunnelCertificate);
                    ssl_certificate_key \(pki.tunnelKey);
                    ssl_client_certificate \(pki.tunnelCA);
                    ssl_verify_client on;
                    location / {
                \(proxying)
                        proxy_pass http://backend;
                    }
                }
                """
        )
        let edge = try await BenchNginx.start(
            directory: directory, name: "two-hop-edge", accessLog: true,
            servers: """
                upstream inner { server 127.0.0.1:\(inner.port); keepalive 128; keepalive_requests 1000000; }
                server {
                    listen 127.0.0.1:PORT ssl http2;
                \(tls)
                    location / {
                \(proxying)
                        proxy_pass https://inner;
                        proxy_ssl_certificate \(pki.connectorCertificate);
                        proxy_ssl_certificate_key \(pki.connectorKey);
                        proxy_ssl_trusted_certificate \(pki.tunnelCA);
                        proxy_ssl_verify on;
                        proxy_ssl_name localhost;
                        proxy_ssl_session_reuse on;
                    }
                }
                """
        )
        return NginxSetups(backend: backend, oneHop: oneHop, edge: edge, inner: inner, ca: pki.publicCA)
    }

    func stop() async {
        for nginx in [self.oneHop, self.edge, self.inner, self.backend] { await nginx.stop() }
    }
}
