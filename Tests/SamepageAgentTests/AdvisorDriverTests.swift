import LinuxSystem
import Logging
@testable import SamepageAgent
import SamepageCore
import SamepageModel
import Testing

/// The advisor's driver over a real engine (no slots), its clocks fed by hand. The expected
/// `pages_to_scan` is ScanTimeAdvisorTests' `firstScanStartsTheAverageFromZero`, worked out
/// there from ksm.c's formulas: a first scan of 400 s at 200 s of CPU, 500 pages a batch,
/// target 200 s, max_cpu 70, gives 300.
@Suite("The advisor's driver") struct AdvisorDriverTests {
    static func engine(_ mode: AdvisorMode) throws -> Engine {
        try Engine(tunables: Tunables(
            pagesToScan: 500, advisorMode: mode, advisorTargetScanTime: 200, advisorMaxCPU: 70,
            advisorMinPagesToScan: 1, advisorMaxPagesToScan: 30_000))
    }

    static func report(pages: Int, fullScans: Int) -> BatchReport {
        var report = BatchReport()
        report.pagesScanned = pages
        report.fullScansCompleted = fullScans
        return report
    }

    @Test func aFullScanSetsPagesToScanInScanTimeMode() throws {
        let engine = try Self.engine(.scanTime)
        var driver = AdvisorDriver(logger: Logger(label: "test"))
        let t0 = ContinuousClock.now
        // The first batch only starts the clocks.
        let started = driver.measureBatch(Self.report(pages: 100, fullScans: 0), engine: engine, now: t0, cpuTime: { .zero })
        #expect(!started)
        #expect(driver.lastFullScan == nil)
        #expect(engine.tunables.pagesToScan == 500)
        // 400 s later, 200 s of CPU later, the full scan ends.
        let completed = driver.measureBatch(
            Self.report(pages: 100, fullScans: 1), engine: engine, now: t0 + .seconds(400), cpuTime: { .seconds(200) })
        #expect(completed)
        #expect(driver.lastFullScan == FullScanTime(seconds: 400, cpuPercent: 50))
        #expect(engine.tunables.pagesToScan == 300)
    }

    @Test func withTheAdvisorOffTheScanIsMeasuredOnly() throws {
        let engine = try Self.engine(.off)
        var driver = AdvisorDriver(logger: Logger(label: "test"))
        let t0 = ContinuousClock.now
        _ = driver.measureBatch(Self.report(pages: 100, fullScans: 0), engine: engine, now: t0, cpuTime: { .zero })
        let completed = driver.measureBatch(
            Self.report(pages: 100, fullScans: 1), engine: engine, now: t0 + .seconds(400), cpuTime: { .seconds(100) })
        #expect(completed)
        #expect(driver.lastFullScan == FullScanTime(seconds: 400, cpuPercent: 25))
        #expect(engine.tunables.pagesToScan == 500)
    }

    @Test func aFailingCPUClockMeasuresNothing() throws {
        let engine = try Self.engine(.scanTime)
        var driver = AdvisorDriver(logger: Logger(label: "test"))
        let fails = { () throws(SystemError) -> Duration in throw SystemError(errno: .invalidArgument, operation: "clock_gettime") }
        let completed = driver.measureBatch(Self.report(pages: 100, fullScans: 1), engine: engine, cpuTime: fails)
        #expect(!completed)
        #expect(driver.lastFullScan == nil)
        #expect(engine.tunables.pagesToScan == 500)
    }

    @Test func aChangeOfModeStartsTheAdvisorAfresh() throws {
        let engine = try Self.engine(.scanTime)
        var driver = AdvisorDriver(logger: Logger(label: "test"))
        let t0 = ContinuousClock.now
        _ = driver.measureBatch(Self.report(pages: 100, fullScans: 0), engine: engine, now: t0, cpuTime: { .zero })
        _ = driver.measureBatch(Self.report(pages: 100, fullScans: 1), engine: engine, now: t0 + .seconds(400), cpuTime: { .seconds(200) })
        #expect(driver.advisor.previousScanMilliseconds == 400_000)
        driver.apply(Tunables(pagesToScan: 500, advisorMode: .off), to: engine)
        #expect(engine.tunables.advisorMode == .off)
        #expect(driver.advisor.previousScanMilliseconds == nil)
    }
}
