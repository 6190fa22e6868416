import SamepageCore
import Testing

@Suite("Duration to seconds") struct DurationSecondsTests {
    @Test func secondsAndMilliseconds() {
        #expect(Duration.seconds(10).inSeconds == 10)
        #expect(Duration.milliseconds(1500).inSeconds == 1.5)
        #expect(Duration.microseconds(250).inSeconds == 0.000_25)
        #expect(Duration.seconds(2).inMilliseconds == 2000)
        #expect(Duration.microseconds(1500).inMilliseconds == 1.5)
        #expect(Duration.zero.inSeconds == 0 && Duration.zero.inMilliseconds == 0)
        #expect(Duration.milliseconds(-250).inSeconds == -0.25)
    }
}
