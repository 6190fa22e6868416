import SamepageControl
import SamepageModel

/// Guest names for shell completion (`samepage dominfo <TAB>`), asked of the daemon.
///
/// The shell runs `samepage` to complete a word; this asks samepaged for `list` over the
/// socket the command line being completed would use (its `--socket` or `--config`, else
/// the environment and the configuration file, as ``ControlSocketLocation`` says) and waits
/// at most ``timeout``. Completion must never get in the way: a daemon that is not running,
/// refuses, is slow or answers nonsense, and a configuration file that cannot be read, all
/// give no candidates, silently.
public enum GuestNameCompletion {
    /// The longest the shell waits for the daemon's answer.
    public static let timeout: Duration = .milliseconds(500)

    /// The guest names that start with `prefix`, sorted; empty on any failure.
    ///
    /// - Parameters:
    ///   - words: the words of the command line being completed, as the shell gives them.
    ///   - prefix: the part of the word being completed before the cursor.
    ///   - environment: the process's environment.
    public static func candidates(words: [String], prefix: String, environment: [String: String]) -> [String] {
        guard
            let location = try? ControlSocketLocation.resolve(
                socketOption: option("--socket", in: words), configOption: option("--config", in: words),
                environment: environment),
            let client = try? ControlClient(path: location.path, timeout: timeout),
            case .guests(let guests)? = try? client.call(.list)
        else { return [] }
        client.close()
        return names(guests.map(\.name), matching: prefix)
    }

    /// The names that start with `prefix`, sorted, without repeats.
    public static func names(_ names: [String], matching prefix: String) -> [String] {
        Set(names.filter { $0.hasPrefix(prefix) }).sorted()
    }

    /// The value of `--name VALUE` or `--name=VALUE` among `words`, the last one given.
    public static func option(_ name: String, in words: [String]) -> String? {
        var value: String?
        for (i, word) in words.enumerated() {
            if word == name, i + 1 < words.count {
                value = words[i + 1]
            } else if word.hasPrefix(name + "=") {
                value = String(word.dropFirst(name.count + 1))
            }
        }
        return value
    }
}
