#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import NIOPosix
import SallyportPluginAPI
import Synchronization

/// The plugin host: a process of its own (`sallyport plugin-host --library FILE`, started by the connector) that
/// loads one plugin library and runs its handlers for the connector, so that a plugin that crashes, aborts or
/// blocks every thread takes down only this process and the requests it was working on.
///
/// The connector's end of the protocol socket is this process's standard input. Standard output is pointed at
/// standard error (which the connector reads and logs), so a plugin's `print` cannot corrupt the protocol.
public enum PluginHostProcess {
    /// Runs until the connector closes the socket; returns the exit status.
    public static func run(library: String) async -> Int32 {
        let socket = dup(0)
        let null = open("/dev/null", O_RDONLY)
        if null >= 0 { dup2(null, 0); close(null) }
        dup2(2, 1)
        guard socket >= 0 else {
            FileHandle.standardErrorWrite("sallyport plugin-host: no protocol socket on standard input; the connector starts this command itself\n")
            return 2
        }
        let channel: HostChannel
        do {
            channel = try await HostChannel.open(socket: socket, group: MultiThreadedEventLoopGroup.singleton)
        } catch {
            FileHandle.standardErrorWrite("sallyport plugin-host: cannot use the protocol socket: \(error)\n")
            return 2
        }
        do {
            return try await channel.executeThenClose { inbound, outbound in
                let (messages, send) = AsyncStream<HostProtocol.ToConnector>.makeStream()
                return try await withThrowingTaskGroup(of: Int32?.self) { group in
                    // One writer: replies, log lines and metrics leave in the order they were produced.
                    group.addTask {
                        for await message in messages {
                            try await outbound.write(try HostProtocol.encode(message, allocator: channel.channel.allocator))
                        }
                        return nil
                    }
                    group.addTask {
                        let host: Host
                        switch PluginLoader.loadLibrary(path: library) {
                        case .failure(let failure):
                            send.yield(.refused(reason: failure.reason))
                            send.finish()
                            return 3
                        case .success(let registration):
                            host = Host(registration: registration, send: send)
                            send.yield(.hello(plugin: registration.name, version: registration.version, handlers: host.handlerInfo))
                        }
                        for try await frame in inbound {
                            let message: HostProtocol.ToHost
                            do {
                                message = try HostProtocol.decode(HostProtocol.ToHost.self, from: frame)
                            } catch {
                                FileHandle.standardErrorWrite("sallyport plugin-host: a message from the connector could not be read: \(error)\n")
                                break
                            }
                            host.handle(message)
                        }
                        send.finish()
                        return 0
                    }
                    var status: Int32 = 0
                    while let result = try await group.next() {
                        if let result { status = result }
                    }
                    return status
                }
            }
        } catch {
            FileHandle.standardErrorWrite("sallyport plugin-host: the connection to the connector failed: \(error)\n")
            return 1
        }
    }

    /// The handlers of the loaded plugin, by the connector's id.
    final class Host: Sendable {
        let factories: [String: any SSOHandlerFactory]
        let handlerInfo: [HostProtocol.HandlerInfo]
        let send: AsyncStream<HostProtocol.ToConnector>.Continuation
        let handlers = Mutex<[UInt64: any SSOHandler]>([:])
        /// The plugin's own threads for `runBlocking`: a plugin that blocks them waits only for itself.
        let pool: NIOThreadPool

        init(registration: PluginRegistration, send: AsyncStream<HostProtocol.ToConnector>.Continuation) {
            var factories: [String: any SSOHandlerFactory] = [:]
            for factory in registration.factories where factories[factory.name] == nil { factories[factory.name] = factory }
            self.factories = factories
            self.handlerInfo = registration.factories.map { .init(name: $0.name, requiresIdentity: $0.requiresIdentity, maximumAttempts: $0.maximumAttempts) }
            self.send = send
            self.pool = NIOThreadPool(numberOfThreads: 4)
            self.pool.start()
        }

        func handle(_ message: HostProtocol.ToHost) {
            switch message {
            case .make(let id, let name, let app, let settings, let logLevel):
                self.make(id: id, name: name, app: app, settings: settings, logLevel: logLevel)
            case .release(let id):
                guard let handler = self.handlers.withLock({ $0.removeValue(forKey: id) }) else { return }
                Task { await handler.shutdown() }
            case .prepare(let call, let id, let request, let identity, let attempt):
                guard let handler = self.handlers.withLock({ $0[id] }) else {
                    self.send.yield(.unknownHandler(call: call))
                    return
                }
                Task {
                    var request = request
                    let decision = await handler.prepare(&request, identity: identity, attempt: attempt)
                    self.send.yield(.prepared(call: call, decision: decision, request: request))
                }
            case .inspect(let call, let id, let response, let request, let identity, let attempt):
                guard let handler = self.handlers.withLock({ $0[id] }) else {
                    self.send.yield(.unknownHandler(call: call))
                    return
                }
                Task {
                    var response = response
                    let decision = await handler.inspect(&response, request: request, identity: identity, attempt: attempt)
                    self.send.yield(.inspected(call: call, decision: decision, response: response))
                }
            case .ping(let nonce):
                // Through the concurrency pool on purpose: a host whose threads are all blocked does not answer.
                Task { self.send.yield(.pong(nonce)) }
            }
        }

        /// Makes a handler at once, in message order: calls for it that follow find it.
        private func make(id: UInt64, name: String, app: String, settings: SettingsMap, logLevel: LogLevel) {
            guard let factory = self.factories[name] else {
                self.send.yield(.makeFailed(id: id, errors: [], message: "this plugin has no handler \"\(name)\""))
                return
            }
            let send = self.send
            let pool = self.pool
            let context = HandlerContext(
                appName: app, settings: settings,
                logger: PluginLogger { level, message, metadata in
                    if level >= logLevel { send.yield(.log(handler: id, level: level, message: message, metadata: metadata)) }
                },
                metrics: PluginMetrics(
                    counter: { name, dimensions, amount in send.yield(.counter(handler: id, name: name, dimensions: dimensions, amount: amount)) },
                    duration: { name, dimensions, seconds in send.yield(.duration(handler: id, name: name, dimensions: dimensions, seconds: seconds)) }
                ),
                blockingExecutor: { work in pool.submit { _ in work() } }
            )
            do {
                let handler = try factory.makeHandler(context: context)
                self.handlers.withLock { $0[id] = handler }
                self.send.yield(.made(id: id))
            } catch let error as SettingsError {
                self.send.yield(.makeFailed(id: id, errors: [error], message: nil))
            } catch let errors as SettingsErrors {
                self.send.yield(.makeFailed(id: id, errors: errors.errors, message: nil))
            } catch {
                self.send.yield(.makeFailed(id: id, errors: [], message: "\(error)"))
            }
        }
    }
}

extension FileHandle {
    static func standardErrorWrite(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
