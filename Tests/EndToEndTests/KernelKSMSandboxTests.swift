import Foundation
import Glibc
import KernelKSM
import Testing

/// samepaged as the packaged unit's sandbox would run it, recreated with a mount namespace
/// (systemd is not PID 1 on the test machine): `ProtectKernelTunables=yes` makes /sys read-only
/// for the service, and `ReadWritePaths=/sys/kernel/mm/ksm` makes ksmd's knobs writable again.
@Suite("End to end: [kernel_ksm] inside the unit's sandbox", .serialized)
struct KernelKSMSandboxEndToEndTests {
    /// Runs samepaged in a mount namespace of its own where `mounts` (shell commands) ran first.
    private func startSandboxed(_ daemon: DaemonProcess, mounts: String) throws -> pid_t {
        let command = "\(mounts) && exec \(DaemonProcess.samepaged) " + daemon.arguments.map { "'\($0)'" }.joined(separator: " ")
        return try TestHost.spawn("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c", command], output: daemon.logFile)
    }

    @Test("A read-only ksm directory makes samepaged refuse to start, saying why; ReadWritePaths lets it govern and put the host's settings back")
    func sandbox() throws {
        let ksm = KernelKSM()
        let hostSettings = try ksm.settings()
        defer { _ = ksm.apply(hostSettings) }
        let config = daemonConfig + "\n[kernel_ksm]\nenabled = true\ntrust_group = \"t\"\n"

        // ProtectKernelTunables=yes alone: /sys/kernel/mm/ksm read-only.
        let refused = try DaemonProcess(config: config)
        let pid = try startSandboxed(refused, mounts: "mount --bind -o ro /sys/kernel/mm/ksm /sys/kernel/mm/ksm")
        var status: Int32 = -1
        #expect(eventually(timeout: .seconds(30)) {
            var raw: Int32 = 0
            guard waitpid(pid, &raw, WNOHANG) == pid else { return false }
            status = (raw & 0x7F) == 0 ? (raw >> 8) & 0xFF : 128 + (raw & 0x7F)
            return true
        }, "samepaged did not stop:\n\(refused.log)")
        #expect(status != 0)
        #expect(refused.log.contains("kernel_ksm: cannot write /sys/kernel/mm/ksm/run"), "\(refused.log.suffix(2000))")
        #expect(refused.log.contains("could not hold ksmd back"))
        #expect(try ksm.settings() == hostSettings)

        // With ReadWritePaths=/sys/kernel/mm/ksm: /sys read-only but ksmd's directory.
        let governing = try DaemonProcess(config: config)
        let daemonPID = try startSandboxed(
            governing, mounts: "mount --bind -o ro /sys /sys && mount --bind /sys/kernel/mm/ksm /sys/kernel/mm/ksm && mount -o remount,bind,rw /sys/kernel/mm/ksm")
        defer { kill(daemonPID, SIGKILL); _ = TestHost.wait(daemonPID) }
        #expect(eventually(timeout: .seconds(20)) { access(governing.socket, F_OK) == 0 }, "\(governing.log.suffix(2000))")
        #expect(eventually(timeout: .seconds(20)) { (try? governing.cli("ksm").output.contains("governed         yes")) == true },
                "\(governing.log.suffix(2000))")
        kill(daemonPID, SIGTERM)
        #expect(TestHost.wait(daemonPID) == 0)
        #expect(try ksm.settings() == hostSettings, "\(governing.log.suffix(2000))")
    }
}
