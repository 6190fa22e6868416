/// Samepage's release: `samepaged --version`, `samepage --version`, the `version` command and
/// the Debian package (packaging/build-deb.sh reads it from `samepaged --version`).
public enum SamepageRelease {
    public static let version = "0.1.0"
}
