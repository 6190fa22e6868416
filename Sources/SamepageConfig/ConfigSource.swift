import Glibc

/// The bytes of one configuration or policy file, checked to be text a TOML parser may see.
///
/// Files are read with plain system calls so that every failure carries `errno`'s message,
/// and only regular files are read (a FIFO named `x.toml` must not block a reload).
struct ConfigSource {
    /// The largest file accepted: configuration and policy files are a few hundred bytes.
    static let maximumSize = 64 * 1024

    /// How the file is named in errors.
    let file: String
    /// The text, valid UTF-8 without NUL characters.
    let text: String

    /// Checks raw bytes: size (at most `limit`), UTF-8, no NUL. Errors name the line of the
    /// offending byte.
    init(bytes: some Collection<UInt8>, file: String, limit: Int = maximumSize) throws(ConfigError) {
        self.file = file
        guard bytes.count <= limit else {
            throw ConfigError(
                file: file,
                message: "file is too large (\(bytes.count) bytes; the limit is \(limit / 1024) KiB)"
            )
        }
        let bytes = Array(bytes)
        if let offset = Self.firstInvalidUTF8(in: bytes) {
            let (line, column) = Self.position(of: offset, in: bytes)
            throw ConfigError(file: file, line: line, column: column, message: "file is not valid UTF-8 text")
        }
        if let offset = bytes.firstIndex(of: 0) {
            let (line, column) = Self.position(of: offset, in: bytes)
            throw ConfigError(file: file, line: line, column: column, message: "file contains a NUL character")
        }
        self.text = String(decoding: bytes, as: UTF8.self)
    }

    /// Reads a regular file, at most `limit` bytes of it.
    init(path: String, limit: Int = maximumSize) throws(ConfigError) {
        let bytes = try Self.readFile(path: path, limit: limit)
        try self.init(bytes: bytes, file: path, limit: limit)
    }

    /// The 1-based line and column (in scalars, counting a malformed byte as one) of `offset`.
    static func position(of offset: Int, in bytes: [UInt8]) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        for byte in bytes[..<min(offset, bytes.count)] {
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1
            }
        }
        return (line, column)
    }

    /// The offset of the first byte that does not start a well-formed UTF-8 scalar, if any.
    private static func firstInvalidUTF8(in bytes: [UInt8]) -> Int? {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar):
                offset += scalar.count
            case .emptyInput:
                return nil
            case .error:
                return offset
            }
        }
    }

    private static func readFile(path: String, limit maximumSize: Int) throws(ConfigError) -> [UInt8] {
        func failure(_ what: String, _ code: Int32) -> ConfigError {
            ConfigError(file: path, message: "\(what): \(String(cString: strerror(code)))")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw failure("cannot open", errno) }
        defer { close(fd) }

        var status = stat()
        guard fstat(fd, &status) == 0 else { throw failure("cannot stat", errno) }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            let kind = (status.st_mode & S_IFMT) == S_IFDIR ? "a directory" : "not a regular file"
            throw ConfigError(file: path, message: "cannot read: \(kind)")
        }
        guard Int(status.st_size) <= maximumSize else {
            throw ConfigError(
                file: path,
                message: "file is too large (\(status.st_size) bytes; the limit is \(maximumSize / 1024) KiB)"
            )
        }

        // Read one byte past the limit, so that a file that grew since fstat is still caught.
        var bytes = [UInt8](repeating: 0, count: maximumSize + 1)
        var count = 0
        while count < bytes.count {
            let n = bytes.withUnsafeMutableBytes { buffer in
                read(fd, buffer.baseAddress! + count, buffer.count - count)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("cannot read", errno)
            }
            if n == 0 { break }
            count += n
        }
        guard count <= maximumSize else {
            throw ConfigError(file: path, message: "file is too large (the limit is \(maximumSize / 1024) KiB)")
        }
        bytes.removeSubrange(count...)
        return bytes
    }
}
