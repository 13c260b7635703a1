// What the master and each worker's guard (Sources/bellwether-exec) agree on.
#ifndef CBELLWETHER_GUARD_H
#define CBELLWETHER_GUARD_H

/// The master asks a guard to SIGKILL its whole tree at once by queueing this
/// real-time signal (kernel number; glibc's SIGRTMIN + 6) with BW_KILL_TREE as
/// its value. Real-time signals are queued, so the order is never merged with
/// a TERM still pending.
#define BW_KILL_SIGNAL 40
#define BW_KILL_TREE 0x6b696c6c

#endif
