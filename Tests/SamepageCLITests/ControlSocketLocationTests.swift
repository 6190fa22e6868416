import SamepageCLI
import SamepageConfig
import Testing
import TestSupport

/// --socket > SAMEPAGE_SOCKET > the configuration file's control.socket > the built-in path.
@Suite struct ControlSocketLocationTests {
    @Test("Each source wins over those after it")
    func precedence() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("samepaged.toml", "[control]\nsocket = \"/srv/file.sock\"\n")
        let config = directory.file("samepaged.toml")
        let environment = ["SAMEPAGE_SOCKET": "/srv/env.sock", "SAMEPAGE_CONFIG": config]

        let option = try ControlSocketLocation.resolve(
            socketOption: "/srv/option.sock", configOption: nil, environment: environment, defaultConfig: config)
        #expect(option == ControlSocketLocation(path: "/srv/option.sock", origin: .option))

        let variable = try ControlSocketLocation.resolve(
            socketOption: nil, configOption: nil, environment: environment, defaultConfig: config)
        #expect(variable == ControlSocketLocation(path: "/srv/env.sock", origin: .environment))

        // An empty SAMEPAGE_SOCKET is as good as none.
        let file = try ControlSocketLocation.resolve(
            socketOption: nil, configOption: nil, environment: ["SAMEPAGE_SOCKET": ""],
            defaultConfig: config)
        #expect(file == ControlSocketLocation(path: "/srv/file.sock", origin: .configuration(config)))

        let missing = directory.file("none.toml")
        let builtIn = try ControlSocketLocation.resolve(
            socketOption: nil, configOption: nil, environment: [:], defaultConfig: missing)
        #expect(builtIn == ControlSocketLocation(path: "/run/samepage/samepaged.sock", origin: .builtIn))
    }

    @Test("--config, else SAMEPAGE_CONFIG, names the file instead of the default one")
    func namedFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("a.toml", "[control]\nsocket = \"/srv/a.sock\"\n")
        try directory.write("b.toml", "[control]\nsocket = \"/srv/b.sock\"\n")
        let a = directory.file("a.toml")
        let b = directory.file("b.toml")
        let fromOption = try ControlSocketLocation.resolve(
            socketOption: nil, configOption: a, environment: ["SAMEPAGE_CONFIG": b], defaultConfig: "/nonexistent")
        #expect(fromOption.path == "/srv/a.sock")
        let fromVariable = try ControlSocketLocation.resolve(
            socketOption: nil, configOption: nil, environment: ["SAMEPAGE_CONFIG": b], defaultConfig: "/nonexistent")
        #expect(fromVariable.path == "/srv/b.sock")
    }

    @Test("A named file that is missing, and a file that is invalid, are errors that name the file")
    func errors() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let missing = directory.file("missing.toml")
        #expect(throws: ConfigError(file: missing, message: "cannot open: No such file or directory")) {
            try ControlSocketLocation.resolve(socketOption: nil, configOption: missing, environment: [:])
        }
        try directory.write("samepaged.toml", "[control]\nsocket = 7\n")
        let invalid = directory.file("samepaged.toml")
        let error = #expect(throws: ConfigError.self) {
            try ControlSocketLocation.resolve(socketOption: nil, configOption: nil, environment: [:], defaultConfig: invalid)
        }
        #expect(error?.file == invalid)
        #expect(error?.line == 2)
    }
}

/// Guest names for the shell.
@Suite struct GuestNameCompletionTests {
    @Test("--socket and --config are read from the words being completed, the last one given")
    func options() {
        let words = ["samepage", "--socket", "/a.sock", "dominfo", "--socket=/b.sock", "--config", "/c.toml", "w"]
        #expect(GuestNameCompletion.option("--socket", in: words) == "/b.sock")
        #expect(GuestNameCompletion.option("--config", in: words) == "/c.toml")
        #expect(GuestNameCompletion.option("--socket", in: ["samepage", "dominfo", "--socket"]) == nil)
    }

    @Test("Names that start with the prefix, sorted, once each")
    func matching() {
        #expect(GuestNameCompletion.names(["web-2", "db", "web-1", "web-1"], matching: "web") == ["web-1", "web-2"])
        #expect(GuestNameCompletion.names(["web-2", "db"], matching: "") == ["db", "web-2"])
    }

    @Test("No daemon: no candidates, and no error")
    func noDaemon() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let candidates = GuestNameCompletion.candidates(
            words: ["samepage", "dominfo", ""], prefix: "",
            environment: ["SAMEPAGE_SOCKET": directory.file("samepaged.sock")])
        #expect(candidates.isEmpty)
        // A configuration file that cannot be read is silent too.
        let unreadable = GuestNameCompletion.candidates(
            words: ["samepage", "--config", directory.file("none.toml"), "dominfo", ""], prefix: "", environment: [:])
        #expect(unreadable.isEmpty)
    }
}
