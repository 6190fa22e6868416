// A stand-in guest with private RAM, for the PrivateGuestRegion tests: maps PAGES pages of
// private memory (anonymous, or FILE mapped MAP_PRIVATE), writes content into the pages SPEC
// names, leaves every other page untouched, prints "READY <address hex> <bytes>", and waits
// until its stdin closes (or it is killed).
//
//   samepage-private-guest PAGES SPEC [FILE]
//
// SPEC is comma-separated PAGE=ID (or empty). ID 0 writes zeroes (the page is allocated, and
// zero-filled); any other ID writes word i of the page as (ID * 0x9E3779B97F4A7C15) ^ i, the
// pattern the tests expect.
import Glibc

let pageSize = 4096
let arguments = CommandLine.arguments
let pages = Int(arguments[1])!
let size = pages * pageSize
let spec: [(page: Int, id: UInt64)] = arguments[2].split(separator: ",").map { item in
    let parts = item.split(separator: "=")
    return (Int(parts[0])!, UInt64(parts[1])!)
}

let base: UnsafeMutableRawPointer
if arguments.count > 3 {
    let fd = open(arguments[3], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    precondition(fd >= 0 && ftruncate(fd, off_t(size)) == 0, "cannot create \(arguments[3])")
    base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
    close(fd)
} else {
    base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
}
precondition(base != MAP_FAILED)
// One write must make one page present, not a transparent huge page of 512.
_ = madvise(base, size, MADV_NOHUGEPAGE)

for (page, id) in spec {
    let words = (base + page * pageSize).assumingMemoryBound(to: UInt64.self)
    for i in 0..<(pageSize / 8) { words[i] = id == 0 ? 0 : (id &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(i) }
}
print("READY \(String(UInt(bitPattern: base), radix: 16)) \(size)")
fflush(nil)

var byte: UInt8 = 0
while read(0, &byte, 1) > 0 {}
exit(0)
