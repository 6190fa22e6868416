import Logging
import Synchronization

/// A log handler that keeps messages, so tests can assert what the agent logged.
final class CapturedLog: Sendable {
    let messages = Mutex<[String]>([])

    var all: [String] { messages.withLock { $0 } }

    func logger() -> Logger {
        var logger = Logger(label: "samepage.test") { _ in Handler(log: self) }
        logger.logLevel = .info
        return logger
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            log.messages.withLock { $0.append("\(event.level) \(event.message)") }
        }
    }
}
