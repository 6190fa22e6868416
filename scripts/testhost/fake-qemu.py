# A process that looks like a QEMU to samepaged, for the end-to-end tests of hostile peers.
#
# Run it as a copy of Python named like QEMU, with this file on standard input and QEMU's
# options after "-" (QEMU takes a bare argument for a disk image, which samepaged leaves out):
#
#   FAKE_QEMU_MODE=flood FAKE_QEMU_LOG=FILE  DIR/qemu-system-x86_64 - \
#       -name NAME -uuid UUID -qmp unix:PATH,server=on,wait=off \
#       -object memory-backend-memfd,id=pc.ram,size=64M,share=on -machine memory-backend=pc.ram < fake-qemu.py
#
# It maps a 64 MiB memfd shared (every other page zero, all resident) and serves QMP on PATH,
# one client at a time as QEMU does, appending "connect" to FILE for each client. Modes:
#   flood   greeting and qmp_capabilities answered, then QMP events and blank lines without end
#   quiet   greeting and qmp_capabilities answered, then nothing (a hung monitor)
import json, mmap, os, socket, sys, time

args = sys.argv[1:]
def option(name):
    return args[args.index(name) + 1]

path = option("-qmp").split(",")[0][len("unix:"):]
size = 64 << 20
fd = os.memfd_create("pc.ram")
os.ftruncate(fd, size)
ram = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
for page in range(size // 4096):
    ram[page * 4096] = page % 2  # every page written, so resident; even pages stay all zero

log = open(os.environ["FAKE_QEMU_LOG"], "a")
mode = os.environ.get("FAKE_QEMU_MODE", "flood")
try:
    os.unlink(path)
except FileNotFoundError:
    pass
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(8)
print("ready", flush=True)

greeting = {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}
event = json.dumps({"event": "DEVICE_TRAY_MOVED", "data": {"device": "ide1-cd0", "tray-open": True},
                    "timestamp": {"seconds": 1, "microseconds": 0}}).encode() + b"\r\n"
while True:
    client, _ = server.accept()
    log.write("connect\n")
    log.flush()
    try:
        client.sendall(json.dumps(greeting).encode() + b"\r\n")
        request = b""
        while b"\n" not in request:
            chunk = client.recv(4096)
            if not chunk:
                raise ConnectionError
            request += chunk
        command = json.loads(request.split(b"\n")[0])
        client.sendall(json.dumps({"return": {}, "id": command.get("id")}).encode() + b"\r\n")
        if mode == "flood":
            while True:
                client.sendall(event + b"\r\n\r\n" + event)
        else:
            while client.recv(4096):
                pass
    except (ConnectionError, OSError, ValueError):
        pass
    finally:
        client.close()
