import Libvirt

/// A blocking libvirt call on ``BlockingThreads``, waited for at most a timeout. libvirt has no
/// per-call timeout, and a call can wait for the domain's job lock (held by someone's
/// migration, say) or on a hung libvirtd; a call not back in time keeps running and is known
/// by ``BlockingCall/isFinished``.
typealias LibvirtCall<Value: Sendable> = BlockingCall<Value, LibvirtError>
