// The syntax of the configuration's values that are neither TOML types nor ranges: paths,
// libvirt URIs, group names, octal modes. Stateless checks over no stored property, shared
// by the sections' readers.

extension DaemonConfiguration {
    /// `sun_path` holds 108 bytes, the last of them the terminating NUL.
    static let maximumSocketPathLength = 107

    static func pathProblem(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return "is not an absolute path" }
        return nil
    }

    static func isLibvirtURI(_ uri: String) -> Bool {
        guard let colon = uri.firstIndex(of: ":") else { return false }
        let scheme = uri[..<colon].unicodeScalars
        guard let first = scheme.first, ("a"..."z").contains(first) || ("A"..."Z").contains(first) else { return false }
        return scheme.allSatisfy { scalar in
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", "+", ".", "-": return true
            default: return false
            }
        } && !uri.unicodeScalars.contains { $0.value < 0x21 || $0.value == 0x7F }
    }

    static func isGroupName(_ group: String) -> Bool {
        let scalars = Array(group.unicodeScalars)
        guard !scalars.isEmpty, scalars.count <= 32, scalars[0] != "-" else { return false }
        return scalars.enumerated().allSatisfy { index, scalar in
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", ".", "_", "-": return true
            case "$": return index == scalars.count - 1
            default: return false
            }
        }
    }

    struct ModeProblem: Error {
        var reason: String
    }

    static func parseMode(_ text: String) -> Result<UInt32, ModeProblem> {
        let digits = text.unicodeScalars
        guard (3...4).contains(digits.count), digits.allSatisfy({ ("0"..."7").contains($0) }),
            let mode = UInt32(text, radix: 8)
        else {
            return .failure(ModeProblem(reason: "is not a file mode: expected 3 or 4 octal digits, like \"0600\""))
        }
        guard mode <= 0o777 else {
            return .failure(ModeProblem(reason: "sets setuid, setgid or sticky bits, which a socket does not take"))
        }
        guard mode & 0o007 == 0 else {
            return .failure(ModeProblem(reason: "gives other users access: use a group instead"))
        }
        guard mode & 0o600 == 0o600 else {
            return .failure(ModeProblem(reason: "must give the owner read and write access (0600)"))
        }
        return .success(mode)
    }
}
