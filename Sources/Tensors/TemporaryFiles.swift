#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The temporary files this process is writing (`OutputFile`s not yet committed), removed by a
/// SIGINT, SIGTERM or SIGHUP handler before the process dies of the signal: Ctrl-C or a kill
/// leaves nothing half-written beside the target. The paths are kept as C strings in a fixed table
/// so that the handler only reads memory and calls `unlink` (async-signal-safe).
public enum TemporaryFiles {
    static let capacity = 256
    /// The table: a slot holds a `strdup`ed path or nil. Written under `lock`, read by the handler.
    nonisolated(unsafe) static let slots: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = {
        let p = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: capacity)
        p.initialize(repeating: nil, count: capacity)
        return p
    }()
    static let lock = Mutex<Bool>(false)  // whether the handlers are installed

    /// Registers `path`; returns its slot (nil when the table is full: the file is then only
    /// removed by normal exits).
    static func register(_ path: String) -> Int? {
        lock.withLock { installed -> Int? in
            if !installed {
                for s in [SIGINT, SIGTERM, SIGHUP] { installHandler(s) }
                installed = true
            }
            for i in 0..<capacity where slots[i] == nil {
                slots[i] = strdup(path)
                return i
            }
            return nil
        }
    }

    static func unregister(_ slot: Int?) {
        guard let slot else { return }
        lock.withLock { _ in
            let p = slots[slot]
            slots[slot] = nil
            free(p)
        }
    }

    private static func installHandler(_ signal: Int32) {
        // A signal the process was started ignoring (`nohup`, a shell's background job) stays ignored.
        var old = sigaction()
        if sigaction(signal, nil, &old) == 0, unsafeBitCast(old.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) {
            return
        }
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { sig in
            for i in 0..<TemporaryFiles.capacity {
                if let p = TemporaryFiles.slots[i] { unlink(p) }
            }
            // Die of the signal as the default action would (the shell sees 130/143).
            Glibc.signal(sig, SIG_DFL)
            raise(sig)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = Int32(bitPattern: UInt32(SA_RESETHAND))
        sigaction(signal, &action, nil)
    }

    /// Removes `.NAME.tmp-PID` files beside `path` left by processes that no longer run (killed
    /// before they could clean up). Files of running processes are left alone.
    public static func removeStale(besidePath path: String) {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let prefix = ".\(name).tmp-"
        guard let d = opendir(dir.isEmpty ? "/" : dir) else { return }
        defer { closedir(d) }
        while let entry = readdir(d) {
            // The name read in place up to its NUL: a dirent is only `d_reclen` bytes, so copying the whole
            // 256-byte `d_name` reads past the last entry of readdir's buffer (valgrind).
            let file = withUnsafeMutablePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 1) { String(cString: $0) }
            }
            guard file.hasPrefix(prefix), let pid = Int32(file.dropFirst(prefix.count)), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                unlink((dir.isEmpty ? "" : dir + "/") + file)
            }
        }
    }
}
