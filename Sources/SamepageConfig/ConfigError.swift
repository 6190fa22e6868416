/// A problem with a configuration or policy file, located as precisely as the file allows.
///
/// Every error names its file. An error about a key, a section or a syntax error also carries
/// the 1-based line (and column) where it is; an error about the file as a whole (it cannot
/// be read, it is too large) has no line.
///
/// Its description is the form compilers use, so that editors and log readers can jump to it:
///
/// ```
/// /etc/samepage/guests.d/web1.toml:3: max_pause_ms = 5000 is out of range: expected 1 to 1000
/// /etc/samepage/samepaged.toml: cannot open: No such file or directory
/// ```
public struct ConfigError: Error, Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The file, as the caller named it (a path, or a label for text that came from elsewhere).
    public var file: String
    /// The 1-based line of the offending key, section or syntax error; nil for the whole file.
    public var line: Int?
    /// The 1-based column (in Unicode scalars) on `line`, where known.
    public var column: Int?
    /// What is wrong, without the location.
    public var message: String

    /// Creates an error about `file`, at `line` and `column` when they are known.
    public init(file: String, line: Int? = nil, column: Int? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    /// `FILE:LINE: message`, or `FILE: message` when the error has no line.
    public var description: String {
        if let line {
            return "\(file):\(line): \(message)"
        }
        return "\(file): \(message)"
    }
}

extension ConfigError: Comparable {
    /// Orders errors by file, then line (errors about the whole file first), then column.
    public static func < (lhs: ConfigError, rhs: ConfigError) -> Bool {
        if lhs.file != rhs.file { return lhs.file < rhs.file }
        let leftLine = lhs.line ?? 0
        let rightLine = rhs.line ?? 0
        if leftLine != rightLine { return leftLine < rightLine }
        let leftColumn = lhs.column ?? 0
        let rightColumn = rhs.column ?? 0
        if leftColumn != rightColumn { return leftColumn < rightColumn }
        return lhs.message < rhs.message
    }
}
