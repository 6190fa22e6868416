import Testing
@testable import SamepageCore

/// The scan-time advisor against values worked out by hand from ksm.c's formulas, in
/// milliseconds, integer divisions rounding down:
///
///     cpu%     = max(1, cpu_ms * 100 / scan_ms)
///     factor   = max(1, target_s * 100_000 / scan_ms)
///     change   = (70 * previous_change + 30 * max(1, scan_ms * 100 / previous_scan_ms)) / 100
///     pages    = pages_to_scan * 100 / factor * change / 100
///     per%     = max(1, pages_to_scan / cpu%)
///     pages    = min(max(min(pages, per% * max_cpu), per% * 10), max_pages)
///
/// Each test states its arithmetic; none takes an expected value from the advisor.
@Suite("The scan-time advisor") struct ScanTimeAdvisorTests {
    /// The kernel's knobs: target 200 s, max_cpu 70, max pages 30000; the advisor on.
    func knobs(pagesToScan: Int, maxCPU: Int = 70, maxPages: Int = 30_000) -> Tunables {
        Tunables(
            pagesToScan: pagesToScan, advisorMode: .scanTime, advisorTargetScanTime: 200, advisorMaxCPU: maxCPU,
            advisorMinPagesToScan: 1, advisorMaxPagesToScan: maxPages)
    }

    /// An advisor that has seen a scan of `previous` with the average change at 100%: the
    /// steady state after the warm-up.
    func settled(previousScanMilliseconds previous: Int) -> ScanTimeAdvisor {
        var advisor = ScanTimeAdvisor()
        advisor.previousScanMilliseconds = previous
        advisor.change = 100
        return advisor
    }

    @Test func firstScanStartsTheAverageFromZero() {
        var advisor = ScanTimeAdvisor()
        #expect(advisor.previousScanMilliseconds == nil && advisor.change == 0)
        // 500 pages a batch; a scan of 400 s at 200 s of CPU.
        // cpu% = 200000*100/400000 = 50; no previous scan, so previous = 400000.
        // factor = 200*100000/400000 = 50; change = (70*0 + 30*(400000*100/400000 = 100))/100 = 30.
        // pages = 500*100/50 = 1000, *30/100 = 300.
        // per% = 500/50 = 10: cap 10*70 = 700, floor 10*10 = 100: 300 stays; under 30000.
        let pages = advisor.fullScanCompleted(
            scanTime: .seconds(400), cpuTime: .seconds(200), tunables: knobs(pagesToScan: 500))
        #expect(pages == 300)
        #expect(advisor.previousScanMilliseconds == 400_000)
        #expect(advisor.change == 30)
    }

    @Test func theAverageClimbsOverTheNextScans() {
        var advisor = ScanTimeAdvisor()
        _ = advisor.fullScanCompleted(scanTime: .seconds(400), cpuTime: .seconds(200), tunables: knobs(pagesToScan: 500))
        // Second scan, 300 pages a batch: again 400 s, at 120 s of CPU.
        // cpu% = 120000*100/400000 = 30; factor = 50.
        // change = (70*30 + 30*100)/100 = (2100 + 3000)/100 = 51.
        // pages = 300*100/50 = 600, *51/100 = 306.
        // per% = 300/30 = 10: cap 700, floor 100: 306.
        let pages = advisor.fullScanCompleted(
            scanTime: .seconds(400), cpuTime: .seconds(120), tunables: knobs(pagesToScan: 300))
        #expect(pages == 306)
        #expect(advisor.change == 51)
    }

    @Test func aScanFasterThanTheTargetShrinksTheBatch() {
        var advisor = settled(previousScanMilliseconds: 50_000)
        // 1000 pages; 50 s (a quarter of the target) at 25 s of CPU.
        // cpu% = 25000*100/50000 = 50; factor = 200*100000/50000 = 400.
        // change = (70*100 + 30*(50000*100/50000 = 100))/100 = 100.
        // pages = 1000*100/400 = 250, *100/100 = 250.
        // per% = 1000/50 = 20: cap 1400, floor 200: 250.
        let pages = advisor.fullScanCompleted(
            scanTime: .seconds(50), cpuTime: .seconds(25), tunables: knobs(pagesToScan: 1000))
        #expect(pages == 250)
    }

    @Test func aScanSlowerThanTheTargetGrowsTheBatch() {
        var advisor = settled(previousScanMilliseconds: 400_000)
        // 1000 pages; 400 s (twice the target) at 80 s of CPU.
        // cpu% = 80000*100/400000 = 20; factor = 200*100000/400000 = 50; change 100.
        // pages = 1000*100/50 = 2000. per% = 1000/20 = 50: cap 3500, floor 500: 2000.
        let pages = advisor.fullScanCompleted(
            scanTime: .seconds(400), cpuTime: .seconds(80), tunables: knobs(pagesToScan: 1000))
        #expect(pages == 2000)
    }

    @Test func aScanLongerThanTheLastPushesFurther() {
        var advisor = settled(previousScanMilliseconds: 100_000)
        // 1000 pages; 200 s (the target, but twice the previous scan) at 100 s of CPU.
        // cpu% = 50; factor = 200*100000/200000 = 100.
        // change = (70*100 + 30*(200000*100/100000 = 200))/100 = (7000 + 6000)/100 = 130.
        // pages = 1000*100/100 = 1000, *130/100 = 1300. per% = 20: cap 1400, floor 200: 1300.
        let pages = advisor.fullScanCompleted(
            scanTime: .seconds(200), cpuTime: .seconds(100), tunables: knobs(pagesToScan: 1000))
        #expect(pages == 1300)
        #expect(advisor.change == 130)
        #expect(advisor.previousScanMilliseconds == 200_000)
    }

    @Test func theMaximumCPUCapsTheBatch() {
        // 1000 pages; 800 s (four times the target) at 400 s of CPU.
        // cpu% = 400000*100/800000 = 50; factor = 200*100000/800000 = 25; change 100.
        // pages = 1000*100/25 = 4000. per% = 1000/50 = 20.
        var advisor = settled(previousScanMilliseconds: 800_000)
        // max_cpu 70: cap 20*70 = 1400 < 4000; floor 200: 1400.
        #expect(advisor.fullScanCompleted(
            scanTime: .seconds(800), cpuTime: .seconds(400), tunables: knobs(pagesToScan: 1000)) == 1400)
        var lower = settled(previousScanMilliseconds: 800_000)
        // max_cpu 60: cap 20*60 = 1200.
        #expect(lower.fullScanCompleted(
            scanTime: .seconds(800), cpuTime: .seconds(400), tunables: knobs(pagesToScan: 1000, maxCPU: 60)) == 1200)
    }

    @Test func theMinimumCPUFloorsTheBatch() {
        var advisor = settled(previousScanMilliseconds: 20_000)
        // 1000 pages; 20 s (a tenth of the target) at only 0.5 s of CPU.
        // cpu% = 500*100/20000 = 2; factor = 200*100000/20000 = 1000; change 100.
        // pages = 1000*100/1000 = 100. per% = 1000/2 = 500: cap 35000; floor 500*1 = 500 > 100.
        // 500 is under 30000: 500, the batch that would use 1% of a core.
        let pages = advisor.fullScanCompleted(
            scanTime: .seconds(20), cpuTime: .milliseconds(500), tunables: knobs(pagesToScan: 1000))
        #expect(pages == 500)
    }

    @Test func theMaximumPagesCapTheBatch() {
        var advisor = settled(previousScanMilliseconds: 1_000_000)
        // 20000 pages; 1000 s at 500 s of CPU.
        // cpu% = 50; factor = 200*100000/1000000 = 20; change 100.
        // pages = 20000*100/20 = 100000. per% = 20000/50 = 400: cap 28000, floor 4000: 28000.
        // max pages 25000: 25000.
        let pages = advisor.fullScanCompleted(
            scanTime: .seconds(1000), cpuTime: .seconds(500), tunables: knobs(pagesToScan: 20_000, maxPages: 25_000))
        #expect(pages == 25_000)
    }

    @Test func aScanUnderAMillisecondCountsAsOne() {
        var advisor = ScanTimeAdvisor()
        // 100 pages; a scan of 0.2 ms: scan_ms = max(1, 0) = 1; CPU 0: cpu% = max(1, 0) = 1.
        // factor = 200*100000/1 = 20000000; change = 30*100/100 = 30 (the first scan).
        // pages = 100*100/20000000 = 0. per% = 100/1 = 100: cap 7000, floor 100: 100.
        let pages = advisor.fullScanCompleted(
            scanTime: .microseconds(200), cpuTime: .zero, tunables: knobs(pagesToScan: 100))
        #expect(pages == 100)
        #expect(advisor.previousScanMilliseconds == 1)
    }

    @Test func absurdTimesGiveTheCapsNotATrap() {
        var advisor = settled(previousScanMilliseconds: 1)
        // A scan of a billion seconds right after one of a millisecond: every product saturates.
        let pages = advisor.fullScanCompleted(
            scanTime: .seconds(1_000_000_000), cpuTime: .seconds(1_000_000_000),
            tunables: knobs(pagesToScan: 4_000_000_000, maxPages: 30_000))
        #expect(pages == 30_000)
    }

    @Test func theMaximumPagesBeatTheCPUFloor() {
        var advisor = settled(previousScanMilliseconds: 1000)
        // 1 page; 1 s at no CPU: cpu% = 1; factor = 200*100000/1000 = 20000; change 100.
        // pages = 1*100/20000 = 0. per% = max(1, 1/1) = 1: cap 70 keeps 0, floor 10 lifts it
        // to 10; advisor_max_pages_to_scan = 1 comes last: 1.
        let pages = advisor.fullScanCompleted(
            scanTime: .seconds(1), cpuTime: .zero, tunables: knobs(pagesToScan: 1, maxPages: 1))
        #expect(pages == 1)
    }
}
